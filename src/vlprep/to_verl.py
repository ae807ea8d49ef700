"""Stage core: hf_bytes rows -> verl RL rows (SPEC §3). `convert_unit` is the pure batch function."""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from vlprep.batches import map_rows
from vlprep.metrics import StageStats
from vlprep.prompts import verl_prompt_content
from vlprep.schema import VERL_SCHEMA
from vlprep.sources import Unit, read_unit
from vlprep.tokens import count_chat_tokens, load_tokenizer
from vlprep.trainer_rows import BudgetConfig, check_budget, read_problem, user_turn


@dataclass(frozen=True)
class VerlConfig:
    split: str
    data_source: str
    ability: str
    budget: BudgetConfig
    max_prompt_tokens: int | None = None  # prompt text + image tokens; null = keep all


def convert_row(row: dict, index: int, config: VerlConfig, stats: StageStats) -> dict:
    problem = read_problem(row, config.budget, stats)
    n = len(problem.images)
    # Counted the way the rollout side sees it: the processor's chat template with one pad per image,
    # each pad then expanded to that image's tokens. Pads are subtracted so text + image add up.
    prompt_tokens = count_chat_tokens(load_tokenizer(config.budget.tokenizer), [user_turn(problem)], True) - n
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


def convert_unit(unit: Unit, config: VerlConfig) -> tuple[pa.Table, StageStats]:
    def row_fn(row: dict, index: int, stats: StageStats) -> dict:
        return convert_row(row, index, config, stats)

    return map_rows(read_unit(unit), row_fn, VERL_SCHEMA, unit.path, unit.first_row)
