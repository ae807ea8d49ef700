"""Stage `audit`: contamination between two hf_bytes splits.
usage: audit.py TRAIN_DIR TEST_DIR OUT_DIR  -> OUT_DIR/{pairs,flagged_train_rows}.parquet, metrics/audit/contamination.json"""
import argparse
from contextlib import ExitStack
from pathlib import Path

import pyarrow.parquet as pq

from vlprep.core.failures import stage_main
from vlprep.core.metrics import write_json
from vlprep.core.params import load_section
from vlprep.io.sources import hf_dataset_files, plan_arrow_units
from vlprep.core.writers import FixedRowGroups, atomic_path
from vlprep.curation.audit.run import AuditRun
from vlprep.curation.audit.tables import FLAGGED_SCHEMA, PAIRS_SCHEMA


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("train", type=Path)
    ap.add_argument("test", type=Path)
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    p = load_section("audit")
    units = [plan_arrow_units(hf_dataset_files(d)) for d in (args.train, args.test)]
    run = AuditRun(p, p.num_proc)
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
    m = run.metrics
    print(f"audit: train rows flagged vs test {m['train_vs_test']}, within train {m['within_train']}")


if __name__ == "__main__":
    stage_main(main)
