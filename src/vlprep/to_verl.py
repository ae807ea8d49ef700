"""Target `verl`: hf_bytes rows -> verl RLHFDataset rows (docs/formats.md, verl). `verl_row` is the
whole output row; VERL is the target the stage runs."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from vlprep.metrics import RowRef, StageStats
from vlprep.params import VerlParams
from vlprep.prompts import verl_prompt_content
from vlprep.schema import VERL_SCHEMA
from vlprep.targets import Item, TrainerTarget, read_problem
from vlprep.tokens import check_budget


def verl_row(item: Item, p: VerlParams, stats: StageStats) -> dict:
    row = item.row
    problem = read_problem(row, p, stats)
    n = len(problem.images)
    # Counted the way the rollout side sees it: the processor's chat template with one pad per image,
    # each pad then expanded to that image's tokens. Pads are subtracted so text + image add up.
    prompt_tokens = item.chat.prompt_tokens_with_pads - n
    image_tokens = sum(problem.image_tokens)
    check_budget(prompt_tokens + image_tokens, p.max_prompt_tokens, "over_max_prompt_tokens")
    content = verl_prompt_content(n, row["question"], problem.options)
    stats.observe("images_per_row", n)
    stats.observe("prompt_chars", len(content))
    stats.observe("prompt_text_tokens", prompt_tokens)
    stats.observe("prompt_total_tokens", prompt_tokens + image_tokens)
    stats.observe("image_tokens", image_tokens)
    return {
        "data_source": p.data_source,
        "prompt": [{"role": "user", "content": content}],
        "images": problem.images,
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
            "prompt_tokens": prompt_tokens,
            "image_tokens": image_tokens,
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
