"""Target `verl`: hf_bytes rows -> verl RLHFDataset rows (docs/formats.md, verl). `verl_row` is the
whole output row; `post_steps` adds the seeded shuffle and max_rows; TARGET is what the stage runs."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from vlprep.core.metrics import RowRef, StageStats
from vlprep.core.sections import VerlParams
from vlprep.core.schema import VERL_SCHEMA
from vlprep.core.writers import work_path
from vlprep.engine.post import Post, limit_rows, shuffled
from vlprep.io.sources import hf_dataset_files
from vlprep.targets.base import Config, Item, TrainerTarget, prompt_counted


def verl_row(item: Item, cfg: Config, stats: StageStats) -> dict:
    row, p = item.row, cfg.params
    c = prompt_counted(item, cfg, stats)
    return {
        "data_source": p.data_source,
        "prompt": [{"role": "user", "content": c.content}],
        "images": c.problem.images,
        "ability": p.ability,
        "reward_model": {"style": "rule", "ground_truth": row["answer"]},
        "extra_info": {
            "split": item.split,
            "index": item.index,
            "question": row["question"],
            "options": row["options"],
            "answer_label": row["answer_label"],
            "answer": row["answer"],
            "dataset_name": row["dataset_name"],
            "dataset_index": row["dataset_index"],
            "prompt_tokens": c.prompt_tokens,
            "image_tokens": c.image_tokens,
            "question_type": row["question_type"],
        },
    }


def verl_row_refs(source: str):
    """RowRef of each row of a verl table (for rows dropped after conversion, e.g. beyond max_rows)."""
    def refs(table: pa.Table) -> list[RowRef]:
        info = table.column("extra_info")
        fields = (pc.struct_field(info, f).to_pylist() for f in ("index", "dataset_name", "dataset_index"))
        return [RowRef(source, index, name, dataset_index) for index, name, dataset_index in zip(*fields)]

    return refs


def post_steps(p: VerlParams, split: str, source: Path) -> list[Post]:
    """verl.shuffle (seeded, in bounded memory), then verl.max_rows."""
    steps: list[Post] = []
    if p.shuffle:
        size = sum(f.stat().st_size for f in hf_dataset_files(source))
        work = work_path(f"shuffle-{split}")
        steps.append(lambda tables, stats: shuffled(tables, p.seed, work, size))
    if p.max_rows is not None:
        steps.append(limit_rows(p.max_rows, verl_row_refs(str(source))))
    return steps


TARGET = TrainerTarget("verl", VERL_SCHEMA, with_response=False, row_fn=verl_row, post_steps=post_steps)
