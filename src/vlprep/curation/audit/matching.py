"""The block index over train and its matchers: which train rows an image or item of another row
matches, per kind.

- `exact_image`: the same encoded image bytes (content key);
- `near_image`: other bytes, perceptual hashes within `near_image_max_distance` bits: re-encoded,
  resized or recompressed copies;
- `near_item`: the question together with its options, normalised and equal, or with an estimated
  Jaccard similarity of word shingles (MinHash) of at least `near_item_threshold`, the question and the
  options each. A template question ("What modality is this?") with other options is a different item.

`TrainIndex` holds one block of train rows as fixed-size arrays over its unique contents; `row_pairs`
turns image/item matches into one entry per (train row, other row, kind).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from vlprep.core.params import AuditParams
from vlprep.curation.audit.fingerprints import HASH_BITS, hamming, item_similarity
from vlprep.curation.audit.hashing import IDS_SCHEMA, NULL_INDEX, Columns
from vlprep.curation.audit.lsh import (
    BandIndex,
    ExactGroups,
    hamming_band_keys,
    lsh_bands,
    minhash_band_keys,
    unique_pair_positions,
)

KINDS = ("exact_image", "near_image", "near_item")


@dataclass
class TrainIndex:
    """Everything the audit keeps about train: fixed-size records and indexes over unique contents."""

    config: AuditParams
    first_row: int  # the index holds train rows first_row .. first_row + rows - 1 (one block)
    rows: int
    name_codes: np.ndarray  # int32 per row into names
    names: list
    dataset_index: np.ndarray
    images: ExactGroups
    image_hash_of_group: np.ndarray  # uint64 per unique image content
    image_index: BandIndex  # over the hashable unique contents
    image_index_groups: np.ndarray  # index position -> image group
    items: ExactGroups
    item_signatures: np.ndarray  # per unique item key
    item_index: BandIndex
    item_bands: tuple[int, int]

    @classmethod
    def build(cls, parts: list[Columns], config: AuditParams) -> "TrainIndex":
        cat = lambda attr: np.concatenate([getattr(p, attr) for p in parts]) if parts else np.empty(0)  # noqa: E731
        rows = cat("rows").astype(np.int64)
        encoded = pa.chunked_array([p.names for p in parts], pa.string()).combine_chunks().dictionary_encode()
        uniq = [*encoded.dictionary.to_pylist(), None]  # code -1 (a null name) is the last
        name_codes = encoded.indices.fill_null(-1).to_numpy().astype(np.int32)
        image_rows, image_keys = cat("image_rows").astype(np.int64), cat("image_keys").astype("V16")
        image_hashes, image_hashed = cat("image_hashes").astype(np.uint64), cat("image_hashed").astype(bool)
        images = ExactGroups(image_keys, image_rows)
        g = images.lookup(image_keys)
        group_hash = np.zeros(len(images), dtype=np.uint64)
        group_ok = np.zeros(len(images), dtype=bool)
        group_hash[g[image_hashed]] = image_hashes[image_hashed]  # same bytes, same hash
        group_ok[g[image_hashed]] = True
        hashed_groups = np.flatnonzero(group_ok)
        image_index = BandIndex(hamming_band_keys(group_hash[hashed_groups], config.near_image_max_distance))

        item_keys = cat("item_keys").astype("V16")
        signatures = np.concatenate([p.signatures for p in parts]) if parts else np.zeros((0, 2, config.num_perm), np.uint32)
        items = ExactGroups(item_keys, rows)
        first = np.searchsorted(rows, items.first_row(np.arange(len(items))))  # rows are consecutive, in order
        item_signatures = signatures[first]
        bands = lsh_bands(config.near_item_threshold, config.num_perm)
        # Candidates come from the MinHash of question+options together (the elementwise min of the two
        # signatures is the MinHash of the union). The fields' shingles are disjoint, so the union's
        # Jaccard lies between the two fields' own: a pair with both >= threshold has the union >= it too.
        item_index = BandIndex(minhash_band_keys(item_signatures.min(axis=1), *bands))
        return cls(config, int(rows[0]) if len(rows) else 0, len(rows), name_codes, uniq, cat("dataset_index").astype(np.int64), images, group_hash,
                   image_index, hashed_groups, items, item_signatures, item_index, bands)

    def ids(self, rows: np.ndarray) -> pa.Table:
        """IDS_SCHEMA rows (row, dataset_name, dataset_index) of train rows of this block."""
        local = np.asarray(rows, dtype=np.int64) - self.first_row
        codes = self.name_codes[local]
        di = self.dataset_index[local]
        return pa.table({"row": local + self.first_row,
                         "dataset_name": pa.array(self.names[:-1], pa.string()).take(pa.array(codes, mask=codes < 0)),
                         "dataset_index": pa.array(di, mask=di == NULL_INDEX)}, schema=IDS_SCHEMA)

    # Candidates, one generator per kind: LSH candidates of query contents against the block's unique
    # contents, checked and deduplicated, as (query positions, train groups, similarity) per chunk. The
    # matchers below only say what they keep of them. `keep(query positions, train groups)`, when given,
    # drops candidates before the check (match_within's pruning).

    def near_image_pairs(self, q_hashes, q_keys, keep=None):
        """Query images against the block's hashed images: pairs of other bytes whose perceptual hashes
        are at most near_image_max_distance bits apart, similarity 1 - bits/64."""
        max_distance = self.config.near_image_max_distance
        for qi, ti in self.image_index.candidates(hamming_band_keys(q_hashes, max_distance)):
            groups = self.image_index_groups[ti]
            if keep is not None:
                ok = keep(qi, groups)
                qi, groups = qi[ok], groups[ok]
            dist = hamming(q_hashes[qi], self.image_hash_of_group[groups])
            ok = np.flatnonzero((dist <= max_distance) & (self.images.keys[groups] != q_keys[qi]))
            ok = ok[unique_pair_positions(qi[ok], groups[ok])]  # the cheap check first, then dedupe the few left
            yield qi[ok], groups[ok], 1.0 - dist[ok] / HASH_BITS

    def near_item_pairs(self, q_keys, q_sigs, keep=None):
        """Query items against the block's unique items: pairs of other keys whose question and options
        are each at least near_item_threshold similar (estimated Jaccard), the lower of the two."""
        keys = minhash_band_keys(q_sigs.min(axis=1), *self.item_bands)
        for qi, ti in self.item_index.candidates(keys, budget=1 << 16):
            if keep is not None:
                ok = keep(qi, ti)
                qi, ti = qi[ok], ti[ok]
            first = unique_pair_positions(qi, ti)  # before the costly check: num_perm comparisons a pair
            qi, ti = qi[first], ti[first]
            sim = item_similarity(q_sigs[qi], self.item_signatures[ti])
            ok = (sim >= self.config.near_item_threshold) & (self.items.keys[ti] != q_keys[qi])
            yield qi[ok], ti[ok], sim[ok]

    def match(self, q: Columns) -> dict[str, tuple]:
        """Query rows (test) against train: every (train row, query row, similarity) per kind."""
        g = self.images.lookup(q.image_keys)
        hit = g >= 0
        exact_image = self.images.expand(g[hit], q.image_rows[hit], np.ones(int(hit.sum())))
        sel = np.flatnonzero(q.image_hashed)
        near_image = [self.images.expand(groups, q.image_rows[sel][qi], sim)
                      for qi, groups, sim in self.near_image_pairs(q.image_hashes[sel], q.image_keys[sel])]
        g = self.items.lookup(q.item_keys)
        hit = g >= 0
        near_item = [self.items.expand(g[hit], q.rows[hit], np.ones(int(hit.sum())))]
        near_item += [self.items.expand(groups, q.rows[qi], sim)
                      for qi, groups, sim in self.near_item_pairs(q.item_keys, q.signatures)]
        return {"exact_image": exact_image, "near_image": concat3(near_image), "near_item": concat3(near_item)}

    def earliest(self, q: Columns) -> dict[str, tuple]:
        """Later train rows (q, a later block) against this block: per query image (image kinds) or row
        (near_item), the earliest row of this block it matches, the most similar on ties, as
        (query rows, earlier rows, similarity). What match_within finds inside a block, across blocks:
        O(queries) however many rows of this block share an image."""
        g = self.images.lookup(q.image_keys)
        hit = np.flatnonzero(g >= 0)
        exact_image = (q.image_rows[hit], self.images.first_row(g[hit]), np.ones(len(hit)))
        sel = np.flatnonzero(q.image_hashed)
        best = _Earliest(len(sel))
        for qi, groups, sim in self.near_image_pairs(q.image_hashes[sel], q.image_keys[sel]):
            best.offer(qi, self.images.first_row(groups), sim)
        found, earlier, sim = best.result()
        near_image = (q.image_rows[sel][found], earlier, sim)
        g = self.items.lookup(q.item_keys)
        best = _Earliest(len(q.rows))
        best.offer(np.flatnonzero(g >= 0), self.items.first_row(g[g >= 0]), np.ones(int((g >= 0).sum())))
        for qi, groups, sim in self.near_item_pairs(q.item_keys, q.signatures):
            best.offer(qi, self.items.first_row(groups), sim)
        found, earlier, sim = best.result()
        return {"exact_image": exact_image, "near_image": near_image, "near_item": (q.rows[found], earlier, sim)}

    def match_within(self) -> dict[str, tuple]:
        """Train against itself, per unique image / item (each group is queried once): for each row,
        (row, an earlier row it matches, similarity); only a group's first row stands for it as the
        earlier row, so a group of k copies gives k-1 pairs, not k*k."""
        hashed = self.image_index_groups
        return {
            "exact_image": later_rows_of_groups(self.images),
            "near_image": _near_within(self.images, hashed, lambda keep: self.near_image_pairs(
                self.image_hash_of_group[hashed], self.images.keys[hashed], keep)),
            "near_item": concat3([
                later_rows_of_groups(self.items),
                _near_within(self.items, np.arange(len(self.items)), lambda keep: self.near_item_pairs(
                    self.items.keys, self.item_signatures, keep)),
            ]),
        }


def _near_within(groups: ExactGroups, query_groups: np.ndarray, near_pairs) -> tuple:
    """For each group, the earliest row of another group near it (the most similar on ties): kept per
    group as the candidates stream by, so the work after the check and the output are O(rows) however
    many near pairs a dense cluster has. Then each of the group's rows later than that row.
    query_groups: the group each query position stands for; near_pairs(keep): the kind's generator."""
    best = _Earliest(len(groups))
    last_row = groups.rows[groups.offsets[1:] - 1]

    def keep(qi, gt):
        # only a row earlier than one of gq's rows, and not later than gq's best so far, can matter
        gq, earlier = query_groups[qi], groups.first_row(gt)
        return (gq != gt) & (earlier < last_row[gq]) & (earlier <= best.row[gq])

    for qi, gt, sim in near_pairs(keep):
        best.offer(query_groups[qi], groups.first_row(gt), sim)
    rows, earlier, sim = groups.expand(*best.result())
    later = earlier < rows
    return rows[later], earlier[later], sim[later]


