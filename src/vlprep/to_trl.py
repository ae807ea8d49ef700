"""Target `trl`: hf_bytes rows -> TRL vision SFT rows (docs/formats.md, trl). `trl_row` is the whole
output row; TRL is the target the stage runs."""
from __future__ import annotations

from vlprep.metrics import Rejected, StageStats
from vlprep.params import TrlParams
from vlprep.prompts import final_answer, reject_reserved_markers
from vlprep.schema import TRL_SCHEMA
from vlprep.targets import Item, TrainerTarget, read_problem
from vlprep.tokens import check_budget


def trl_row(item: Item, p: TrlParams, stats: StageStats) -> dict:
    row, chat = item.row, item.chat
    if chat is None:
        raise Rejected("reasoning_missing")  # SFT teaches the <think> trace: nothing to teach
    reject_reserved_markers(row["reasoning"], final_answer(row))  # both go into the assistant turn
    problem = read_problem(row, p, stats)
    n = len(problem.images)
    image_tokens = sum(problem.image_tokens)
    # Each image is one pad token in the rendered text; the model sees its image tokens instead.
    total_tokens = chat.text_tokens_with_pads - n + image_tokens
    check_budget(total_tokens, p.max_total_tokens, "over_max_total_tokens")
    stats.observe("images_per_row", n)
    stats.observe("text_chars", len(chat.text))
    stats.observe("text_tokens", total_tokens - image_tokens)
    stats.observe("total_tokens", total_tokens)
    stats.observe("image_tokens", image_tokens)
    return {
        **row,
        "images": problem.images,
        "messages": chat.messages,
        "text": chat.text,
        "prompt_tokens": chat.prompt_tokens_with_pads - n,
        "image_tokens": image_tokens,
        "total_tokens": total_tokens,
    }


TRL = TrainerTarget("trl", TRL_SCHEMA, with_response=True, row_fn=trl_row)
