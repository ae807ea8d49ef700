"""Stage `summary`: the headline of every stage's metrics in one small file, metrics/summary.json, so
`dvc exp show` stays readable (README, "Experiments"). usage: summary.py METRICS_DIR OUT.json"""
import argparse
import json
from pathlib import Path

from vlprep.failures import stage_main
from vlprep.metrics import write_json


def headline(metrics_dir: Path) -> dict:
    """{"kept": {"<split>.<stage>": rows_out}}: short column names, unique among all metrics (the
    details, drops by reason included, stay in each stage's own file)."""
    out: dict = {"kept": {}}
    for path in sorted(metrics_dir.glob("*/*.json")):
        stage, split = path.parent.name, path.stem
        m = json.loads(path.read_text())
        if "rows_out" not in m:
            continue  # not a stage's row accounting (e.g. an audit report)
        out["kept"][f"{split}.{stage}"] = m["rows_out"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("metrics_dir", type=Path)
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    write_json(args.output, headline(args.metrics_dir))


if __name__ == "__main__":
    stage_main(main)
