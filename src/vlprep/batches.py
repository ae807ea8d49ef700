"""The row loop every stage's batch function shares: keep a row, or drop it with a counted reason."""
from __future__ import annotations

from typing import Callable

import pyarrow as pa

from vlprep.metrics import StageStats
from vlprep.records import RowRejected

RowFn = Callable[[dict, int, StageStats], dict]


def map_rows(rows: list[dict], row_fn: RowFn, schema: pa.Schema, where: str, first_row: int,
             source: pa.Table | None = None, passthrough: tuple[str, ...] = ()) -> tuple[pa.Table, StageStats]:
    """Apply row_fn(row, row_index, stats) to every row of a batch; a pure function of its inputs,
    so the executor can run it in any process (or Ray's map_batches) with the same result.

    row_fn raises RowRejected to drop a row; any other exception is a bug or an input nobody imagined,
    and stops the stage naming the file and row.

    Columns named in `passthrough` are taken from `source` (the batch `rows` came from) for the kept
    rows, whatever row_fn put there: the caller promises row_fn leaves them unchanged. Image bytes then
    go from input to output as Arrow buffers instead of through Python objects (4x faster here)."""
    stats = StageStats()
    out, kept = [], []
    for i, row in enumerate(rows):
        stats.rows_in += 1
        try:
            out.append(row_fn(row, first_row + i, stats))
            kept.append(i)
            stats.rows_out += 1
        except RowRejected as e:
            stats.drop(e.reason)
        except Exception as e:
            raise RuntimeError(f"{where} row {first_row + i}: {type(e).__name__}: {e}") from e
    if not passthrough:
        return pa.Table.from_pylist(out, schema=schema), stats
    built = pa.Table.from_pylist(out, schema=pa.schema([f for f in schema if f.name not in passthrough]))
    taken = source.select(list(passthrough)).take(pa.array(kept, pa.int64()))
    columns = [taken.column(f.name).cast(f.type) if f.name in passthrough else built.column(f.name) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema), stats
