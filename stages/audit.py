"""Stage `audit`: contamination between the hf_bytes train and test splits, and duplicates within train.
Without a test split (inputs.test absent), train is checked against itself only, and the stage says so.
usage: audit.py HF_BYTES_DIR OUT_DIR  -> OUT_DIR/{pairs,flagged_train_rows}.parquet,
metrics/audit/contamination.json, plots/audit/<kind>.json (docs/audit.md)"""
import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

import pyarrow.parquet as pq

from vlprep.core.failures import stage_main
from vlprep.core.metrics import write_json
from vlprep.core.params import ParamsError, input_splits, load_section
from vlprep.io.sources import hf_dataset_files, plan_arrow_units
from vlprep.core.writers import FixedRowGroups, atomic_path
from vlprep.curation.audit.run import AuditRun
from vlprep.curation.audit.tables import FLAGGED_SCHEMA, PAIRS_SCHEMA


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("hf_bytes", type=Path)
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    p = load_section("audit")
    splits = input_splits()
    if "train" not in splits:
        raise ParamsError("params.yaml: inputs.train missing: the audit checks the train split (against test)")
    if "test" not in splits:
        print("audit: no test split (inputs.test absent): train is checked for duplicates within itself only",
              file=sys.stderr)
    units = [plan_arrow_units(hf_dataset_files(args.hf_bytes / s)) if s in splits else [] for s in ("train", "test")]
    run = AuditRun(p.matching(), p.num_proc)  # the references are the reference stages' (stages/audit_reference.py)
    # Each train block's pairs and flagged rows are written as it ends; published atomically, and zero
    # rows is a valid result here (nothing contaminated), unlike writers.write_parquet.
    # Row groups of a fixed size, whatever the blocks' sizes: the bytes do not depend on index_rows.
    with ExitStack() as stack:
        writers = [FixedRowGroups(stack.enter_context(pq.ParquetWriter(stack.enter_context(atomic_path(args.output / name)),
                                                                       schema, compression="zstd", write_statistics=False)),
                                  1 << 16)
                   for name, schema in (("pairs.parquet", PAIRS_SCHEMA), ("flagged_train_rows.parquet", FLAGGED_SCHEMA))]
        for tables in run.blocks(*units):
            for writer, table in zip(writers, tables):
                writer.write(table)
        for writer in writers:
            writer.close()
    write_json(Path("metrics/audit/contamination.json"), run.metrics)
    for name, rows in run.plots().items():
        write_json(Path("plots/audit") / f"{name}.json", rows)
    m = run.metrics
    print(f"audit: train rows flagged vs test {m['train_vs_test']}, within train {m['within_train']}")


if __name__ == "__main__":
    stage_main(main)
