"""Run a pure per-unit function over work units, in order, in one or N processes.

The function takes a Unit and returns (pa.Table, StageStats). Results come back in unit order whatever
num_proc is, so outputs are byte-identical for any num_proc. At most 2*num_proc units are in flight, so
memory stays bounded by a few row groups however large the dataset is."""
from __future__ import annotations

import ctypes
import itertools
import multiprocessing
import os
import queue
import shutil
import signal
import threading
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator, Sequence

import pyarrow as pa

from vlprep.io import remote
from vlprep.core.failures import WorkerDied
from vlprep.core.metrics import StageStats
from vlprep.io.sources import Unit, open_parquet
from vlprep.core.writers import work_path

UnitFn = Callable[[Unit], "tuple[pa.Table, StageStats]"]
AttachFn = Callable[[Unit, pa.Table], pa.Table]


def _die_with_parent() -> None:
    # Linux: the kernel sends SIGKILL to this worker when the stage process dies, however it dies, so a
    # killed stage leaves no workers behind writing tracebacks (BrokenPipeError) into the user's terminal.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group: the parent alone decides what it means (stop, publish
    # nothing); a worker finishing its unit is harmless. SIGTERM keeps its default so shutdown kills.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    # A forked worker must not share the parent's open parquet files (and their file positions), nor its
    # S3 client's connections.
    open_parquet.cache_clear()
    remote.s3.cache_clear()


def _ready() -> None:
    pass


def _run_and_spill(fn: UnitFn, unit: Unit, spill_path: str) -> tuple[str, StageStats]:
    """Run fn in a worker and hand its table back through an uncompressed Arrow file: pickling
    image-heavy tables through the pool's pipe cost as much CPU as the work itself."""
    table, stats = fn(unit)
    with pa.OSFile(spill_path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return spill_path, stats


def _load_spilled(path: str) -> pa.Table:
    # Memory-mapped: the table's buffers are the page-cache pages the worker wrote, not a second copy.
    # Unlinking a mapped file is fine on Linux: the pages live until the table is dropped.
    with pa.memory_map(path) as f:
        table = pa.ipc.open_file(f).read_all()
    os.unlink(path)
    return table


_DONE = object()


def _read_ahead(items: Iterator, depth: int) -> Iterator:
    """Produce items in a background thread while the consumer works on earlier ones. The consumer
    (the writer) spends its time in Arrow and in write syscalls, which release the GIL, so producing
    the next unit overlaps with writing the last one. At most `depth` items wait, so memory stays bounded."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as e:  # handed to the consumer, raised there
            put((None, e))

    thread = threading.Thread(target=produce, name="vlprep-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = q.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def as_is(unit: Unit, table: pa.Table) -> pa.Table:
    return table


def run_units(fn: UnitFn, units: Sequence[Unit], num_proc: int, stats: StageStats,
              attach: AttachFn = as_is) -> Iterator[pa.Table]:
    """Yield each unit's output table in order, merging its stats into `stats` as it arrives.

    `attach(unit, table)` completes what fn returned, in this process: fn may leave out columns that
    pass through from the input unchanged (images), so workers never copy them back (map_rows).
    Results are produced in a read-ahead thread, so this thread only consumes (writes) them."""
    if num_proc <= 1 or len(units) <= 1:
        def run_one(unit: Unit) -> tuple[pa.Table, StageStats]:
            table, unit_stats = fn(unit)
            return attach(unit, table), unit_stats

        yield from _merged(_read_ahead(map(run_one, units), depth=2), stats)
        return
    # fork: workers start at once with everything imported (spawn re-imports datasets/transformers,
    # ~2 s per worker). Arrow re-creates its thread pools in a forked child, so pyarrow is fork-safe.
    # The pool is made here, before the read-ahead thread exists: forking a process that has other
    # threads (possibly inside a lock) is what makes fork unsafe.
    # concurrent.futures, not multiprocessing.Pool: when a worker dies, Pool silently replaces it and
    # waits forever for the lost result; ProcessPoolExecutor reports it (BrokenProcessPool).
    spill_dir = work_path("spill")
    spill_dir.mkdir()
    pool = ProcessPoolExecutor(num_proc, mp_context=multiprocessing.get_context("fork"), initializer=_worker_init)
    try:
        pool.submit(_ready).result()  # forks every worker now, in this thread (fork starts them all at once)
        yield from _merged(_read_ahead(_pooled(pool, fn, units, num_proc, spill_dir, attach), depth=2), stats)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # running units finish: bounded by one unit each
        shutil.rmtree(spill_dir, ignore_errors=True)


def _pooled(pool, fn: UnitFn, units: Sequence[Unit], num_proc: int, spill_dir: str,
            attach: AttachFn) -> Iterator[tuple[pa.Table, StageStats]]:
    """Units run in the pool, at most 2*num_proc in flight; results in unit order."""
    # One spill file per unit position: unique however units are named across files.
    todo = ((unit, os.path.join(spill_dir, f"{i:08d}.arrow")) for i, unit in enumerate(units))
    unit = units[0]
    try:
        pending: deque = deque((job[0], pool.submit(_run_and_spill, fn, *job))
                               for job in itertools.islice(todo, 2 * num_proc))
        while pending:
            unit, result = pending.popleft()
            path, unit_stats = result.result()
            job = next(todo, None)
            if job is not None:
                pending.append((job[0], pool.submit(_run_and_spill, fn, *job)))
            yield attach(unit, _load_spilled(path)), unit_stats
    except BrokenProcessPool:
        raise WorkerDied(f"a worker process died while running {unit.source} (rows from {unit.first_row}): "
                         "killed, or out of memory (try a smaller num_proc); nothing was published") from None


def _merged(results: Iterator[tuple[pa.Table, StageStats]], stats: StageStats) -> Iterator[pa.Table]:
    # Stats are merged here, in the consumer's thread: what consumes the tables (e.g. max_rows)
    # updates the same stats, and two threads must not both do `+=` on them.
    for table, unit_stats in results:
        stats.merge(unit_stats)
        yield table
