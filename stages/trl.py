"""Stage `trl`: hf_bytes split -> TRL vision SFT parquet.  usage: trl.py SPLIT HF_BYTES_DIR OUT_DIR [SELECTION.parquet]
(OUT_DIR: part-00000.parquet, ... see parts.py)
(SELECTION: the rows stage select leaves out, data/select/<split>.parquet)"""
import argparse
from pathlib import Path

from vlprep.core.params import load_section
from vlprep.core.failures import stage_main
from vlprep.targets.trl import TRL


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("split")
    ap.add_argument("source", type=Path)
    ap.add_argument("output", type=Path)
    ap.add_argument("selection", type=Path, nargs="?")
    args = ap.parse_args()
    p = load_section("trl")
    TRL.run(args.split, args.source, args.output, p, selection=args.selection, part_rows=p.part_rows)


if __name__ == "__main__":
    stage_main(main)
