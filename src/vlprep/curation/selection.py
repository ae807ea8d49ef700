"""Which hf_bytes rows the trainer targets are built from (stage `select`, README "Row selection"): train
rows the contamination audit flagged (with audit.drop_train_contaminated), then a seeded subset
(`subset`). Computed once per split, so verl and trl are built from the same rows; the targets drop the
others with the reason recorded here, so every row stays counted.

The selection of a split is a small parquet, data/select/<split>.parquet, listing only the rows left
out: `row` (position in the hf_bytes split, as verl's extra_info.index), `reason`, `detail`. No row is
copied, no image read.

Subsets: every row gets a key, a 64-bit hash of (subset.seed, dataset_name, dataset_index, row); the
subset is the `subset.rows` rows of smallest key (stratified: smallest *priority*, see `subset_order`). The
order is fixed by the seed, so for one seed a smaller subset is always inside a larger one (nested).
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlprep.core.metrics import Rejected

SELECTION_SCHEMA = pa.schema([("row", pa.int64()), ("reason", pa.string()), ("detail", pa.string())])
# train-vs-test audit kind -> drop reason, most specific first (a row matching several is named by the first)
CONTAMINATED = {
    "exact_image": "contaminated_exact_image",
    "near_image": "contaminated_near_image",
    "near_item": "contaminated_near_item",
}


def subset_keys(seed: int, names: list, indexes: list) -> np.ndarray:
    """One uint64 per row from the seed and the row's identity (dataset_name, dataset_index, position)."""
    keys = np.empty(len(names), dtype=np.uint64)
    for row, (name, index) in enumerate(zip(names, indexes)):
        digest = hashlib.blake2b(json.dumps([seed, name, index, row]).encode(), digest_size=8).digest()
        keys[row] = int.from_bytes(digest, "big")
    return keys


def subset_order(keys: np.ndarray, strata: list | None = None) -> np.ndarray:
    """Candidate positions (into keys) in selection order: a subset of size n is the first n.

    Unstratified: by key. Stratified: within each stratum (dataset_name) rows are ranked by key and the
    r-th (from 0) of a stratum of n_s rows gets priority (r + 1/2) / n_s; rows are taken by priority
    (ties by key). The first n rows then give each stratum its Sainte-Laguë (Webster) share of n,
    proportional to n_s up to rounding, and, since priorities do not depend on n, growing n only adds
    rows: stratified subsets are nested too."""
    if strata is None:
        return np.lexsort((np.arange(len(keys)), keys))
    labels = np.array(["\x00null" if s is None else f"s{s}" for s in strata], dtype=object)
    _, stratum = np.unique(labels, return_inverse=True)
    by_key = np.lexsort((keys, stratum))  # stratum, then key
    sizes = np.bincount(stratum)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(len(keys), dtype=np.int64)
    rank[by_key] = np.arange(len(keys)) - starts[stratum[by_key]]
    priority = (rank + 0.5) / sizes[stratum]
    return np.lexsort((np.arange(len(keys)), keys, priority))


def select_rows(names: list, indexes: list, flagged: dict[int, list[str]], size: int | None, seed: int,
                stratify: bool) -> list[tuple[int, str, str]]:
    """(row, reason, detail) for every row left out, by row: first the flagged rows (contaminated_<kind>,
    the most specific of their train-vs-test kinds), then, among the others, the rows outside a subset
    of `size` (None: no subset)."""
    left_out: dict[int, tuple[str, str]] = {}
    for row, kinds in flagged.items():
        test_kinds = [k for k in CONTAMINATED if k in kinds]
        if test_kinds:  # within-train duplicates (train_*) are not contamination: kept
            left_out[row] = (CONTAMINATED[test_kinds[0]], "audit kinds: " + ", ".join(test_kinds))
    if size is not None:
        candidates = np.array([r for r in range(len(names)) if r not in left_out], dtype=np.int64)
        if size < len(candidates):
            keys = subset_keys(seed, names, indexes)[candidates]
            strata = [names[r] for r in candidates] if stratify else None
            outside = candidates[subset_order(keys, strata)[size:]]
            detail = f"subset.rows={size} seed={seed}" + (" stratified" if stratify else "")
            for row in outside.tolist():
                left_out[row] = ("outside_subset", detail)
    return [(row, *left_out[row]) for row in sorted(left_out)]


@dataclass(frozen=True)
class Selection:
    """The rows of one split the targets leave out, compactly (sorted rows, dictionary-coded reasons)."""

    rows: np.ndarray  # int64, sorted
    reasons: np.ndarray  # int32 codes into reason_names
    reason_names: tuple[str, ...]
    details: np.ndarray  # int32 codes into detail_names
    detail_names: tuple[str, ...]

    def rejected(self, first_row: int, n: int) -> dict[int, Rejected]:
        """row -> Rejected for the rows first_row .. first_row+n-1 that are left out."""
        lo, hi = np.searchsorted(self.rows, [first_row, first_row + n])
        return {int(self.rows[i]): Rejected(self.reason_names[self.reasons[i]], self.detail_names[self.details[i]])
                for i in range(lo, hi)}


@functools.lru_cache(maxsize=4)
def load_selection(path: str) -> Selection:
    """Loaded once per process (and inherited by forked workers, which then never read it again)."""
    t = pq.read_table(path, schema=SELECTION_SCHEMA)
    reasons = pc.dictionary_encode(t.column("reason")).combine_chunks()
    details = pc.dictionary_encode(t.column("detail")).combine_chunks()
    rows = t.column("row").to_numpy()
    if len(rows) > 1 and not np.all(rows[1:] > rows[:-1]):
        raise ValueError(f"{path}: rows not sorted and unique")
    return Selection(rows, reasons.indices.to_numpy().astype(np.int32), tuple(reasons.dictionary.to_pylist()),
                     details.indices.to_numpy().astype(np.int32), tuple(details.dictionary.to_pylist()))


def selection_table(left_out: list[tuple[int, str, str]]) -> pa.Table:
    rows, reasons, details = zip(*left_out) if left_out else ((), (), ())
    return pa.table({"row": pa.array(rows, pa.int64()), "reason": pa.array(reasons, pa.string()),
                     "detail": pa.array(details, pa.string())}, schema=SELECTION_SCHEMA)


def read_flagged(path: Path) -> dict[int, list[str]]:
    """data/audit/flagged_train_rows.parquet: train row -> its kinds."""
    t = pq.read_table(path, columns=["row", "kinds"])
    return dict(zip(t.column("row").to_pylist(), t.column("kinds").to_pylist()))
