"""Stage `audit`: contamination between two hf_bytes splits.
usage: audit.py TRAIN_DIR TEST_DIR OUT_DIR  -> OUT_DIR/{pairs,flagged_train_rows}.parquet, metrics/audit/contamination.json"""
import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vlprep.audit import audit
from vlprep.failures import stage_main
from vlprep.metrics import write_json
from vlprep.params import load_section
from vlprep.sources import hf_dataset_files, plan_arrow_units
from vlprep.writers import atomic_path


def write_table(path: Path, table: pa.Table) -> None:
    """Atomically; unlike writers.write_parquet, zero rows is a valid result here (nothing contaminated)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=1 << 16, write_statistics=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("train", type=Path)
    ap.add_argument("test", type=Path)
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    p = load_section("audit")
    units = [plan_arrow_units(hf_dataset_files(d)) for d in (args.train, args.test)]
    result = audit(*units, p, p.num_proc)
    write_table(args.output / "pairs.parquet", result.pairs)
    write_table(args.output / "flagged_train_rows.parquet", result.flagged)
    write_json(Path("metrics/audit/contamination.json"), result.metrics)
    m = result.metrics
    print(f"audit: train rows flagged vs test {m['train_vs_test']}, within train {m['within_train']}")


if __name__ == "__main__":
    stage_main(main)
