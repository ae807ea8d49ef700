"""Stage `llamafactory`: hf_bytes split -> LLaMA-Factory sharegpt SFT parquet.
usage: llamafactory.py SPLIT HF_BYTES_DIR OUT.parquet [SELECTION.parquet]"""
import argparse
from pathlib import Path

from vlprep.core.failures import stage_main
from vlprep.core.params import load_section
from vlprep.targets.llamafactory import LLAMAFACTORY


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("split")
    ap.add_argument("source", type=Path)
    ap.add_argument("output", type=Path)
    ap.add_argument("selection", type=Path, nargs="?")  # rows left out (stage select)
    args = ap.parse_args()
    LLAMAFACTORY.run(args.split, args.source, args.output, load_section("llamafactory"), selection=args.selection)


if __name__ == "__main__":
    stage_main(main)
