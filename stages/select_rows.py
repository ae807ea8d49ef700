"""Stage `select`: which rows of each hf_bytes split the targets are built from, and in which order
(vlprep.curation.select; docs/curation.md has the steps and their order).
usage: select_rows.py --flagged FLAGGED_TRAIN_ROWS.parquet HF_BYTES_DIR OUT_DIR
-> OUT_DIR/<split>.parquet for every split in `inputs` (the rows left out), OUT_DIR/<split>.order.parquet
(the order the targets emit the selected rows in; empty: input order), metrics/select.json"""
import argparse
import sys
from pathlib import Path

import pyarrow.parquet as pq

from vlprep.core import paths
from vlprep.core.failures import InputError, stage_main
from vlprep.core.metrics import write_json
from vlprep.core.params import input_splits, load_section
from vlprep.core.writers import atomic_path
from vlprep.curation.select import SelectParams, identities, pass_counts, select_split
from vlprep.curation.selection import curation_active, order_table, read_flagged, selection_table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flagged", type=Path, required=True)
    ap.add_argument("hf_bytes", type=Path)
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    p = SelectParams(*(load_section(s) for s in ("subset", "audit", "curation", "mixture")))
    splits = input_splits()
    unknown = sorted(set(p.curation.rollouts) - set(splits))
    if unknown:
        raise InputError(f"curation.rollouts names {unknown}, which inputs does not build (inputs: {splits})")
    metrics = {}
    for split in sorted(splits):
        names, indexes = identities(args.hf_bytes / split)
        train = split == "train"
        flagged = read_flagged(args.flagged) if p.audit.drop_train_contaminated and train else {}
        referenced = ({name: read_flagged(paths.reference_dir(name) / "flagged_train_rows.parquet")
                       for name in p.audit.references} if p.audit.drop_train_referenced and train else {})
        passes = pass_counts(paths.curation_file(split), split, len(names)) if split in p.curation.rollouts else None
        left_out, sequence, m = select_split(split, names, indexes, flagged, referenced, passes, p)
        with atomic_path(args.output / f"{split}.parquet") as tmp:
            pq.write_table(selection_table([(r, *left_out[r]) for r in sorted(left_out)]), tmp, compression="zstd",
                           write_statistics=False)
        with atomic_path(args.output / f"{split}.order.parquet") as tmp:
            pq.write_table(order_table(sequence), tmp, compression="zstd", write_statistics=False)
        metrics[split] = m
        print(f"select[{split}]: {m['selected']}/{len(names)} rows; left out {m['left_out']}"
              + (f"; {m['emitted']} emitted in order ({m['repeated']} repeats)" if "emitted" in m else ""),
              file=sys.stderr)
    if p.curation.rollouts and not curation_active(p.curation):
        print("select: curation.rollouts is set but no band, order or control: pass rates are reported only",
              file=sys.stderr)
    write_json(Path("metrics/select.json"), metrics)


if __name__ == "__main__":
    stage_main(main)
