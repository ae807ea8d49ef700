"""What a user sees while a stage runs: a progress bar on a terminal (rows/s, MB/s written, rows dropped
so far, ETA from the rows the inputs' metadata declares), and on a non-terminal (CI logs, `dvc repro`
piped) a short line at most every 10 s, so logs stay readable."""
from __future__ import annotations

import sys
import time
from typing import Iterator

import pyarrow as pa

from vlprep.core.metrics import StageStats

LOG_EVERY_S = 10.0


def with_progress(tables: Iterator[pa.Table], name: str, total_rows: int, stats: StageStats,
                  stream=None) -> Iterator[pa.Table]:
    """Pass the tables through, reporting rows read (stats.rows_in) against total_rows."""
    stream = stream or sys.stderr
    start = last = time.monotonic()
    written = 0
    if stream.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total_rows or None, desc=name, unit="rows", file=stream, dynamic_ncols=True, leave=False)
        try:
            for table in tables:
                written += table.nbytes
                bar.update(stats.rows_in - bar.n)
                mb_s = written / 1e6 / max(time.monotonic() - start, 1e-9)
                bar.set_postfix_str(f"{mb_s:.0f} MB/s, dropped {sum(stats.dropped.values())}", refresh=False)
                yield table
        finally:
            bar.close()
        return
    for table in tables:
        written += table.nbytes
        now = time.monotonic()
        if now - last >= LOG_EVERY_S:
            last = now
            done = f"{stats.rows_in}/{total_rows}" if total_rows else str(stats.rows_in)
            print(f"{name}: {done} rows, {written / 1e6 / (now - start):.0f} MB/s, "
                  f"dropped {sum(stats.dropped.values())}, {now - start:.0f} s", file=stream, flush=True)
        yield table
