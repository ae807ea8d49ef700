"""Target `trl`: hf_bytes rows -> TRL vision SFT rows (docs/formats.md, trl). `trl_row` is the whole
output row; TARGET is what the stage runs."""
from __future__ import annotations

from vlprep.core.metrics import StageStats
from vlprep.core.schema import TRL_SCHEMA
from vlprep.targets.base import Config, Item, TrainerTarget, sft_counted


def trl_row(item: Item, cfg: Config, stats: StageStats) -> dict:
    c = sft_counted(item, cfg, stats)
    return {
        **item.row,
        "images": c.problem.images,
        "messages": item.chat.messages,
        "text": item.chat.text,
        "prompt_tokens": c.prompt_tokens,
        "image_tokens": c.image_tokens,
        "total_tokens": c.total_tokens,
    }


TARGET = TrainerTarget("trl", TRL_SCHEMA, with_response=True, row_fn=trl_row)
