"""Target `verl`: hf_bytes rows -> verl RLHFDataset rows (docs/formats.md, verl). `verl_row` is the
whole output row; VERL is the target the stage runs."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from vlprep.core.metrics import RowRef, StageStats
from vlprep.core.params import VerlParams
from vlprep.core.schema import VERL_SCHEMA
from vlprep.targets.base import Item, TrainerTarget, prompt_counted


def verl_row(item: Item, p: VerlParams, stats: StageStats) -> dict:
    row = item.row
    c = prompt_counted(item, p, stats, p.max_prompt_tokens)
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


VERL = TrainerTarget("verl", VERL_SCHEMA, with_response=False, row_fn=verl_row)



def verl_row_refs(source: str):
    """RowRef of each row of a verl table (for rows dropped after conversion, e.g. beyond max_rows)."""
    def refs(table: pa.Table) -> list[RowRef]:
        info = table.column("extra_info")
        fields = (pc.struct_field(info, f).to_pylist() for f in ("index", "dataset_name", "dataset_index"))
        return [RowRef(source, index, name, dataset_index) for index, name, dataset_index in zip(*fields)]

    return refs
