"""The row loop every stage's batch function shares: keep a row, or drop it with a counted reason."""
from __future__ import annotations

from typing import Callable

import pyarrow as pa

from vlprep.core.metrics import Rejected, RowRef, StageStats

RowFn = Callable[[dict, int, StageStats], dict]


# A partial batch's column naming, for each output row, the source row its pass-through columns come from.
SOURCE_ROW = "__source_row"


def map_rows(rows: list[dict], row_fn: RowFn, schema: pa.Schema, where: str, first_row: int,
             source: pa.Table | None = None, passthrough: tuple[str, ...] = (),
             positions: tuple[int, ...] | None = None) -> tuple[pa.Table, StageStats]:
    """Apply row_fn(row, row_index, stats) to every row of a batch; a pure function of its inputs,
    so the executor can run it in any process (or Ray's map_batches) with the same result.

    row_fn raises Rejected to drop a row (recorded with `where` and the row's position as its source);
    any other exception is a bug or an input nobody imagined, and stops the stage naming the file and row.

    Columns named in `passthrough` are not built from row_fn's dicts (the caller promises row_fn leaves
    them as they came) but taken from `source`, the batch `rows` came from, as Arrow buffers: image
    bytes then never round-trip through Python objects. Without `source` the result is a partial batch
    (those columns left out, SOURCE_ROW added) for `attach` to complete, in another process if need be.

    A row's index is first_row + its place in the batch, or, with `positions`, positions[place] (rows
    taken out of input order, io.sources.ArrowRows)."""
    stats = StageStats()
    out, kept = [], []
    for i, row in enumerate(rows):
        stats.rows_in += 1
        index = first_row + i if positions is None else positions[i]
        try:
            out.append(row_fn(row, index, stats))
            kept.append(i)
            stats.rows_out += 1
        except Rejected as e:
            stats.drop(e, RowRef.of(where, index, row))
        except Exception as e:
            raise RuntimeError(f"{where} row {index}: {type(e).__name__}: {e}") from e
    if not passthrough:
        return pa.Table.from_pylist(out, schema=schema), stats
    built = pa.Table.from_pylist(out, schema=pa.schema([f for f in schema if f.name not in passthrough]))
    partial = built.append_column(SOURCE_ROW, pa.array(kept, pa.int64()))
    return (partial if source is None else attach(partial, source, schema)), stats


def attach(table: pa.Table, source: pa.Table, schema: pa.Schema) -> pa.Table:
    """Complete a partial batch from its source batch; a complete table is returned as it is."""
    if SOURCE_ROW not in table.column_names:
        return table
    missing = [f.name for f in schema if f.name not in table.column_names]
    taken = source.select(missing)
    if table.num_rows < source.num_rows:  # else all rows kept, in order: zero-copy, no take
        taken = taken.take(table.column(SOURCE_ROW))
    columns = [taken.column(f.name).cast(f.type) if f.name in missing else table.column(f.name) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)
