"""Stage core: hf_bytes rows -> TRL SFT rows (SPEC §4). `convert_batch` is the pure batch function."""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from vlprep.metrics import StageStats
from vlprep.records import RowRejected
from vlprep.schema import TRL_SCHEMA
from vlprep.sources import Unit, read_unit
from vlprep.trainer_rows import BudgetConfig, RenderedChat, check_budget, convert_chat_batch, read_problem, reject_reserved_markers


@dataclass(frozen=True)
class TrlConfig:
    budget: BudgetConfig
    max_total_tokens: int | None = None  # prompt + images + response; null = keep all


def convert_row(row: dict, chat: RenderedChat | None, config: TrlConfig, stats: StageStats) -> dict:
    if not row["reasoning"] or not row["reasoning"].strip():
        raise RowRejected("reasoning_missing")  # SFT teaches the <think> trace: nothing to teach
    reject_reserved_markers(row["reasoning"])
    problem = read_problem(row, config.budget, stats)
    if chat is None:
        raise RowRejected("chat_unrenderable")  # read_problem names the usual causes first
    n = len(problem.images)
    image_tokens = sum(problem.image_tokens)
    # Each image is one pad token in the rendered text; the model sees its image tokens instead.
    total_tokens = chat.text_tokens - n + image_tokens
    check_budget(total_tokens, config.max_total_tokens, "over_max_total_tokens")
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
        "prompt_tokens": chat.prompt_tokens - n,
        "image_tokens": image_tokens,
        "total_tokens": total_tokens,
    }


def convert_batch(batch: pa.Table, config: TrlConfig, where: str = "batch", first_row: int = 0,
                  complete: bool = True) -> tuple[pa.Table, StageStats]:
    """The pure batch function: a batch of hf_bytes rows in, output table and drop counts out.
    complete=False leaves the images out (a partial batch, see map_rows) for trainer_rows.attach_images."""
    def row_fn(row: dict, index: int, chat: RenderedChat | None, stats: StageStats) -> dict:
        return convert_row(row, chat, config, stats)

    return convert_chat_batch(batch, config.budget, True, row_fn, TRL_SCHEMA, where, first_row, complete)


def convert_unit(unit: Unit, config: TrlConfig) -> tuple[pa.Table, StageStats]:
    """The executor's unit function: a partial batch, so that with num_proc > 1 a worker hands back
    only the small columns and the image bytes go from the input file to the writer in one copy."""
    return convert_batch(read_unit(unit), config, unit.path, unit.first_row, complete=False)
