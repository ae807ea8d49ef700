"""Post steps: transforms of a stage's ordered stream of output tables, counting what they remove (a
target names them, e.g. verl's shuffle and max_rows).

A seeded shuffle in bounded memory (external bucket shuffle):

Pass 1 gives every row a random 63-bit key and appends it to one of B bucket files by key; pass 2 loads
one bucket at a time and emits it sorted by key. Rows are uniformly shuffled, memory is one bucket
(~total/B), and the order depends only on the seed and the input order, never on num_proc."""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vlprep.core.metrics import Rejected, RowRef, StageStats

# A transform of the ordered stream of output tables (shuffle, max_rows), counting what it removes.
Post = Callable[[Iterator[pa.Table], StageStats], Iterator[pa.Table]]

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


def limit_rows(max_rows: int | None, refs: Callable[[pa.Table], list[RowRef]]) -> Post:
    """Keep the first max_rows rows; the rest are dropped as 'beyond_max_rows'. refs(table) names a
    table's rows for the rejects file."""

    def post(tables: Iterator[pa.Table], stats: StageStats) -> Iterator[pa.Table]:
        kept = 0
        for table in tables:
            room = table.num_rows if max_rows is None else max(0, max_rows - kept)
            if table.num_rows > room:
                for ref in refs(table.slice(room)):
                    stats.drop(Rejected("beyond_max_rows", f"max_rows={max_rows}"), ref)
                stats.rows_out -= table.num_rows - room
                table = table.slice(0, room)
            kept += table.num_rows
            yield table

    return post