class _Earliest:
    """Per query, the earliest row offered (the most similar on ties), over any number of offers."""

    NONE = np.iinfo(np.int64).max

    def __init__(self, n: int):
        self.row = np.full(n, self.NONE, dtype=np.int64)
        self.sim = np.zeros(n)

    def offer(self, query: np.ndarray, row: np.ndarray, sim: np.ndarray) -> None:
        order = np.lexsort((-sim, row, query))
        query, row, sim = query[order], row[order], sim[order]
        first = np.r_[True, query[1:] != query[:-1]] if len(query) else np.zeros(0, dtype=bool)
        query, row, sim = query[first], row[first], sim[first]
        better = (row < self.row[query]) | ((row == self.row[query]) & (sim > self.sim[query]))
        self.row[query[better]], self.sim[query[better]] = row[better], sim[better]

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        found = np.flatnonzero(self.row != self.NONE)
        return found, self.row[found], self.sim[found]


def later_rows_of_groups(groups: ExactGroups):
    """Each row of a group but the first, with the group's first row (exact copies: similarity 1)."""
    sizes = np.diff(groups.offsets)
    first = np.repeat(groups.rows[groups.offsets[:-1]], sizes)
    later = groups.rows > first
    return groups.rows[later], first[later], np.ones(int(later.sum()))


