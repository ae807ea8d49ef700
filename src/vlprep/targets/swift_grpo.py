"""Target `swift_grpo`: hf_bytes rows -> ms-swift `swift rlhf --rlhf_type grpo` prompts (docs/formats.md,
ms-swift): the user turn, with the columns its reward functions receive (scoring/swift_reward.py reads
solution/answer_label, answer and options)."""
from __future__ import annotations

from vlprep.core.metrics import StageStats
from vlprep.core.schema import SWIFT_GRPO_SCHEMA
from vlprep.prompting.chat import marker_messages
from vlprep.prompting.prompts import final_answer
from vlprep.targets.base import MARKER_PASSTHROUGH, Config, Item, TrainerTarget, prompt_counted


def swift_grpo_row(item: Item, cfg: Config, stats: StageStats) -> dict:
    row = item.row
    c = prompt_counted(item, cfg, stats)
    return {
        "messages": marker_messages(c.content),
        "images": c.problem.images,
        "solution": final_answer(row),  # ms-swift's name for the reference: the letter (the text if open)
        **{k: row[k] for k in MARKER_PASSTHROUGH},
        "prompt_tokens": c.prompt_tokens,
        "image_tokens": c.image_tokens,
    }


TARGET = TrainerTarget("swift_grpo", SWIFT_GRPO_SCHEMA, with_response=False, row_fn=swift_grpo_row)
