"""Run a pure per-unit function over work units, in order, in one or N processes.

The function takes a Unit and returns (pa.Table, StageStats). Results come back in unit order whatever
num_proc is, so outputs are byte-identical for any num_proc. At most 2*num_proc units are in flight, so
memory stays bounded by a few row groups however large the dataset is."""
from __future__ import annotations

import multiprocessing
from collections import deque
from typing import Callable, Iterator, Sequence

import pyarrow as pa

from vlprep.metrics import StageStats
from vlprep.sources import Unit

UnitFn = Callable[[Unit], "tuple[pa.Table, StageStats]"]


def run_units(fn: UnitFn, units: Sequence[Unit], num_proc: int, stats: StageStats) -> Iterator[pa.Table]:
    """Yield each unit's output table in order, merging its stats into `stats` as it arrives."""
    if num_proc <= 1 or len(units) <= 1:
        for unit in units:
            table, unit_stats = fn(unit)
            stats.merge(unit_stats)
            yield table
        return
    # fork: workers start at once with everything imported (spawn re-imports datasets/transformers,
    # ~2 s per worker). Arrow re-creates its thread pools in a forked child, so pyarrow is fork-safe.
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(num_proc) as pool:
        pending: deque = deque()
        todo = iter(units)
        for unit in todo:
            pending.append(pool.apply_async(fn, (unit,)))
            if len(pending) >= 2 * num_proc:
                break
        while pending:
            table, unit_stats = pending.popleft().get()
            next_unit = next(todo, None)
            if next_unit is not None:
                pending.append(pool.apply_async(fn, (next_unit,)))
            stats.merge(unit_stats)
            yield table
