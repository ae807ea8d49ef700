"""A seeded shuffle of a stream of tables in bounded memory (external bucket shuffle).

Pass 1 gives every row a random 63-bit key and appends it to one of B bucket files by key; pass 2 loads
one bucket at a time and emits it sorted by key. Rows are uniformly shuffled, memory is one bucket
(~total/B), and the order depends only on the seed and the input order, never on num_proc."""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BUCKET_BYTES = 256 << 20


def shuffled(tables: Iterator[pa.Table], seed: int, work_dir: Path, expected_bytes: int) -> Iterator[pa.Table]:
    buckets = max(1, math.ceil(expected_bytes / BUCKET_BYTES))
    rng = np.random.default_rng(seed)
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    try:
        writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        for table in tables:
            keys = pa.array(rng.integers(0, 2**63 - 1, size=table.num_rows, dtype=np.int64))
            keyed = table.append_column("__shuffle_key", keys)
            which = pc.bit_wise_and(keys, 0) if buckets == 1 else pc.divide(keys, (2**63 - 1) // buckets + 1)
            for b in range(buckets):
                part = keyed.filter(pc.equal(which, b))
                if part.num_rows:
                    if b not in writers:
                        writers[b] = pa.ipc.new_file(str(work_dir / f"{b:05d}.arrow"), keyed.schema)
                    writers[b].write_table(part)
        for w in writers.values():
            w.close()
        for b in sorted(writers):
            with pa.OSFile(str(work_dir / f"{b:05d}.arrow")) as f:
                bucket = pa.ipc.open_file(f).read_all()
            bucket = bucket.sort_by("__shuffle_key").drop_columns(["__shuffle_key"])
            for batch in bucket.to_batches(max_chunksize=256):
                yield pa.Table.from_batches([batch])
            del bucket
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
