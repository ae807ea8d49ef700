"""What every stage script does around its batch function: plan units, run them, publish the output
atomically, and write metrics, plot data and the rejects file. Stage scripts only parse params and
pick the pieces."""
from __future__ import annotations

import os
import sys
from typing import Callable, Iterable, Iterator

import pyarrow as pa

from vlprep.io import remote
from vlprep.engine.executor import AttachFn, as_is, run_units
from vlprep.core import paths
from vlprep.core.metrics import StageStats, plot_files, what_to_do, write_json
from vlprep.engine.progress import with_progress
from vlprep.core.schema import REJECTS_SCHEMA
from vlprep.core.failures import InputError
from vlprep.io.sources import Unit, unit_paths
from vlprep.core.sections import EngineParams
from vlprep.engine.parts import Observer, Parted, PartInfo, PartResult, plan_parts, write_stream
from vlprep.engine.ray_engine import run_parts_on_ray
from vlprep.core.writers import EmptyOutput, parquet_sink
from vlprep.engine.post import Post


def run_stage(
    stage: str,
    split: str,
    plan: Callable[[], list[Unit]],
    unit_fn: Callable[[Unit], "tuple[pa.Table, StageStats]"],
    write: Callable[[Iterable[pa.Table]], int] | Parted,
    num_proc: int,
    post: list[Post] = (),
    attach: AttachFn = as_is,
    engine: EngineParams | None = None,
) -> StageStats:
    """Run one stage for one split; exit with a clear message on structural errors or empty output.
    Metrics go to metrics/<stage>/<split>.json, plot data to plots/<stage>/<split>/ and dropped rows to
    data/rejects/<stage>/<split>.parquet, as dvc.yaml declares.

    `write` takes the ordered stream of output tables (one file), or is a Parted output: a directory
    of parts (parts.py), which engine `ray` has its workers write (ray_engine.py). `attach` completes
    each unit's table (see executor.run_units). `post` transforms the ordered stream of output tables
    in turn (engine local only)."""
    name = f"{stage}[{split}]"
    metrics_path = paths.metrics_file(stage, split)
    plots_dir = paths.plots_dir(stage, split)
    stats = StageStats()
    empty = False
    try:
        with parquet_sink(paths.rejects_file(stage, split), REJECTS_SCHEMA) as write_rejects:
            def flushing(tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
                # Rejects leave memory as each table passes: bounded by a unit, like the tables.
                for table in tables:
                    _flush(stats, stage, split, write_rejects)
                    yield table
                _flush(stats, stage, split, write_rejects)

            units = plan()
            total = sum(u.rows for u in units)
            try:
                if isinstance(write, Parted) and engine is not None and engine.engine == "ray":
                    if post:
                        raise ValueError("engine ray runs no post transforms")  # the stages refuse them first
                    results = run_parts_on_ray(write, plan_parts(units, write.part_rows), unit_fn, attach,
                                               engine.ray_address, engine.num_proc)
                    write.publish(lambda directory: _merged_parts(
                        with_progress(unchanged_inputs(results(directory), units), name, total, stats),
                        write, stats, lambda: _flush(stats, stage, split, write_rejects)), stats)
                else:
                    tables = run_units(unit_fn, units, num_proc, stats, attach)
                    tables = flushing(with_progress(unchanged_inputs(tables, units), name, total, stats))
                    if isinstance(write, Parted) and write.observer:
                        tables = _observed(tables, write.observer(), stats)
                    for transform in post:
                        tables = flushing(transform(tables, stats))
                    if isinstance(write, Parted):
                        parts = plan_parts(units, write.part_rows)
                        write.publish(lambda directory: write_stream(write.fmt, directory, parts, tables), stats)
                    else:
                        write(tables)
            except EmptyOutput:
                empty = True  # the rejects file is still published: it says why nothing was kept
    except InputError as e:
        sys.exit(f"{name}: {e}")
    if empty:
        # An empty training set is never what the user wanted: fail, and say what was dropped.
        write_json(metrics_path, stats.as_dict())
        fix = what_to_do(stage, stats.dropped)
        sys.exit(f"{name}: zero rows kept of {stats.rows_in}; dropped: {dict(stats.dropped)}; "
                 + (f"to keep them, {fix}; " if fix else "") + f"see {paths.rejects_file(stage, split)}")
    stats.check_balance()
    write_json(metrics_path, stats.as_dict())
    for plot, rows in plot_files(stats).items():
        write_json(plots_dir / f"{plot}.json", rows)
    print(f"{name}: kept {stats.rows_out}/{stats.rows_in} rows; dropped {dict(stats.dropped)}", file=sys.stderr)
    return stats


def _observed(tables: Iterator[pa.Table], observer: Observer, stats: StageStats) -> Iterator[pa.Table]:
    for table in tables:
        observer.update(table)
        observer.record(stats)
        yield table


def _merged_parts(results: Iterator[PartResult], output: Parted, stats: StageStats,
                  flush: Callable[[], None]) -> Iterator[PartInfo]:
    """Engine ray: the parts' results, in part order, merged as the local engine merges its units
    (unit by unit, flushing rejects after each), so metrics and the rejects file are the same bytes."""
    observer = output.observer() if output.observer else None
    for result in results:
        for unit_stats in result.unit_stats:
            stats.merge(unit_stats)
            flush()
        if observer is not None:
            observer.merge(result.observer)
            observer.record(stats)
        yield result.info


def _stamp(path: str) -> tuple | None:
    if remote.is_s3(path):
        return remote.stamp(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def unchanged_inputs(tables: Iterator[pa.Table], units: list[Unit]) -> Iterator[pa.Table]:
    """Pass the tables through; once all are read (before anything is published), stop the stage if an
    input file was removed or rewritten meanwhile: the output would mix two versions of the data."""
    stamps = {path: _stamp(path) for path in sorted({p for u in units for p in unit_paths(u)})}
    yield from tables
    for path, stamp in stamps.items():
        now = _stamp(path)
        if now != stamp:
            what = "removed" if now is None else "changed"
            raise InputError(f"input {path} was {what} while the stage read it; nothing was published: rerun")


def _flush(stats: StageStats, stage: str, split: str, write_rejects) -> None:
    records = stats.take_rejects()
    if records:
        write_rejects(pa.Table.from_pylist([{"stage": stage, "split": split, **r} for r in records], schema=REJECTS_SCHEMA))
