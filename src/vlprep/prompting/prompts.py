"""The one place that builds the problem text. verl and trl both call it, so their prompts cannot
drift apart again (the reference scripts ordered options differently and one had a literal '\\n')."""
from __future__ import annotations

import functools
import json

from vlprep.core.metrics import Rejected

INSTRUCTION = (
    "You will solve a problem/request. You should provide your thoughts within <think> </think> tags "
    "before providing the answer.\nWrite your final answer within <answer> </answer> tags."
)
IMAGE_MARKER = "<image>"  # what verl's RLHFDataset splits on to place images
_LETTERS = "ABCDE"


def ordered_options(options: dict[str, str]) -> list[tuple[str, str]]:
    """A-E first in that order, then any other keys in their original order."""
    first = [(k, options[k]) for k in _LETTERS if k in options]
    rest = [(k, v) for k, v in options.items() if k not in _LETTERS]
    return first + rest


@functools.lru_cache(maxsize=1024)
def parsed_options(options: str) -> dict[str, str]:
    """An hf_bytes row's options (a JSON object string) as a dict, parsed once however many parts of a
    target read it (the chat, the problem, the metrics): the same string hits the cache. Read-only."""
    return json.loads(options)


def problem_text(question: str, options: dict[str, str] | str | None) -> str:
    """INSTRUCTION + question + options: the user text of every prompt. An open or yes/no question
    (no options: null, or an empty mapping) has no options block; the instruction is the same."""
    if isinstance(options, str):
        options = parsed_options(options)
    body = f"Question: {question}"
    if options:
        body += "\n\nOptions:" + "".join(f"\n\n{k}. {v}" for k, v in ordered_options(options))
    return f"{INSTRUCTION}\n\n{body}"


def verl_prompt_content(n_images: int, question: str, options) -> str:
    """One literal <image> per image, in image order, before the text (verl's convention)."""
    return IMAGE_MARKER * n_images + problem_text(question, options)


def response_text(reasoning: str, answer: str) -> str:
    """The SFT target: the reasoning, then the final answer (see final_answer). Without reasoning the
    think block is empty, so the reward's format rule (scoring/reward.py) holds for every SFT row."""
    think = f" {reasoning.strip()} " if reasoning.strip() else " "
    return f"<think>{think}</think>\n<answer> {answer} </answer>"


def final_answer(row: dict) -> str:
    """What goes inside <answer>: the label of a multiple-choice question, the answer text of an open or
    yes/no one (what the reward compares, by normalised exact match, with reward_model.ground_truth)."""
    qtype = row.get("question_type")
    if qtype == "mcq" or (qtype is None and row.get("answer_label") is not None):  # (rows from before the column)
        return row["answer_label"]
    return row["answer"].strip()


# Text a trainer would read as structure: verl splits prompts on <image>, and Qwen's tokenizer turns
# these strings into special tokens, so one inside a question would misalign images or fake a turn.
RESERVED_MARKERS = (
    IMAGE_MARKER, "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>",
)


def reject_reserved_markers(*texts: str) -> None:
    for text in texts:
        for marker in RESERVED_MARKERS:
            if marker in text:
                raise Rejected("reserved_marker_in_text", f"{marker} in {text[:200]!r}")
