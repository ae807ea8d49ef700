"""Which hf_bytes rows the trainer targets are built from (stage `select`, docs/selection.md): train
rows the contamination audit flagged (with audit.drop_train_contaminated), then a seeded subset
(`subset`). Computed once per split, so verl and trl are built from the same rows; the targets drop the
others with the reason recorded here, so every row stays counted.

The selection of a split is a small parquet, data/select/<split>.parquet, listing only the rows left
out: `row` (position in the hf_bytes split, as verl's extra_info.index), `reason`, `detail`. No row is
copied, no image read.

Subsets: every row gets a key, a 64-bit hash of (subset.seed, dataset_name, dataset_index, row); the
subset is the `subset.rows` rows of smallest key (stratified: smallest *priority*, see `subset_order`). The
order is fixed by the seed, so for one seed a smaller subset is always inside a larger one (nested).

The steps, in this order (docs/curation.md): train rows matching a test row (audit.drop_train_contaminated),
then a benchmark reference row (audit.drop_train_referenced); the seeded subset; the curation band or its
random control (curation.*, splits with rollouts); the weighted mixture (mixture.*). Each step sees only
the rows the earlier ones kept. Then the order: the curriculum (curation.order) and the mixture's repeats.
When the kept rows are not simply each row once in input order, data/select/<split>.order.parquet lists
them in the order the targets emit them (a repeated row once per copy); otherwise that file is empty.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlprep.core.failures import InputError
from vlprep.core.metrics import Rejected
from vlprep.core.sections import CurationParams, MixtureParams

SELECTION_SCHEMA = pa.schema([("row", pa.int64()), ("reason", pa.string()), ("detail", pa.string())])
# train-vs-test audit kind -> drop reason, most specific first (a row matching several is named by the first)
CONTAMINATED = {
    "exact_image": "contaminated_exact_image",
    "near_image": "contaminated_near_image",
    "near_item": "contaminated_near_item",
}
# train-vs-reference kind -> drop reason (audit.references, with audit.drop_train_referenced)
REFERENCED = {
    "exact_image": "reference_exact_image",
    "near_image": "reference_near_image",
    "near_item": "reference_near_item",
}
# data/select/<split>.order.parquet: the selected rows in the order the targets emit them, a repeated row
# once per copy; zero rows: input order, each selected row once
ORDER_SCHEMA = pa.schema([("row", pa.int64())])


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
                stratify: bool, referenced: dict[str, dict[int, list[str]]] | None = None) -> list[tuple[int, str, str]]:
    """(row, reason, detail) for every row left out, by row: first the flagged rows (contaminated_<kind>,
    the most specific of their train-vs-test kinds), then the rows matching a benchmark reference
    (`referenced`: reference name -> row -> kinds; reference_<kind>, the first reference by name), then,
    among the others, the rows outside a subset of `size` (None: no subset)."""
    left_out: dict[int, tuple[str, str]] = {}
    for row, kinds in flagged.items():
        test_kinds = [k for k in CONTAMINATED if k in kinds]
        if test_kinds:  # within-train duplicates (train_*) are not contamination: kept
            left_out[row] = (CONTAMINATED[test_kinds[0]], "audit kinds: " + ", ".join(test_kinds))
    for name, rows in sorted((referenced or {}).items()):
        for row, kinds in sorted(rows.items()):
            found = [k for k in REFERENCED if k in kinds]
            if found and row not in left_out:
                left_out[row] = (REFERENCED[found[0]], f"reference {name}: " + ", ".join(found))
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

    def rejected_rows(self, positions) -> dict[int, Rejected]:
        """row -> Rejected for the rows among `positions` (any order) that are left out."""
        positions = np.asarray(positions, dtype=np.int64)
        at = np.searchsorted(self.rows, positions)
        found = at < len(self.rows)
        found[found] = self.rows[at[found]] == positions[found]
        return {int(self.rows[i]): Rejected(self.reason_names[self.reasons[i]], self.detail_names[self.details[i]])
                for i in at[found].tolist()}


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


def order_table(sequence: np.ndarray | None) -> pa.Table:
    rows = np.empty(0, np.int64) if sequence is None else np.asarray(sequence, np.int64)
    return pa.table({"row": pa.array(rows, pa.int64())}, schema=ORDER_SCHEMA)


def load_order(path: str) -> np.ndarray | None:
    """The emission order of a split's selected rows, or None (input order, each once: an empty file, or
    no file, as for a selection written before orders existed)."""
    if not Path(path).is_file():
        return None
    rows = pq.read_table(path, schema=ORDER_SCHEMA).column("row").to_numpy()
    return rows if len(rows) else None


def row_keys(salt: str, seed: int, names: list, indexes: list) -> np.ndarray:
    """One uint64 per row from a purpose (`salt`), the seed and the row's identity: the curation and
    mixture draws use keys of their own, so that one seed for all never ties them to the subset's."""
    keys = np.empty(len(names), dtype=np.uint64)
    for row, (name, index) in enumerate(zip(names, indexes)):
        digest = hashlib.blake2b(json.dumps([salt, seed, name, index, row]).encode(), digest_size=8).digest()
        keys[row] = int.from_bytes(digest, "big")
    return keys


