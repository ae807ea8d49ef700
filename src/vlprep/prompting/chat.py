"""The conversation a trainer renders for a row, rendered with the tokenizer's own chat template, and
its token counts: what the verl and trl targets (and any later one) share."""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from vlprep.prompting.prompts import final_answer, problem_text, response_text
from vlprep.prompting.qwen_tokenizer import CHAT_TEMPLATE
from vlprep.prompting.tokens import count_tokens


def taught_response(row: dict, response: str) -> str | None:
    """Which assistant turn an SFT row teaches, by the target's `response` param: "reasoning" (the
    <think> trace, then the answer), "answer" (an empty <think></think>, then the answer, so the verl
    reward's format rule holds for both), or None when `response: reasoning` and the row has none.
    `auto` teaches the reasoning where the row has it."""
    has_reasoning = bool((row["reasoning"] or "").strip())
    if response == "answer" or (response == "auto" and not has_reasoning):
        return "answer"
    return "reasoning" if has_reasoning else None


def chat_messages(row: dict, taught: str | None) -> list[dict]:
    """TRL/Qwen conversational form: one image placeholder per image, then the text; with what the
    assistant turn teaches (taught_response: "reasoning" | "answer"; SFT), that turn too."""
    text = problem_text(row["question"], row["options"])  # null for open / yes-no questions
    parts = [{"type": "image", "text": None} for _ in row["images"] or []]
    messages = [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]
    if taught is not None:
        reasoning = row["reasoning"] if taught == "reasoning" else ""
        messages.append({"role": "assistant", "content": [{"type": "text", "text": response_text(reasoning, final_answer(row))}]})
    return messages


def marker_messages(content: str, response: str | None = None) -> list[dict]:
    """The string form (LLaMA-Factory sharegpt, ms-swift): the user turn as one string holding an
    <image> marker per image (prompts.verl_prompt_content), and the assistant turn when given (the same
    text as chat_messages')."""
    messages = [{"role": "user", "content": content}]
    if response is not None:
        messages.append({"role": "assistant", "content": response})
    return messages


@dataclass
class RenderedChat:
    messages: list[dict]
    # Token counts of the rendered text, where each image is still its single <|image_pad|>; the
    # targets subtract the pads and add each image's real token count.
    prompt_tokens_with_pads: int  # user turn + generation prompt
    text: str | None = None  # the whole conversation (SFT)
    text_tokens_with_pads: int | None = None
    response: str | None = None  # what the assistant turn teaches: "reasoning" | "answer" (SFT)

    @property
    def response_text(self) -> str | None:
        return self.messages[1]["content"][0]["text"] if len(self.messages) > 1 else None


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


def render_chats(rows: list[dict], tokenizer, response: str | None, where: str, first_row: int) -> list[RenderedChat | None]:
    """Render every row's chat with the tokenizer's own template, and count tokens for the whole batch
    in one call: the Rust tokenizer then works in parallel, instead of paying a call per row."""
    render = _chat_renderer(tokenizer)
    rendered: list[RenderedChat | None] = []
    texts: list[str] = []
    for i, row in enumerate(rows):
        try:
            taught = taught_response(row, response) if response is not None else None
            if response is not None and taught is None:
                rendered.append(None)  # nothing to teach (response: reasoning, none in the row)
                continue
            messages = chat_messages(row, taught)
            texts.append(render(messages[:1], add_generation_prompt=True))
            chat = RenderedChat(messages, prompt_tokens_with_pads=-1, response=taught)
            if taught is not None:
                chat.text = render(messages)
                texts.append(chat.text)
        except Exception as e:  # hf_bytes rows are validated: this is a bug or a hand-edited input
            raise RuntimeError(f"{where} row {first_row + i}: {type(e).__name__}: {e}") from e
        rendered.append(chat)
    counts = iter(count_tokens(tokenizer, texts))
    for chat in rendered:
        if chat is not None:
            chat.prompt_tokens_with_pads = next(counts)
            if response is not None:
                chat.text_tokens_with_pads = next(counts)
    return rendered
