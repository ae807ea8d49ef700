"""Stage core: hf_bytes rows -> TRL SFT rows (SPEC §4). `convert_unit` is the pure batch function."""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from vlprep.batches import map_rows
from vlprep.metrics import StageStats
from vlprep.prompts import response_text
from vlprep.records import RowRejected
from vlprep.schema import TRL_SCHEMA
from vlprep.sources import Unit, read_unit
from vlprep.tokens import count_chat_tokens, load_tokenizer
from vlprep.trainer_rows import BudgetConfig, check_budget, read_problem, reject_reserved_markers, user_turn


@dataclass(frozen=True)
class TrlConfig:
    budget: BudgetConfig
    max_total_tokens: int | None = None  # prompt + images + response; null = keep all


def convert_row(row: dict, index: int, config: TrlConfig, stats: StageStats) -> dict:
    if not row["reasoning"] or not row["reasoning"].strip():
        raise RowRejected("reasoning_missing")  # SFT teaches the <think> trace: nothing to teach
    reject_reserved_markers(row["reasoning"])
    problem = read_problem(row, config.budget, stats)
    n = len(problem.images)
    tokenizer = load_tokenizer(config.budget.tokenizer)
    user = user_turn(problem)
    assistant = {"role": "assistant", "content": [{"type": "text", "text": response_text(row["reasoning"], row["answer_label"])}]}
    messages = [user, assistant]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    prompt_tokens = count_chat_tokens(tokenizer, [user], True) - n
    image_tokens = sum(problem.image_tokens)
    total_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"]) - n + image_tokens
    check_budget(total_tokens, config.max_total_tokens, "over_max_total_tokens")
    stats.observe("images_per_row", n)
    stats.observe("text_chars", len(text))
    stats.observe("text_tokens", total_tokens - image_tokens)
    stats.observe("total_tokens", total_tokens)
    stats.observe("image_tokens", image_tokens)
    return {
        **row,
        "images": problem.images,
        "messages": messages,
        "text": text,
        "prompt_tokens": prompt_tokens,
        "image_tokens": image_tokens,
        "total_tokens": total_tokens,
    }


def convert_unit(unit: Unit, config: TrlConfig) -> tuple[pa.Table, StageStats]:
    def row_fn(row: dict, index: int, stats: StageStats) -> dict:
        return convert_row(row, index, config, stats)

    return map_rows(read_unit(unit), row_fn, TRL_SCHEMA, unit.path, unit.first_row)
