"""Stages `swift` and `swift_grpo`: hf_bytes split -> ms-swift SFT (`sft`) or GRPO (`grpo`) parquet.
usage: swift.py {sft,grpo} SPLIT HF_BYTES_DIR OUT.parquet [SELECTION.parquet]"""
import argparse
from pathlib import Path

from vlprep.core.failures import stage_main
from vlprep.core.params import load_section
from vlprep.targets.swift import SWIFT, SWIFT_GRPO


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("variant", choices=["sft", "grpo"])
    ap.add_argument("split")
    ap.add_argument("source", type=Path)
    ap.add_argument("output", type=Path)
    ap.add_argument("selection", type=Path, nargs="?")  # rows left out (stage select)
    args = ap.parse_args()
    target = SWIFT if args.variant == "sft" else SWIFT_GRPO
    target.run(args.split, args.source, args.output, load_section("swift"), selection=args.selection)


if __name__ == "__main__":
    stage_main(main)
