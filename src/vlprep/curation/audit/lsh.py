"""Candidate search without comparing all pairs: LSH band keys (of MinHash signatures, of perceptual
hashes), the band index over them, and exact groups of rows sharing a 16-byte key; and the arithmetic
over such groups' member spans (spans, by_budget, cross_pairs, gather_rows), in bounded chunks.

`BandIndex` keeps per item and band one sorted uint64 key and one int32 position, and a query compares
only the items sharing a band key with it, never all pairs.
"""
from __future__ import annotations

import numpy as np

from vlprep.curation.audit.fingerprints import HASH_BITS


def lsh_bands(threshold: float, num_perm: int, fn_weight: float = 0.7) -> tuple[int, int]:
    """(bands, rows per band) minimising the weighted false-positive / false-negative areas of the
    S-curve 1-(1-s^r)^b around the threshold (datasketch's criterion, weighted towards recall: a missed
    duplicate is the costly error here, a false candidate only costs one signature comparison)."""
    s = np.linspace(0.0, 1.0, 1001)
    below, above = s <= threshold, s >= threshold
    best, best_err = (1, num_perm), np.inf
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1.0 - (1.0 - s**r) ** b
            err = (1 - fn_weight) * np.trapezoid(p[below], s[below]) + fn_weight * np.trapezoid(1 - p[above], s[above])
            if err < best_err - 1e-12:
                best, best_err = (b, r), err
    return best


_MIX = np.uint64(0x9E3779B97F4A7C15)