def concat3(parts):
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def row_pairs(matches: dict[str, tuple], within: bool) -> dict[str, np.ndarray]:
    """Image/item matches -> one entry per (train row, other row, kind) with the best similarity.
    Against test, a row pair sharing an exact image is not also listed as near_image. Within train, only
    pairs with an earlier row count, and each row keeps one pair per kind: its earliest earlier match of
    that kind (so a row can name one earlier row for two kinds: what holds for any split into blocks)."""
    out = {"train": [], "other": [], "kind": [], "sim": []}
    exact_keys = None
    for k, kind in enumerate(KINDS):
        train, other, sim = (np.asarray(a) for a in matches[kind])
        order = np.lexsort((-sim, other, train))
        train, other, sim = train[order], other[order], sim[order]
        pair = train.astype(np.int64) << 32 | other.astype(np.int64)
        first = np.ones(len(pair), dtype=bool)
        first[1:] = pair[1:] != pair[:-1]  # best similarity of each pair
        train, other, sim, pair = train[first], other[first], sim[first], pair[first]
        if kind == "exact_image":
            exact_keys = pair
        elif kind == "near_image" and exact_keys is not None and not within:
            keep = ~np.isin(pair, exact_keys)
            train, other, sim = train[keep], other[keep], sim[keep]
        if within:  # earliest earlier row per train row
            first = np.ones(len(train), dtype=bool)
            first[1:] = train[1:] != train[:-1]
            train, other, sim = train[first], other[first], sim[first]
        out["train"].append(train)
        out["other"].append(other)
        out["kind"].append(np.full(len(train), k, dtype=np.int8))
        out["sim"].append(sim)
    return {key: np.concatenate(v) for key, v in out.items()}

