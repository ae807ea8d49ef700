"""Stage core: hf_bytes rows -> verl RL rows (SPEC §3). `convert_batch` is the pure batch function."""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from vlprep.metrics import StageStats
from vlprep.prompts import verl_prompt_content
from vlprep.records import RowRejected
from vlprep.schema import VERL_SCHEMA
from vlprep.sources import Unit, read_unit
from vlprep.trainer_rows import BudgetConfig, RenderedChat, check_budget, convert_chat_batch, read_problem


@dataclass(frozen=True)
class VerlConfig:
    split: str
    data_source: str
    ability: str
    budget: BudgetConfig
    max_prompt_tokens: int | None = None  # prompt text + image tokens; null = keep all


def convert_row(row: dict, index: int, chat: RenderedChat | None, config: VerlConfig, stats: StageStats) -> dict:
    problem = read_problem(row, config.budget, stats)
    if chat is None:
        raise RowRejected("chat_unrenderable")  # read_problem names the usual causes first
    n = len(problem.images)
    # Counted the way the rollout side sees it: the processor's chat template with one pad per image,
    # each pad then expanded to that image's tokens. Pads are subtracted so text + image add up.
    prompt_tokens = chat.prompt_tokens - n
    image_tokens = sum(problem.image_tokens)
    check_budget(prompt_tokens + image_tokens, config.max_prompt_tokens, "over_max_prompt_tokens")
    content = verl_prompt_content(n, row["question"], problem.options)
    stats.observe("images_per_row", n)
    stats.observe("prompt_chars", len(content))
    stats.observe("prompt_text_tokens", prompt_tokens)
    stats.observe("prompt_total_tokens", prompt_tokens + image_tokens)
    stats.observe("image_tokens", image_tokens)
    return {
        "data_source": config.data_source,
        "prompt": [{"role": "user", "content": content}],
        "images": problem.images,
        "ability": config.ability,
        "reward_model": {"style": "rule", "ground_truth": row["answer"]},
        "extra_info": {
            "split": config.split,
            "index": index,
            "question": row["question"],
            "options": row["options"],
            "answer_label": row["answer_label"],
            "answer": row["answer"],
            "dataset_name": row["dataset_name"],
            "dataset_index": row["dataset_index"],
            "prompt_tokens": prompt_tokens,
            "image_tokens": image_tokens,
        },
    }


def convert_batch(batch: pa.Table, config: VerlConfig, where: str = "batch", first_row: int = 0,
                  complete: bool = True) -> tuple[pa.Table, StageStats]:
    """The pure batch function: a batch of hf_bytes rows in, output table and drop counts out.
    complete=False leaves the images out (a partial batch, see map_rows) for trainer_rows.attach_images."""
    def row_fn(row: dict, index: int, chat: RenderedChat | None, stats: StageStats) -> dict:
        return convert_row(row, index, chat, config, stats)

    return convert_chat_batch(batch, config.budget, False, row_fn, VERL_SCHEMA, where, first_row, complete)


def convert_unit(unit: Unit, config: VerlConfig) -> tuple[pa.Table, StageStats]:
    """The executor's unit function: a partial batch, so that with num_proc > 1 a worker hands back
    only the small columns and the image bytes go from the input file to the writer in one copy."""
    return convert_batch(read_unit(unit), config, unit.path, unit.first_row, complete=False)
