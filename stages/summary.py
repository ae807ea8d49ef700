"""Stage `summary`: the headline of every stage's metrics in one small file, metrics/summary.json, so
`dvc exp show` stays readable (README, "Experiments"). usage: summary.py METRICS_DIR OUT.json"""
import argparse
import json
from pathlib import Path

from vlprep.core.failures import stage_main
from vlprep.core.metrics import write_json
from vlprep.core.params import load_params


def enabled(params: dict) -> dict[str, list[str]]:
    """Stage -> the splits params.yaml builds now: a target switched off (splits: []) leaves its last
    metrics files behind, and they must not count."""
    splits = list(params["inputs"])
    return {"hf_bytes": splits, "verl": splits, "trl": params["trl"]["splits"],
            "llamafactory": params["llamafactory"]["splits"], "swift": params["swift"]["splits"],
            "swift_grpo": params["swift"]["grpo_splits"]}


def headline(metrics_dir: Path, stages: dict[str, list[str]]) -> dict:
    """{"kept": {"<split>.<stage>": rows_out}, "letter_max_share": {"<split>.<stage>": share}}: short
    column names, unique among all metrics (the details, drops by reason included, stay in each stage's
    own file). letter_max_share is the share of the most frequent correct letter (answer-letter balance:
    1/k when uniform over k letters), for the stages that count letters (the trainer targets)."""
    out: dict = {"kept": {}, "letter_max_share": {}}
    for stage, split in sorted((stage, split) for stage, splits in stages.items() for split in splits):
        m = json.loads((metrics_dir / stage / f"{split}.json").read_text())
        out["kept"][f"{split}.{stage}"] = m["rows_out"]
        letters = m.get("answer_letter")
        if letters:
            out["letter_max_share"][f"{split}.{stage}"] = round(max(letters.values()) / sum(letters.values()), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("metrics_dir", type=Path)
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    write_json(args.output, headline(args.metrics_dir, enabled(load_params())))


if __name__ == "__main__":
    stage_main(main)
