"""Stage `select`: which rows of each hf_bytes split the targets are built from (vlprep.curation.selection).
usage: select_rows.py --flagged FLAGGED_TRAIN_ROWS.parquet HF_BYTES_DIR OUT_DIR
-> OUT_DIR/<split>.parquet for every split in `inputs` (the rows left out), metrics/select.json"""
import argparse
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from vlprep.core.failures import stage_main
from vlprep.core.metrics import write_json
from vlprep.core.params import input_splits, load_section
from vlprep.curation.selection import read_flagged, select_rows, selection_table
from vlprep.io.sources import hf_dataset_files, plan_arrow_units, read_unit
from vlprep.core.writers import atomic_path


def identities(dataset_dir: Path) -> tuple[list, list]:
    names, indexes = [], []
    for unit in plan_arrow_units(hf_dataset_files(dataset_dir)):
        t = read_unit(unit, ["dataset_name", "dataset_index"])
        names += t.column("dataset_name").to_pylist()
        indexes += t.column("dataset_index").to_pylist()
    return names, indexes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flagged", type=Path, required=True)
    ap.add_argument("hf_bytes", type=Path)
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    subset = load_section("subset")
    drop = load_section("audit").drop_train_contaminated
    metrics = {}
    for split in sorted(input_splits()):
        names, indexes = identities(args.hf_bytes / split)
        flagged = read_flagged(args.flagged) if drop and split == "train" else {}
        size = subset.rows if split in subset.splits else None
        left_out = select_rows(names, indexes, flagged, size, subset.seed, subset.stratify)
        with atomic_path(args.output / f"{split}.parquet") as tmp:
            pq.write_table(selection_table(left_out), tmp, compression="zstd", write_statistics=False)
        dropped = Counter(reason for _, reason, _ in left_out)
        metrics[split] = {"rows": len(names), "selected": len(names) - len(left_out), "left_out": dict(sorted(dropped.items()))}
        print(f"select[{split}]: {metrics[split]['selected']}/{len(names)} rows; left out {dict(dropped)}", file=sys.stderr)
    write_json(Path("metrics/select.json"), metrics)


if __name__ == "__main__":
    stage_main(main)
