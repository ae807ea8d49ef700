"""What every stage script does around its batch function: plan units, run them, publish the output
atomically, and write metrics and plot data. Stage scripts only parse params and pick the pieces."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa

from vlprep.executor import AttachFn, as_is, run_units
from vlprep.metrics import StageStats, histogram_rows, write_json
from vlprep.sources import InputError, Unit
from vlprep.writers import EmptyOutput


def run_stage(
    stage: str,
    split: str,
    plan: Callable[[], list[Unit]],
    unit_fn: Callable[[Unit], "tuple[pa.Table, StageStats]"],
    write: Callable[[Iterable[pa.Table]], int],
    num_proc: int,
    post: list[Callable[[Iterator[pa.Table], StageStats], Iterator[pa.Table]]] = (),
    attach: AttachFn = as_is,
) -> StageStats:
    """Run one stage for one split; exit with a clear message on structural errors or empty output.
    Metrics go to metrics/<stage>/<split>.json and plot data to plots/<stage>/<split>/, as dvc.yaml declares.

    `attach` completes each unit's table in this process (see executor.run_units). `post` transforms
    the ordered stream of output tables in turn (e.g. shuffle, then max_rows), counting what they remove
    in the stats they are given."""
    name = f"{stage}[{split}]"
    metrics_path = Path("metrics") / stage / f"{split}.json"
    plots_dir = Path("plots") / stage / split
    stats = StageStats()
    try:
        tables = run_units(unit_fn, plan(), num_proc, stats, attach)
        for transform in post:
            tables = transform(tables, stats)
        write(tables)
    except InputError as e:
        sys.exit(f"{name}: {e}")
    except EmptyOutput:
        # An empty training set is never what the user wanted: fail, and say what was dropped.
        write_json(metrics_path, stats.as_dict())
        sys.exit(f"{name}: zero rows kept of {stats.rows_in}; dropped: {dict(stats.dropped)}")
    stats.check_balance()
    write_json(metrics_path, stats.as_dict())
    for series, hist in sorted(stats.series.items()):
        write_json(plots_dir / f"{series}.json", histogram_rows(hist, series))
    print(f"{name}: kept {stats.rows_out}/{stats.rows_in} rows; dropped {dict(stats.dropped)}", file=sys.stderr)
    return stats


def limit_rows(max_rows: int | None) -> Callable[[Iterator[pa.Table], StageStats], Iterator[pa.Table]]:
    """Keep the first max_rows rows; the rest are counted as dropped 'beyond_max_rows'."""

    def post(tables: Iterator[pa.Table], stats: StageStats) -> Iterator[pa.Table]:
        kept = 0
        for table in tables:
            room = table.num_rows if max_rows is None else max(0, max_rows - kept)
            if table.num_rows > room:
                stats.dropped["beyond_max_rows"] += table.num_rows - room
                stats.rows_out -= table.num_rows - room
                table = table.slice(0, room)
            kept += table.num_rows
            yield table

    return post
