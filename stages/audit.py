"""Stage `audit`: data/hf_bytes/{train,test} -> contamination pairs, flagged train rows, metrics."""
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vlprep.audit import AuditConfig, audit
from vlprep.metrics import write_json
from vlprep.params import load_params
from vlprep.sources import plan_hf_bytes_units
from vlprep.writers import atomic_path

OUT = Path("data/audit")


def write_table(path: Path, table: pa.Table) -> None:
    """Atomically; unlike writers.write_parquet, zero rows is a valid result here (nothing contaminated)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=1 << 16, write_statistics=False)


def main() -> None:
    p = load_params()["audit"]
    result = audit(plan_hf_bytes_units("train"), plan_hf_bytes_units("test"), AuditConfig.from_params(p), p["num_proc"])
    write_table(OUT / "pairs.parquet", result.pairs)
    write_table(OUT / "flagged_train_rows.parquet", result.flagged)
    write_json(Path("metrics/audit/contamination.json"), result.metrics)
    m = result.metrics
    print(f"audit: train rows flagged vs test {m['train_vs_test']}, within train {m['within_train']}")


if __name__ == "__main__":
    main()
