"""What the verl and trl stages share: reading an hf_bytes row back into a problem, its images'
token budget, and the user turn. The stage-specific part is only the output row's shape."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass

from PIL import Image

from vlprep.images import ImageRejected, probe
from vlprep.metrics import StageStats
from vlprep.prompts import IMAGE_MARKER, problem_text
from vlprep.records import RowRejected
from vlprep.tokens import MAX_PIXELS, MIN_PIXELS, ImageShapeError, image_tokens, smart_resize


@dataclass(frozen=True)
class BudgetConfig:
    tokenizer: str
    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS
    # Re-encode only images above max_pixels, to the size the processor would resize them to, so
    # trainers do not pay for the resize at every load. Off by default: bytes otherwise pass untouched.
    resize_to_max_pixels: bool = False


@dataclass
class Problem:
    row: dict  # the hf_bytes row
    options: dict
    images: list[dict]  # [{"bytes", "path": None}] in order
    image_tokens: list[int]
    text: str  # instruction + question + ordered options


def _resized(data: bytes, fmt: str, size: tuple[int, int]) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        out = im.resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    if fmt == "JPEG":
        out.convert("RGB").save(buf, format="JPEG", quality=95)
    else:
        out.save(buf, format="PNG")
    return buf.getvalue()


# Text a trainer would read as structure: verl splits prompts on <image>, and Qwen's tokenizer turns
# these strings into special tokens, so one inside a question would misalign images or fake a turn.
RESERVED_MARKERS = (
    IMAGE_MARKER, "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>",
)


def reject_reserved_markers(*texts: str) -> None:
    if any(marker in text for text in texts for marker in RESERVED_MARKERS):
        raise RowRejected("reserved_marker_in_text")


def read_problem(row: dict, budget: BudgetConfig, stats: StageStats) -> Problem:
    reject_reserved_markers(row["question"], row["options"])
    images, tokens = [], []
    for image in row["images"] or []:
        data = image["bytes"]
        try:
            info = probe(data)  # header only: sizes without decoding pixels
            h, w = smart_resize(info.height, info.width, budget.min_pixels, budget.max_pixels)
        except ImageRejected as e:  # hf_bytes validated these; only a hand-edited input gets here
            raise RowRejected(e.reason) from None
        except ImageShapeError:
            raise RowRejected("image_aspect_ratio") from None  # Qwen's processor would raise at train time
        if budget.resize_to_max_pixels and info.width * info.height > budget.max_pixels:
            data = _resized(data, info.format, (w, h))
            stats.counts["images_resized"] += 1
        images.append({"bytes": data, "path": None})
        tokens.append(image_tokens(w, h, budget.min_pixels, budget.max_pixels))
    options = json.loads(row["options"])
    return Problem(row, options, images, tokens, problem_text(row["question"], options))


def user_turn(problem: Problem) -> dict:
    """TRL/Qwen conversational form: one image placeholder per image, then the text."""
    parts = [{"type": "image", "text": None} for _ in problem.images]
    return {"role": "user", "content": [*parts, {"type": "text", "text": problem.text}]}


def check_budget(tokens: int, limit: int | None, reason: str) -> None:
    if limit is not None and tokens > limit:
        raise RowRejected(reason)