def _by_key(rows: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """rows ordered by key (ties, never seen with 64-bit keys, by row)."""
    return rows[np.lexsort((rows, keys[rows]))]


def curation_active(p: CurationParams) -> bool:
    """Whether curation leaves rows out or orders them (else it only reports)."""
    return p.pass_rate is not None or p.order != "none" or p.control


def curate(left_out: dict[int, tuple[str, str]], n: np.ndarray, passes: np.ndarray, names: list, indexes: list,
           p: CurationParams) -> tuple[np.ndarray, dict]:
    """The band (or its control) and the curriculum over the rows not yet left out; adds the rows it
    leaves out to `left_out`. Returns the kept rows in order and what metrics/select.json reports.

    - not_rolled_out: a row without any rollout (n = 0), when the band, the order or the control is set;
    - band [lo, hi] (inclusive): too_hard below lo, too_easy above hi, pass rate = passes / n;
    - control: as many rows as the band keeps, drawn from all rolled-out rows by a seeded key (so it is
      the same rows for every band of that size: nested), the others outside_control_subset;
    - order: easy_to_hard by pass rate descending, hard_to_easy ascending; equal pass rates (1/2 = 8/16)
      in the order of a seeded key (no source or input order clusters), then by row."""
    rows = len(n)
    excluded = np.zeros(rows, dtype=bool)
    excluded[np.fromiter(left_out, np.int64, len(left_out))] = True
    rolled = ~excluded & (n > 0)
    report = {"rolled_out": int((n > 0).sum()),
              # rows with rollouts that an earlier step (contamination, reference, subset) left out
              "rolled_out_left_out_before": dict(sorted(
                  _count(left_out[r][0] for r in np.flatnonzero(excluded & (n > 0)).tolist()).items()))}
    if not curation_active(p):
        return np.flatnonzero(~excluded), report
    for row in np.flatnonzero(~excluded & (n == 0)).tolist():
        left_out[row] = ("not_rolled_out", "no rollout counted for the row")
    rate = passes / np.where(n > 0, n, 1)
    if p.pass_rate is not None:
        lo, hi = p.pass_rate
        in_band = rolled & (rate >= lo) & (rate <= hi)
    else:
        in_band = rolled
    if p.control:
        candidates = np.flatnonzero(rolled)
        chosen = _by_key(candidates, row_keys("control", p.seed, names, indexes))[: int(in_band.sum())]
        kept = np.zeros(rows, dtype=bool)
        kept[chosen] = True
        detail = f"control of {len(chosen)} rows (the band's), seed={p.seed}"
        for row in np.flatnonzero(rolled & ~kept).tolist():
            left_out[row] = ("outside_control_subset", detail)
    else:
        kept = in_band
        if p.pass_rate is not None:
            for row in np.flatnonzero(rolled & ~in_band).tolist():
                reason = "too_easy" if rate[row] > hi else "too_hard"
                left_out[row] = (reason, f"{passes[row]}/{n[row]} passes, band [{lo}, {hi}]")
    order = np.flatnonzero(kept)
    if p.order != "none":
        tie = row_keys("order", p.seed, names, indexes)[order]
        primary = -rate[order] if p.order == "easy_to_hard" else rate[order]
        order = order[np.lexsort((order, tie, primary))]
    report["kept"] = len(order)
    report["band_rows"] = int(in_band.sum())
    if len(order):
        report["kept_mean_pass_rate"] = round(float(rate[order].mean()), 6)
    return order, report


def _count(items) -> dict:
    out: dict = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def apportion(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Largest-remainder (Hamilton) apportionment of `total` rows to the sources by weight: each gets the
    floor of its quota, the rows left go to the largest remainders (ties by name). Every source is within
    one row of its exact quota, so its share is within 1/total of its weight's."""
    names = sorted(weights)
    whole = sum(weights.values())
    quotas = {s: total * weights[s] / whole for s in names}
    out = {s: int(math.floor(quotas[s])) for s in names}
    rest = total - sum(out.values())
    for s in sorted(names, key=lambda s: (-(quotas[s] - out[s]), s))[:rest]:
        out[s] += 1
    return out


def mix(left_out: dict[int, tuple[str, str]], order: np.ndarray, names: list, indexes: list, m: MixtureParams,
        split: str) -> tuple[np.ndarray, dict]:
    """The weighted mixture over the kept rows `order` (in their order); adds the rows it leaves out to
    `left_out`. Returns the rows to emit, in `order`'s order with each repeated row's copies together,
    and the realised mixture for metrics/select.json.

    Each source s (dataset_name) of weight w_s gets n_s rows, the apportionment of the total by weight
    (`apportion`); the total is mixture.rows, or (null) the largest the rows allow with no repeat. A
    source takes its n_s rows of smallest seeded key (nested in the total); with upsample, a source with
    a_s < n_s rows takes every row n_s // a_s times and its n_s % a_s rows of smallest key once more."""
    source = np.array([None if x is None else str(x) for x in names], dtype=object)
    listed = np.array([x in m.weights for x in source[order]], dtype=bool)
    for row in order[~listed].tolist():
        left_out[row] = ("not_in_mixture", f"dataset_name {names[row]!r} not in mixture.weights")
    order = order[listed]
    available = {s: int((source[order] == s).sum()) for s in sorted(m.weights)}
    empty = [s for s, a in available.items() if not a]
    if empty:
        raise InputError(f"mixture.weights lists {empty}, which have no rows left in split {split} (after the "
                         f"earlier selection steps): remove them or check the dataset_name values")
    if m.rows is None:
        whole = sum(m.weights.values())
        total = min(int(math.floor(a * whole / m.weights[s] + 1e-9)) for s, a in available.items())
        while any(n > available[s] for s, n in apportion(total, m.weights).items()):
            total -= 1
    else:
        total = m.rows
    wanted = apportion(total, m.weights)
    short = {s: (wanted[s], available[s]) for s in wanted if wanted[s] > available[s]}
    if short and not m.upsample:
        s, (want, have) = sorted(short.items())[0]
        raise InputError(f"mixture.rows={total} gives {s!r} {want} rows, but split {split} has {have} left: lower "
                         f"mixture.rows, set it to null (the most rows without repeats), or set mixture.upsample: true")
    keys = row_keys("mixture", m.seed, names, indexes)
    copies = np.zeros(len(names), dtype=np.int64)
    report_sources = {}
    for s in sorted(m.weights):
        mine = _by_key(order[source[order] == s], keys)
        want, have = wanted[s], len(mine)
        if want <= have:
            copies[mine[:want]] = 1
            detail = f"mixture: {want} of {have} {s} rows (mixture.rows={m.rows}, seed={m.seed})"
            for row in mine[want:].tolist():
                left_out[row] = ("outside_mixture", detail)
        else:
            copies[mine] = want // have
            copies[mine[: want % have]] += 1
        report_sources[s] = {"weight": m.weights[s], "target_share": round(m.weights[s] / sum(m.weights.values()), 6),
                             "available": have, "rows": want, "share": round(want / total, 6) if total else 0.0,
                             "repeated_rows": int(max(0, want - have))}
    sequence = np.repeat(order, copies[order])
    return sequence, {"rows": total, "upsample": m.upsample, "sources": report_sources}
