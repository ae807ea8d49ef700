"""Drop accounting and summaries shared by every stage: each row is kept or dropped with a named reason."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class StageStats:
    """Counters one batch function returns; the executor adds them up across batches and processes."""

    rows_in: int = 0
    rows_out: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> rows
    counts: Counter = field(default_factory=Counter)  # other totals: images_in, bytes_out, warnings...
    # Histograms (value -> rows) of per-row quantities such as images per row. Merging histograms is
    # exact and order-independent, so min/mean/p95/max and plots do not depend on num_proc, and memory
    # grows with the number of distinct values, not with rows.
    series: dict = field(default_factory=lambda: defaultdict(Counter))

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def observe(self, name: str, value: int) -> None:
        self.series[name][int(value)] += 1

    def merge(self, other: "StageStats") -> None:
        self.rows_in += other.rows_in
        self.rows_out += other.rows_out
        self.dropped.update(other.dropped)
        self.counts.update(other.counts)
        for name, hist in other.series.items():
            self.series[name].update(hist)

    def check_balance(self) -> None:
        # The invariant every stage promises: no row vanishes without a reason.
        total = self.rows_out + sum(self.dropped.values())
        if total != self.rows_in:
            raise AssertionError(f"row accounting broken: rows_in={self.rows_in} != rows_out+dropped={total}")

    def as_dict(self) -> dict:
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_dropped": sum(self.dropped.values()),
            "dropped": dict(sorted(self.dropped.items())),
            **dict(sorted(self.counts.items())),
            **{name: summarize(hist) for name, hist in sorted(self.series.items())},
        }


def summarize(hist: Counter) -> dict:
    """min/mean/p95/max of a value->count histogram."""
    n = sum(hist.values())
    if not n:
        return {"min": 0, "mean": 0.0, "p95": 0, "max": 0}
    values = sorted(hist)
    seen, p95 = 0, values[-1]
    for v in values:
        seen += hist[v]
        if seen >= 0.95 * n:
            p95 = v
            break
    mean = sum(v * c for v, c in hist.items()) / n
    return {"min": values[0], "mean": round(mean, 3), "p95": p95, "max": values[-1]}


def histogram_rows(hist: Counter, name: str) -> list[dict]:
    """Rows for a DVC plot file: one entry per distinct value."""
    return [{name: v, "rows": hist[v]} for v in sorted(hist)]


def write_json(path: Path, data) -> None:
    """Sorted keys and a trailing newline: byte-stable, and clean in `dvc metrics diff`."""
    from vlprep.writers import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
