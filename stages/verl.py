"""Stage `verl`: hf_bytes split -> verl RLHFDataset parquet.  usage: verl.py SPLIT HF_BYTES_DIR OUT.parquet"""
import argparse
from pathlib import Path

from vlprep.params import load_section
from vlprep.failures import stage_main
from vlprep.runner import limit_rows
from vlprep.shuffle import shuffled
from vlprep.sources import hf_dataset_files
from vlprep.to_verl import VERL, verl_row_refs
from vlprep.writers import work_path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("split")
    ap.add_argument("source", type=Path)
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    p = load_section("verl")
    post = [limit_rows(p.max_rows, verl_row_refs(str(args.source)))]
    if p.shuffle:
        size = sum(f.stat().st_size for f in hf_dataset_files(args.source))
        work = work_path(f"shuffle-{args.split}")
        post.insert(0, lambda tables, stats: shuffled(tables, p.seed, work, size))
    VERL.run(args.split, args.source, args.output, p, post)


if __name__ == "__main__":
    stage_main(main)
