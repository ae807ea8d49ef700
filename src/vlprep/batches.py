"""The row loop every stage's batch function shares: keep a row, or drop it with a counted reason."""
from __future__ import annotations

from typing import Callable

import pyarrow as pa

from vlprep.metrics import StageStats
from vlprep.records import RowRejected

RowFn = Callable[[dict, int, StageStats], dict]


def map_rows(rows: list[dict], row_fn: RowFn, schema: pa.Schema, where: str, first_row: int) -> tuple[pa.Table, StageStats]:
    """Apply row_fn(row, row_index, stats) to every row of a batch; a pure function of its inputs,
    so the executor can run it in any process (or Ray's map_batches) with the same result.

    row_fn raises RowRejected to drop a row; any other exception is a bug or an input nobody imagined,
    and stops the stage naming the file and row."""
    stats = StageStats()
    out = []
    for i, row in enumerate(rows):
        stats.rows_in += 1
        try:
            out.append(row_fn(row, first_row + i, stats))
            stats.rows_out += 1
        except RowRejected as e:
            stats.drop(e.reason)
        except Exception as e:
            raise RuntimeError(f"{where} row {first_row + i}: {type(e).__name__}: {e}") from e
    return pa.Table.from_pylist(out, schema=schema), stats
