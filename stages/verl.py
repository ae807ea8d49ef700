"""Stage `verl`: hf_bytes split -> verl RLHFDataset parquet.  usage: verl.py SPLIT HF_BYTES_DIR OUT_DIR [SELECTION.parquet]
(OUT_DIR: part-00000.parquet, ... see parts.py)
(SELECTION: the rows stage select leaves out, data/select/<split>.parquet)"""
import argparse
from pathlib import Path

from vlprep.core.params import ParamsError, load_section
from vlprep.core.failures import stage_main
from vlprep.engine.runner import limit_rows
from vlprep.engine.post import shuffled
from vlprep.io.sources import hf_dataset_files
from vlprep.targets.verl import VERL, verl_row_refs
from vlprep.core.writers import work_path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("split")
    ap.add_argument("source", type=Path)
    ap.add_argument("output", type=Path)
    ap.add_argument("selection", type=Path, nargs="?")
    args = ap.parse_args()
    p = load_section("verl")
    if p.engine == "ray" and (p.shuffle or p.max_rows is not None):
        # Both need every row before the first is written (a global order, a global count): one process.
        raise ParamsError("params.yaml: verl.shuffle and verl.max_rows work with verl.engine: local only "
                          "(engine: ray writes each part where it runs)")
    post = [] if p.max_rows is None else [limit_rows(p.max_rows, verl_row_refs(str(args.source)))]
    if p.shuffle:
        size = sum(f.stat().st_size for f in hf_dataset_files(args.source))
        work = work_path(f"shuffle-{args.split}")
        post.insert(0, lambda tables, stats: shuffled(tables, p.seed, work, size))
    part_rows = None if p.shuffle else p.part_rows  # a global shuffle has no input ranges: one part
    VERL.run(args.split, args.source, args.output, p, post, args.selection, part_rows)


if __name__ == "__main__":
    stage_main(main)
