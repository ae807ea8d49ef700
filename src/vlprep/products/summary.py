"""The headline of every stage's metrics in one small file (summary.json), so `dvc exp show` stays
readable (docs/dvc.md#comparing-experiments). Counts only what the current params build: a target switched off leaves
its last metrics files behind, and they must not count."""
from __future__ import annotations

from vlprep.core.metrics import read_metrics


def built_stages(splits: list[str], targets: dict[str, list[str]]) -> dict[str, list[str]]:
    """Data stage -> the splits the params build now: hf_bytes for every input split, then each target."""
    return {"hf_bytes": splits, **targets}


def headline(stages: dict[str, list[str]]) -> dict:
    """{"kept": {"<split>.<stage>": rows_out}, "letter_max_share": {"<split>.<stage>": share}}: short
    column names, unique among all metrics (the details, drops by reason included, stay in each stage's
    own file). letter_max_share is the share of the most frequent correct letter (answer-letter balance:
    1/k when uniform over k letters), for the stages that count letters (the trainer targets)."""
    out: dict = {"kept": {}, "letter_max_share": {}}
    for stage, split in sorted((stage, split) for stage, splits in stages.items() for split in splits):
        m = read_metrics(stage, split)
        out["kept"][f"{split}.{stage}"] = m["rows_out"]
        letters = m.get("answer_letter")
        if letters:
            out["letter_max_share"][f"{split}.{stage}"] = round(max(letters.values()) / sum(letters.values()), 4)
    return out
