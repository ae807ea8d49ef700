"""Stage `select`: which rows of each hf_bytes split the targets are built from, and in which order
(vlprep.curation.selection; docs/curation.md has the steps and their order).
usage: select_rows.py --flagged FLAGGED_TRAIN_ROWS.parquet HF_BYTES_DIR OUT_DIR
-> OUT_DIR/<split>.parquet for every split in `inputs` (the rows left out), OUT_DIR/<split>.order.parquet
(the order the targets emit the selected rows in; empty: input order), metrics/select.json"""
import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from vlprep.core import paths
from vlprep.core.failures import InputError, stage_main
from vlprep.core.metrics import write_json
from vlprep.core.params import input_splits, load_section
from vlprep.curation.selection import (
    curate,
    curation_active,
    mix,
    order_table,
    read_flagged,
    select_rows,
    selection_table,
)
from vlprep.io.sources import hf_dataset_files, plan_arrow_units, read_unit
from vlprep.core.writers import atomic_path


def identities(dataset_dir: Path) -> tuple[list, list]:
    names, indexes = [], []
    for unit in plan_arrow_units(hf_dataset_files(dataset_dir)):
        t = read_unit(unit, ["dataset_name", "dataset_index"])
        names += t.column("dataset_name").to_pylist()
        indexes += t.column("dataset_index").to_pylist()
    return names, indexes


def pass_counts(split: str, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """n and passes per row, from stage curation@<split>'s file (checked to describe this split)."""
    path = paths.curation_file(split)
    if not path.is_file():
        raise InputError(f"{path}: missing: run curation@{split} first (dvc repro)")
    t = pq.read_table(path, columns=["row", "n", "passes"])
    if t.num_rows != rows or not np.array_equal(t.column("row").to_numpy(), np.arange(rows)):
        raise InputError(f"{path}: describes {t.num_rows} rows, the hf_bytes split has {rows}: rerun curation@{split}")
    return t.column("n").to_numpy(), t.column("passes").to_numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flagged", type=Path, required=True)
    ap.add_argument("hf_bytes", type=Path)
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    subset = load_section("subset")
    audit = load_section("audit")
    curation = load_section("curation")
    mixture = load_section("mixture")
    splits = input_splits()
    unknown = sorted(set(curation.rollouts) - set(splits))
    if unknown:
        raise InputError(f"curation.rollouts names {unknown}, which inputs does not build (inputs: {splits})")
    metrics = {}
    for split in sorted(splits):
        names, indexes = identities(args.hf_bytes / split)
        train = split == "train"
        flagged = read_flagged(args.flagged) if audit.drop_train_contaminated and train else {}
        referenced = ({name: read_flagged(paths.reference_dir(name) / "flagged_train_rows.parquet")
                       for name in audit.references} if audit.drop_train_referenced and train else {})
        size = subset.rows if split in subset.splits else None
        left_out = {row: (reason, detail) for row, reason, detail in
                    select_rows(names, indexes, flagged, size, subset.seed, subset.stratify, referenced)}
        m: dict = {}
        sequence = None
        if split in curation.rollouts:
            n, passes = pass_counts(split, len(names))
            order, m["curation"] = curate(left_out, n, passes, names, indexes, curation)
            if curation.order != "none":
                sequence, m["order"] = order, curation.order
        else:
            order = np.array([r for r in range(len(names)) if r not in left_out], dtype=np.int64)
        if mixture.weights and split in mixture.splits:
            mixed, m["mixture"] = mix(left_out, order, names, indexes, mixture, split)
            if sequence is not None or len(mixed) != len(np.unique(mixed)):
                sequence = mixed
        if sequence is not None:
            m["emitted"] = len(sequence)
            m["repeated"] = len(sequence) - len(np.unique(sequence))
        rows = sorted(left_out)
        with atomic_path(args.output / f"{split}.parquet") as tmp:
            pq.write_table(selection_table([(r, *left_out[r]) for r in rows]), tmp, compression="zstd",
                           write_statistics=False)
        with atomic_path(args.output / f"{split}.order.parquet") as tmp:
            pq.write_table(order_table(sequence), tmp, compression="zstd", write_statistics=False)
        dropped = Counter(reason for reason, _ in left_out.values())
        metrics[split] = {"rows": len(names), "selected": len(names) - len(left_out),
                          "left_out": dict(sorted(dropped.items())), **m}
        print(f"select[{split}]: {metrics[split]['selected']}/{len(names)} rows; left out {dict(dropped)}"
              + (f"; {m['emitted']} emitted in order ({m['repeated']} repeats)" if "emitted" in m else ""),
              file=sys.stderr)
    if curation.rollouts and not curation_active(curation):
        print("select: curation.rollouts is set but no band, order or control: pass rates are reported only",
              file=sys.stderr)
    write_json(Path("metrics/select.json"), metrics)


if __name__ == "__main__":
    stage_main(main)