def minhash_band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64 keys: each band's `rows` signature values mixed into one 64-bit key."""
    n = sigs.shape[0]
    keys = np.zeros((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for b in range(bands):
            h = np.full(n, np.uint64(b + 1), dtype=np.uint64)
            for j in range(b * rows, (b + 1) * rows):
                h = (h ^ sigs[:, j].astype(np.uint64)) * _MIX
                h ^= h >> np.uint64(29)
            keys[:, b] = h
    return keys


def hamming_band_keys(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """(n, max_distance+1) keys: the 64 bits cut into max_distance+1 bands. Two hashes within
    max_distance bits agree exactly on at least one band (pigeonhole), so the index misses nothing."""
    bands = max_distance + 1
    edges = np.linspace(0, HASH_BITS, bands + 1).astype(int)
    keys = np.zeros((len(hashes), bands), dtype=np.uint64)
    for b in range(bands):
        lo, width = edges[b], edges[b + 1] - edges[b]
        keys[:, b] = (hashes >> np.uint64(lo)) & np.uint64((1 << width) - 1)
    return keys


class BandIndex:
    """Items with B band keys each; a query's candidates are the items sharing at least one band key.

    Stored per item and band: the key (uint64) in sorted order and the item's position (int32): a
    fixed 12*B bytes per item, however large the item. Lookups are binary searches."""

    def __init__(self, band_keys: np.ndarray):
        band_keys = np.asarray(band_keys, dtype=np.uint64)
        self.size, self.bands = band_keys.shape
        self.order = np.empty((self.bands, self.size), dtype=np.int32)
        self.keys = np.empty((self.bands, self.size), dtype=np.uint64)
        for b in range(self.bands):
            self.order[b] = np.argsort(band_keys[:, b], kind="stable")
            self.keys[b] = band_keys[self.order[b], b]

    @property
    def bytes_per_item(self) -> int:
        return (self.order.itemsize + self.keys.itemsize) * self.bands

    def candidates(self, query_keys: np.ndarray, budget: int = 1 << 20):
        """Yield (query positions, item positions) arrays in chunks of about `budget` candidates (a single
        query over budget is its own chunk), so memory stays bounded. A pair sharing several bands comes
        once per band: callers dedupe what survives their check, far fewer than the candidates."""
        q = np.asarray(query_keys, dtype=np.uint64)
        if not len(q) or not self.size:
            return
        lo = np.stack([np.searchsorted(self.keys[b], q[:, b], "left") for b in range(self.bands)])
        hi = np.stack([np.searchsorted(self.keys[b], q[:, b], "right") for b in range(self.bands)])
        per_query = (hi - lo).sum(axis=0)
        start = 0
        while start < len(q):
            cum = np.cumsum(per_query[start:])
            stop = start + max(1, int(np.searchsorted(cum, budget, "right")))
            qs, ts = [], []
            for b in range(self.bands):
                counts = hi[b, start:stop] - lo[b, start:stop]
                total = int(counts.sum())
                if not total:
                    continue
                qs.append(np.repeat(np.arange(start, stop), counts))
                ts.append(self.order[b][spans(lo[b, start:stop], counts)])
            if qs:
                yield np.concatenate(qs).astype(np.int64), np.concatenate(ts).astype(np.int64)
            start = stop


class ExactGroups:
    """Rows grouped by a 16-byte key: sorted unique keys and each group's rows (CSR arrays)."""

    def __init__(self, keys: np.ndarray, rows: np.ndarray):
        keys = np.asarray(keys, dtype="V16")
        by_row = np.argsort(rows, kind="stable")
        order = by_row[np.argsort(keys[by_row], kind="stable")]  # by key (bytewise), then row
        keys, rows = keys[order], rows[order]
        # one entry per (key, row): a row with the same image twice is one member
        keep = np.ones(len(keys), dtype=bool)
        keep[1:] = (keys[1:] != keys[:-1]) | (rows[1:] != rows[:-1])
        keys, rows = keys[keep], rows[keep]
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        self.keys = keys[first]
        self.offsets = np.append(np.flatnonzero(first), len(keys)).astype(np.int64)
        self.rows = rows.astype(np.int64)

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Group id of each key, -1 where absent."""
        keys = np.asarray(keys, dtype="V16")
        if not len(self.keys):
            return np.full(len(keys), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[pos] == keys, pos, -1).astype(np.int64)

    def first_row(self, groups: np.ndarray) -> np.ndarray:
        return self.rows[self.offsets[groups]]

    def expand(self, groups: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
        """For each group (with its values), every row of the group: (rows, *values repeated)."""
        groups = np.asarray(groups, dtype=np.int64)
        counts = self.sizes(groups)
        return (self.rows[spans(self.offsets[groups], counts)], *(np.repeat(v, counts) for v in values))

    def sizes(self, groups: np.ndarray) -> np.ndarray:
        return self.offsets[groups + 1] - self.offsets[groups]


def spans(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The positions start, start+1, ..., start+count-1 of each span, concatenated."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    return np.repeat(np.asarray(starts, dtype=np.int64) - (np.cumsum(counts) - counts), counts) + np.arange(total)


def unique_pair_positions(qi: np.ndarray, ti: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each distinct (qi, ti) pair (a pair sharing several bands comes
    once per band), in pair order."""
    return np.unique(qi.astype(np.int64) << 32 | ti.astype(np.int64), return_index=True)[1]


def by_budget(sizes: np.ndarray, budget: int):
    """Positions 0..len(sizes)-1 in consecutive runs whose sizes add up to at most budget (or one)."""
    cum = np.cumsum(sizes)
    start = 0
    while start < len(sizes):
        base = cum[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(cum, base + budget, "right")))
        yield np.arange(start, stop)
        start = stop


def cross_pairs(offsets: np.ndarray, ga: np.ndarray, gb: np.ndarray, budget: int, distinct: bool = False):
    """Every pair (a, b) of members of groups ga[i] and gb[i] (members of group g: offsets[g] ..
    offsets[g+1]-1), a != b with distinct, in chunks of about `budget` pairs."""
    ka, kb = offsets[ga + 1] - offsets[ga], offsets[gb + 1] - offsets[gb]
    sizes = ka * kb
    for part in by_budget(sizes, budget):
        total = int(sizes[part].sum())
        starts = np.cumsum(sizes[part]) - sizes[part]
        for lo in range(0, total, budget):  # a single link over budget: in slices
            t = np.arange(lo, min(lo + budget, total))
            j = np.searchsorted(starts, t, "right") - 1
            link, t = part[j], t - starts[j]
            a, b = offsets[ga[link]] + t // kb[link], offsets[gb[link]] + t % kb[link]
            yield (a[a != b], b[a != b]) if distinct else (a, b)


def gather_rows(arrays: list[np.ndarray], at: np.ndarray) -> np.ndarray:
    """Rows `at` of the arrays stacked, without stacking them (thumbnails: the block's unique images only)."""
    ends = np.cumsum([len(a) for a in arrays])
    out = np.empty((len(at), arrays[0].shape[1] if arrays else 0), dtype=np.uint8)
    part = np.searchsorted(ends, at, "right")
    for k, a in enumerate(arrays):
        here = np.flatnonzero(part == k)
        out[here] = a[at[here] - (ends[k] - len(a))]
    return out
