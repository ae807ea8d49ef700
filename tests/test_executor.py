"""The executor returns every unit's output once, in unit order, for any num_proc."""
import pyarrow as pa
import pytest

from vlprep.executor import run_units
from vlprep.metrics import StageStats
from vlprep.sources import Unit


def numbered(unit: Unit):
    stats = StageStats(rows_in=3, rows_out=3)
    return pa.table({"unit": [unit.row_group] * 3}), stats


@pytest.mark.parametrize("num_proc", [1, 2, 3])
@pytest.mark.parametrize("n_units", [0, 1, 2, 5, 13])
def test_all_units_in_order(num_proc, n_units):
    units = [Unit("f", i, 3 * i) for i in range(n_units)]
    stats = StageStats()
    out = [v for t in run_units(numbered, units, num_proc, stats) for v in t.column("unit").to_pylist()]
    assert out == [i for i in range(n_units) for _ in range(3)]
    assert stats.rows_in == stats.rows_out == 3 * n_units


def by_file(unit: Unit):
    return pa.table({"f": [unit.path] * 50_000}), StageStats(rows_in=50_000, rows_out=50_000)


@pytest.mark.parametrize("num_proc", [2, 3])
def test_units_with_equal_names_in_different_files_are_kept_apart(num_proc):
    # row_group/first_row restart in every file: the executor must not confuse such units
    units = [Unit(f"f{i}", 0, 0) for i in range(9)]
    out = [t.column("f")[0].as_py() for t in run_units(by_file, units, num_proc, StageStats())]
    assert out == [u.path for u in units]
