"""The executor returns every unit's output once, in unit order, for any num_proc."""
import pyarrow as pa
import pytest

from vlprep.engine.batches import attach, map_rows
from vlprep.engine.executor import run_units
from vlprep.core.metrics import Rejected, StageStats
from vlprep.io.sources import RowGroup


def numbered(unit: RowGroup):
    stats = StageStats(rows_in=3, rows_out=3)
    return pa.table({"unit": [unit.row_group] * 3}), stats


@pytest.mark.parametrize("num_proc", [1, 2, 3])
@pytest.mark.parametrize("n_units", [0, 1, 2, 5, 13])
def test_all_units_in_order(num_proc, n_units):
    units = [RowGroup("f", i, 3 * i) for i in range(n_units)]
    stats = StageStats()
    out = [v for t in run_units(numbered, units, num_proc, stats) for v in t.column("unit").to_pylist()]
    assert out == [i for i in range(n_units) for _ in range(3)]
    assert stats.rows_in == stats.rows_out == 3 * n_units


def by_file(unit: RowGroup):
    return pa.table({"f": [unit.path] * 50_000}), StageStats(rows_in=50_000, rows_out=50_000)


@pytest.mark.parametrize("num_proc", [2, 3])
def test_units_with_equal_names_in_different_files_are_kept_apart(num_proc):
    # row_group/first_row restart in every file: the executor must not confuse such units
    units = [RowGroup(f"f{i}", 0, 0) for i in range(9)]
    out = [t.column("f")[0].as_py() for t in run_units(by_file, units, num_proc, StageStats())]
    assert out == [u.path for u in units]


SCHEMA = pa.schema([("n", pa.int64()), ("blob", pa.binary())])


def source_of(unit: RowGroup) -> pa.Table:
    return pa.table({"n": list(range(unit.first_row, unit.first_row + 6)),
                     "blob": [b"x" * i * (unit.row_group + 1) for i in range(6)]})


def dropped(n: int) -> bool:
    return n % 12 in (2, 4)  # units 0 and 2 lose two rows each, units 1 and 3 keep all (the zero-copy path)


def some_rows(row, index, stats):
    if dropped(row["n"]):
        raise Rejected("question_missing")
    return {"n": row["n"], "blob": b"never used: blob passes through"}


def partial_unit(unit: RowGroup):
    source = source_of(unit)
    return map_rows(source.to_pylist(), some_rows, SCHEMA, unit.path, unit.first_row, passthrough=("blob",))


@pytest.mark.parametrize("num_proc", [1, 2])
def test_partial_batches_are_completed_from_their_source(num_proc):
    """What workers hand back without the pass-through column, attach completes in the parent to
    exactly what the complete batch function gives, whichever rows were dropped."""
    units = [RowGroup("f", i, 6 * i) for i in range(4)]
    completed = list(run_units(partial_unit, units, num_proc, StageStats(),
                               attach=lambda unit, table: attach(table, source_of(unit), SCHEMA)))
    for unit, table in zip(units, completed):
        source = source_of(unit)
        whole, _ = map_rows(source.to_pylist(), some_rows, SCHEMA, "f", unit.first_row, source=source, passthrough=("blob",))
        kept = [n for n in source.column("n").to_pylist() if not dropped(n)]
        assert table.equals(whole) and table.column("n").to_pylist() == kept
        assert table.column("blob").to_pylist() == [b"x" * (n - unit.first_row) * (unit.row_group + 1) for n in kept]
