"""Token budget: text tokens under a tokenizer, and image tokens as the Qwen-VL image processors count
them (transformers' Qwen2VLImageProcessor, which Qwen2-VL, Qwen2.5-VL and Qwen3-VL all use: the patch
size and the pixel limits differ). The defaults are Qwen2.5-VL's; prompting/profiles.py names the others."""
from __future__ import annotations

import functools
import math
from pathlib import Path

from vlprep.core.failures import InputError
from vlprep.core.metrics import Rejected

# Qwen2-VL / Qwen2.5-VL: 14-px patches merged 2x2, so each image token covers a 28x28 area.
PATCH_SIZE = 14
MERGE_SIZE = 2
IMAGE_FACTOR = PATCH_SIZE * MERGE_SIZE  # 28
MIN_PIXELS = 4 * 28 * 28  # 3136, Qwen2.5-VL's default
MAX_PIXELS = 16384 * 28 * 28  # 12845056
MAX_ASPECT_RATIO = 200  # Qwen's smart_resize refuses more extreme images


class ImageShapeError(ValueError):
    """The model's image processor would refuse this image (aspect ratio > 200)."""


def smart_resize(height: int, width: int, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS,
                 factor: int = IMAGE_FACTOR, max_aspect_ratio: float = MAX_ASPECT_RATIO) -> tuple[int, int]:
    """The size Qwen2-VL's image processor resizes to: each side a multiple of `factor` (patch size x
    merge size), the area within [min_pixels, max_pixels], the aspect ratio kept as well as possible."""
    if max(height, width) / min(height, width) > max_aspect_ratio:
        raise ImageShapeError(f"aspect ratio {max(height, width) / min(height, width):.0f} > {max_aspect_ratio}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def image_tokens(width: int, height: int, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS,
                 patch_size: int = PATCH_SIZE, merge_size: int = MERGE_SIZE,
                 max_aspect_ratio: float = MAX_ASPECT_RATIO) -> int:
    """Image tokens of one image: the processor's image_grid_thw.prod() // merge_size**2, i.e. one token
    per (patch_size x merge_size)-pixel square of the resized image."""
    factor = patch_size * merge_size
    h, w = smart_resize(height, width, min_pixels, max_pixels, factor, max_aspect_ratio)
    return (h // factor) * (w // factor)


def _is_local_path(name: str) -> bool:
    # A hub id is exactly "org/name" (or "name"); anything else is meant as a directory.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).exists()


@functools.lru_cache(maxsize=4)
def load_tokenizer(name: str):
    """A local directory or a hub id; loaded once per process. Offline unless the user's environment
    allows hub access (the default is a local directory built by the `tokenizer` stage)."""
    if _is_local_path(name) and not Path(name).expanduser().is_dir():
        raise InputError(f"tokenizer directory {name} does not exist: run `dvc repro tokenizer` "
                         "(the default), or set the stage's `tokenizer` param to a local dir or a hub id")
    from vlprep.prompting.qwen_tokenizer import quiet_third_party

    quiet_third_party()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:  # no network, offline mode, unknown repo, not a tokenizer dir
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot load tokenizer {name!r}: {reason[:300]}. Without hub access, point the "
                         "`tokenizer` param at a local directory (the `tokenizer` stage builds Qwen2.5-VL's)") from None


def count_tokens(tokenizer, texts: list[str]) -> list[int]:
    """Token counts as apply_chat_template(tokenize=True) gives them (no extra special tokens added);
    one batched call for fast tokenizers."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # encode_batch_fast (tokenizers >= 0.20) skips character offsets, which counting does not need.
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [len(e.ids) for e in encode(texts, add_special_tokens=False)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def check_budget(tokens: int, limit: int | None, reason: str) -> None:
    if limit is not None and tokens > limit:
        raise Rejected(reason, f"{tokens} tokens > {limit}")
