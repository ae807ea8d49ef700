"""What the verl and trl stages share: reading an hf_bytes row back into a problem, its images'
token budget, and the user turn. The stage-specific part is only the output row's shape."""
from __future__ import annotations

import functools
import hashlib
import io
import json
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa
from PIL import Image

from vlprep.batches import SOURCE_ROW, attach, map_rows
from vlprep.images import ImageRejected, probe
from vlprep.metrics import StageStats
from vlprep.prompts import IMAGE_MARKER, problem_text, response_text
from vlprep.qwen_tokenizer import CHAT_TEMPLATE
from vlprep.records import RowRejected
from vlprep.sources import Unit, read_unit
from vlprep.tokens import MAX_PIXELS, MIN_PIXELS, ImageShapeError, count_tokens, image_tokens, load_tokenizer, smart_resize


@dataclass(frozen=True)
class BudgetConfig:
    tokenizer: str
    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS
    # Re-encode only images above max_pixels, to the size the processor would resize them to, so
    # trainers do not pay for the resize at every load. Off by default: bytes otherwise pass untouched.
    resize_to_max_pixels: bool = False

    @classmethod
    def from_params(cls, p: dict) -> "BudgetConfig":
        return cls(p["tokenizer"], p["min_pixels"], p["max_pixels"], p["resize_to_max_pixels"])


@dataclass
class Problem:
    row: dict  # the hf_bytes row
    options: dict
    images: list[dict]  # [{"bytes", "path": None}] in order
    image_tokens: list[int]


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
    return Problem(row, json.loads(row["options"]), images, tokens)


def images_unchanged(budget: BudgetConfig) -> tuple[str, ...]:
    """The `passthrough` of map_rows: read_problem hands each image on as it came, unless it resizes
    some. (hf_bytes images always have path None, which read_problem sets too.)"""
    return () if budget.resize_to_max_pixels else ("images",)


def attach_images(unit: Unit, table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Complete a partial verl/trl batch (their convert_unit's) with its images, read from the unit."""
    if SOURCE_ROW not in table.column_names:
        return table  # complete already: images were resized, so built in the batch
    return attach(table, read_unit(unit, ["images"]), schema)


def chat_messages(row: dict, with_response: bool) -> list[dict] | None:
    """The conversation a trainer renders for a row (TRL/Qwen conversational form: one image
    placeholder per image, then the text; the assistant's think/answer turn for SFT). None when the
    row cannot make one; the row function then drops it with the precise reason."""
    try:
        text = problem_text(row["question"], json.loads(row["options"]))
    except (TypeError, ValueError, AttributeError):
        return None
    parts = [{"type": "image", "text": None} for _ in row["images"] or []]
    messages = [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]
    if with_response:
        if not (row["reasoning"] or "").strip():
            return None
        answer = response_text(row["reasoning"], row["answer_label"])
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


@dataclass
class RenderedChat:
    messages: list[dict]
    prompt_tokens: int  # user turn + generation prompt, each image as its single pad token
    text: str | None = None  # the whole conversation (SFT)
    text_tokens: int | None = None


# Chat templates that copy each text part verbatim into their output and decide nothing from its
# content (tests/test_qwen_tokenizer.py checks this against full rendering on arbitrary text). For these
# a conversation shape (roles, part types) is rendered once with a placeholder and every row's text is
# spliced in: rendering jinja per row cost more than all the rest of a verl row. Any other template is
# rendered per conversation, as apply_chat_template always does.
VERBATIM_TEMPLATES = {hashlib.sha256(CHAT_TEMPLATE.encode()).hexdigest()}  # Qwen2.5-VL's
_SLOT = "\x00vlprep-text-slot\x00"


class ChatRenderer:
    """apply_chat_template(tokenize=False) with the tokenizer's own template, fast for verbatim templates."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        template = tokenizer.chat_template
        self.verbatim = isinstance(template, str) and hashlib.sha256(template.encode()).hexdigest() in VERBATIM_TEMPLATES
        self._shapes: dict[tuple, list[str]] = {}

    def _render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def __call__(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        if not self.verbatim or not all(isinstance(m["content"], list) for m in messages):
            return self._render(messages, add_generation_prompt)
        texts = [part["text"] for m in messages for part in m["content"] if part["type"] == "text"]
        shape = (tuple((m["role"], tuple(part["type"] for part in m["content"])) for m in messages), add_generation_prompt)
        pieces = self._shapes.get(shape)
        if pieces is None:
            slotted = [{**m, "content": [{**part, "text": _SLOT} if part["type"] == "text" else part for part in m["content"]]}
                       for m in messages]
            pieces = self._shapes[shape] = self._render(slotted, add_generation_prompt).split(_SLOT)
            if len(pieces) != len(texts) + 1:
                raise RuntimeError(f"chat template listed as verbatim did not place each text once: {shape}")
        out = [pieces[0]]
        for text, piece in zip(texts, pieces[1:]):
            out += [text, piece]
        return "".join(out)


@functools.lru_cache(maxsize=4)
def _chat_renderer(tokenizer) -> ChatRenderer:
    return ChatRenderer(tokenizer)  # one per tokenizer, so its shapes are rendered once per process


def render_chats(rows: list[dict], tokenizer, with_response: bool) -> list[RenderedChat | None]:
    """Render every row's chat with the tokenizer's own template, and count tokens for the whole batch
    in one call: the Rust tokenizer then works in parallel, instead of paying a call per row."""
    render = _chat_renderer(tokenizer)
    rendered: list[RenderedChat | None] = []
    texts: list[str] = []
    for row in rows:
        messages = chat_messages(row, with_response)
        if messages is None:
            rendered.append(None)
            continue
        texts.append(render(messages[:1], add_generation_prompt=True))
        chat = RenderedChat(messages, prompt_tokens=-1)
        if with_response:
            chat.text = render(messages)
            texts.append(chat.text)
        rendered.append(chat)
    counts = iter(count_tokens(tokenizer, texts))
    for chat in rendered:
        if chat is not None:
            chat.prompt_tokens = next(counts)
            if with_response:
                chat.text_tokens = next(counts)
    return rendered


def check_budget(tokens: int, limit: int | None, reason: str) -> None:
    if limit is not None and tokens > limit:
        raise RowRejected(reason)


ChatRowFn = Callable[[dict, int, "RenderedChat | None", StageStats], dict]


def convert_chat_batch(batch: pa.Table, budget: BudgetConfig, with_response: bool, row_fn: ChatRowFn,
                       schema: pa.Schema, where: str, first_row: int, complete: bool) -> tuple[pa.Table, StageStats]:
    """What the verl and trl batch functions share: render and count every row's chat in one go, apply
    the stage's row function (row, index, chat, stats), and pass the images through as they came;
    complete=False leaves them out (a partial batch, see map_rows) for attach_images."""
    rows = batch.to_pylist()
    chats = render_chats(rows, load_tokenizer(budget.tokenizer), with_response)

    def with_chat(row: dict, index: int, stats: StageStats) -> dict:
        return row_fn(row, index, chats[index - first_row], stats)

    return map_rows(rows, with_chat, schema, where, first_row, source=batch if complete else None,
                    passthrough=images_unchanged(budget))
