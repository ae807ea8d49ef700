"""Stage `summary`: the headline of every built stage's metrics in one small file (vlprep.products.summary).
usage: summary.py OUT.json"""
import argparse
from pathlib import Path

from vlprep.core.failures import stage_main
from vlprep.core.metrics import write_json
from vlprep.core.params import input_splits, load_targets
from vlprep.products.summary import built_stages, headline


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    write_json(args.output, headline(built_stages(input_splits(), load_targets())))


if __name__ == "__main__":
    stage_main(main)
