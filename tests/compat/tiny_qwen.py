"""Build a tiny, random Qwen2.5-VL model + processor offline, for trainer-compatibility tests.

Usage: python tiny_qwen.py OUT_DIR

Nothing is downloaded: the tokenizer is a byte-level BPE trained in code on a small
corpus (byte-level, so every unicode string encodes), with Qwen2's pre-tokenizer regex
and Qwen2.5-VL's special tokens; the chat template is Qwen2.5-VL's own; the model is a
`Qwen2_5_VLForConditionalGeneration` with random weights built from a small config.

OUT_DIR then holds what `AutoProcessor` / `AutoTokenizer` / `AutoConfig` /
`Qwen2_5_VLForConditionalGeneration.from_pretrained(OUT_DIR)` need. verl's
`hf_processor` also needs config.json beside the processor files (it binds the
model's `get_rope_index` to the processor), so everything goes into one directory.

Runs in the trainer virtualenv (needs transformers 5, tokenizers, torch, torchvision).
"""

import json
import sys
from pathlib import Path

# Qwen2.5-VL's special tokens, in the order (and so relative id order) the real
# tokenizer has them (ids 151643-151664 there; here they follow the small vocab).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2's pre-tokenizer split regex (same as transformers' Qwen2Tokenizer).
QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# The real Qwen2.5-VL chat template, taken from the project's tokenizer module (loaded by path: this
# script runs in the trainer venv, where vlprep is not installed). It renders a content part as an
# image when it has type "image" OR merely has an "image"/"image_url" key, so a text part carrying
# `image: null` would render as an image: keeping the real template keeps that trap visible.
def _project_chat_template() -> str:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "src" / "vlprep" / "prompting" / "qwen_tokenizer.py"
    spec = importlib.util.spec_from_file_location("_vlprep_qwen_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CHAT_TEMPLATE


QWEN25_VL_CHAT_TEMPLATE = _project_chat_template()

# Small processor limits keep the vision tower cheap on CPU: at most 64 merged
# tokens (64 * 28 * 28 pixels) per image, at least 4.
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 64 * 28 * 28

# A little text to learn merges from; byte-level BPE encodes anything regardless.
_CORPUS = [
    "You will solve a problem/request. You should provide your thoughts within <think> </think> tags "
    "before providing the answer.\nWrite your final answer within <answer> </answer> tags.",
    "Question: Which of the following is the most likely diagnosis?\n\nOptions:\n\nA. Pneumonia\n\n"
    "B. Pleural effusion\n\nC. Pneumothorax\n\nD. Normal chest radiograph\n\nE. Cardiomegaly",
    "The image shows a chest X-ray, a CT scan, an MRI of the brain and a histology slide.",
    "<think> The findings suggest the answer. </think>\n<answer> A </answer>",
    "Ünïcödé téxt: 日本語のテキスト, 中文文本, русский текст, عربى, emoji 🩺🫁.",
]


def build_tokenizer():
    """A Qwen2Tokenizer over a small byte-level BPE vocabulary trained here."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer

    # Same normalizer / pre-tokenizer / decoder as transformers' Qwen2Tokenizer builds,
    # so the vocabulary trained here is in the byte-level alphabet that class expects.
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        # All 256 byte symbols are in the vocabulary, so any text encodes without <unk>.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer=trainer)

    vocab = bpe.get_vocab()
    # Merges in rank order as (left, right) pairs, the form the BPE model takes.
    merges = json.loads(bpe.to_str())["model"]["merges"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]

    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token=None,
        pad_token=None,
        errors="replace",
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    # Add the special tokens first (so their ids follow Qwen's order), then name eos/pad.
    tok.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]}
    )
    tok.eos_token = "<|im_end|>"  # Qwen2.5-VL-Instruct's eos
    tok.pad_token = "<|endoftext|>"
    tok.chat_template = QWEN25_VL_CHAT_TEMPLATE
    return tok


def build(out_dir):
    """Write a tiny Qwen2.5-VL model + processor to out_dir; return out_dir as a Path."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}

    image_processor = Qwen2VLImageProcessor(
        min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=14, temporal_patch_size=2, merge_size=2
    )
    # transformers 5 cannot build or load a Qwen2.5-VL processor without its video
    # processor (which imports torchvision), even for image-only data.
    video_processor = Qwen2VLVideoProcessor(
        min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=14, temporal_patch_size=2, merge_size=2
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN25_VL_CHAT_TEMPLATE,
    )

    head_dim = 16
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            # M-RoPE: the three sections (t, h, w) add up to head_dim / 2.
            rope_parameters=dict(rope_type="default", rope_theta=1000000.0, mrope_section=[2, 3, 3]),
            bos_token_id=None,  # Qwen2's tokenizer has no bos token
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=1,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=64,  # = text hidden_size
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[0],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    assert head_dim == config.text_config.hidden_size // config.text_config.num_attention_heads

    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.eos_token_id = ids["<|im_end|>"]

    model.save_pretrained(out)
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def self_check(out_dir):
    """Reload from disk the way trainers do and check the pieces fit together."""
    from PIL import Image
    from transformers import AutoConfig, AutoProcessor, AutoTokenizer

    processor = AutoProcessor.from_pretrained(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    config = AutoConfig.from_pretrained(out_dir)
    assert type(processor).__name__ == "Qwen2_5_VLProcessor", type(processor)
    assert config.model_type == "qwen2_5_vl"
    for t in SPECIAL_TOKENS:
        tid = tokenizer.convert_tokens_to_ids(t)
        assert tokenizer.convert_ids_to_tokens(tid) == t and tokenizer.encode(t) == [tid], t
    assert processor.image_token_id == config.image_token_id

    text = "Ünïcödé 日本語 🩺\nQuestion: A. B?"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    # verl's Qwen continuous-token builder requires "\n" to be a single token.
    assert len(tokenizer.encode("\n", add_special_tokens=False)) == 1

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}]
    rendered = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    expected = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>Describe.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert rendered == expected, repr(rendered)
    out = processor(text=[rendered], images=[Image.new("RGB", (300, 200), "red")], return_tensors="pt")
    n_pad = int((out["input_ids"] == processor.image_token_id).sum())
    assert n_pad == int(out["image_grid_thw"].prod()) // 4 <= MAX_PIXELS // (28 * 28), n_pad


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = build(argv[0])
    self_check(out)
    print(f"tiny Qwen2.5-VL written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
