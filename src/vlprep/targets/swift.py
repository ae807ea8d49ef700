"""Targets `swift` and `swift_grpo`: hf_bytes rows -> ms-swift rows (docs/formats.md, ms-swift). SWIFT:
`swift sft` conversations (targets.marker_sft_row, as LLaMA-Factory's); SWIFT_GRPO: `swift rlhf
--rlhf_type grpo` prompts (the user turn) with the columns its reward functions receive
(vlprep.scoring.swift_reward reads solution/answer_label, answer and options)."""
from __future__ import annotations

from vlprep.prompting.chat import marker_messages
from vlprep.prompting.prompts import final_answer
from vlprep.core.metrics import StageStats
from vlprep.core.params import SwiftParams
from vlprep.core.schema import SWIFT_GRPO_SCHEMA, SWIFT_SCHEMA
from vlprep.targets.base import MARKER_PASSTHROUGH, Item, TrainerTarget, marker_sft_row, prompt_counted


def swift_grpo_row(item: Item, p: SwiftParams, stats: StageStats) -> dict:
    row = item.row
    c = prompt_counted(item, p, stats, p.max_prompt_tokens)
    return {
        "messages": marker_messages(c.content, row, with_response=False),
        "images": c.problem.images,
        "solution": final_answer(row),  # ms-swift's name for the reference: the letter (the text if open)
        **{k: row[k] for k in MARKER_PASSTHROUGH},
        "prompt_tokens": c.prompt_tokens,
        "image_tokens": c.image_tokens,
    }


SWIFT = TrainerTarget("swift", SWIFT_SCHEMA, with_response=True, row_fn=marker_sft_row)
SWIFT_GRPO = TrainerTarget("swift_grpo", SWIFT_GRPO_SCHEMA, with_response=False, row_fn=swift_grpo_row)
