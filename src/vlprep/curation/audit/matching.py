"""The block index over train and its matchers: which train rows an image or item of another row
matches, per kind.

- `exact_image`: the same encoded image bytes (content key);
- `near_image`: other bytes, proposed by the perceptual hash (within `near_image_max_distance` bits) or
  the layout hash (within `near_image_layout_distance`), and confirmed by confirm.py (structure,
  contrast and colour of the detail thumbnails): re-encoded, resized, recompressed, brightness-shifted
  and lightly cropped copies;
- `near_item`: the same test item, an image and its question: the rows share an image (exact or near)
  and their questions are near (normalised equal, or an estimated Jaccard of word shingles of at least
  `near_item_threshold`), as are their options where both have some, and their answers agree where
  both have one;
- `same_question_text`: the question (and options) near, whatever the images: reported, never dropped.
  A template, a question asked of at least `template_min_images` distinct images, is left out of it.

`TrainIndex` holds one block of train rows as fixed-size arrays over its unique contents; `row_pairs`
turns the matches into one entry per (train row, other row, kind).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from vlprep.core.sections import AuditParams
from vlprep.curation.audit.confirm import compare
from vlprep.curation.audit.fingerprints import hamming, item_similarity
from vlprep.curation.audit.hashing import IDS_SCHEMA, NULL_INDEX, Columns
from vlprep.curation.audit.lsh import (
    BandIndex,
    ExactGroups,
    by_budget,
    cross_pairs,
    gather_rows,
    hamming_band_keys,
    lsh_bands,
    minhash_band_keys,
    spans,
    unique_pair_positions,
)

KINDS = ("exact_image", "near_image", "near_item", "same_question_text")
CONTAMINATION = KINDS[:3]  # what audit.drop_train_contaminated drops (curation/selection.py)
BINS = np.linspace(0.0, 1.0, 21)  # histograms of similarities: 20 bins of 0.05
BUDGET = 1 << 16  # pairs a costly check (signatures, thumbnails) takes at a time


@dataclass
class TrainIndex:
    """Everything the audit keeps about train: fixed-size records and indexes over unique contents."""

    config: AuditParams
    first_row: int  # the index holds train rows first_row .. first_row + rows - 1 (one block)
    rows: int
    name_codes: np.ndarray  # int32 per row into names
    names: list
    dataset_index: np.ndarray
    answer_keys: np.ndarray  # uint64 per row
    images: ExactGroups
    image_hash_of_group: np.ndarray  # uint64 per unique image content
    image_layout_of_group: np.ndarray  # uint64 per unique image content
    image_thumbs: np.ndarray  # (unique images, THUMB_BYTES) uint8
    image_index: BandIndex  # perceptual hashes of the hashable unique contents
    layout_index: BandIndex  # their layout hashes
    image_index_groups: np.ndarray  # index position -> image group
    items: ExactGroups  # question + options
    item_signatures: np.ndarray  # per unique item key
    item_template: np.ndarray  # bool per unique item: its question is a template
    item_index: BandIndex  # question signatures of the items that are no template
    item_index_groups: np.ndarray  # index position -> item group
    item_bands: tuple[int, int]
    templates: np.ndarray  # sorted uint64 question keys of the templates (of both splits)
    pictures: ExactGroups  # rows by (image group, item group, answer): what near_item compares
    picture_offsets: np.ndarray  # pictures of image group g: picture_offsets[g] .. picture_offsets[g+1]-1
    picture_item: np.ndarray  # item group per picture
    picture_answer: np.ndarray  # answer key per picture
    # against test: per row of the block, the best structure score of any near-image candidate the
    # confirmation checked (-1: none) and whether one was confirmed (a row belongs to one block: the same
    # whatever the blocks)
    candidate_structure: np.ndarray = field(default=None)
    candidate_confirmed: np.ndarray = field(default=None)

    def __post_init__(self):
        self.candidate_structure = np.full(self.rows, -1.0, dtype=np.float32)
        self.candidate_confirmed = np.zeros(self.rows, dtype=bool)

    @classmethod
    def build(cls, parts: list[Columns], config: AuditParams, templates: np.ndarray) -> "TrainIndex":
        cat = lambda attr: np.concatenate([getattr(p, attr) for p in parts]) if parts else np.empty(0)  # noqa: E731
        rows = cat("rows").astype(np.int64)
        first_row = int(rows[0]) if len(rows) else 0
        encoded = pa.chunked_array([p.names for p in parts], pa.string()).combine_chunks().dictionary_encode()
        uniq = [*encoded.dictionary.to_pylist(), None]  # code -1 (a null name) is the last
        name_codes = encoded.indices.fill_null(-1).to_numpy().astype(np.int32)
        image_rows, image_keys = cat("image_rows").astype(np.int64), cat("image_keys").astype("V16")
        image_hashed = cat("image_hashed").astype(bool)
        images = ExactGroups(image_keys, image_rows)
        g = images.lookup(image_keys)
        hashed_groups = np.unique(g[image_hashed])  # same bytes, same fingerprints
        at = np.zeros(len(images), dtype=np.int64)
        at[g[image_hashed]] = np.flatnonzero(image_hashed)
        per_group = lambda attr, dtype: cat(attr).astype(dtype)[at] if len(images) else np.zeros(0, dtype)  # noqa: E731
        group_hash, group_layout = per_group("image_hashes", np.uint64), per_group("image_layouts", np.uint64)
        thumbs = gather_rows([p.image_thumbs for p in parts], at)

        item_keys = cat("item_keys").astype("V16")
        signatures = np.concatenate([p.signatures for p in parts]) if parts else np.zeros((0, 2, config.num_perm), np.uint32)
        items = ExactGroups(item_keys, rows)
        first = items.first_row(np.arange(len(items))) - first_row  # rows are consecutive, in order
        item_template = np.isin(cat("question_keys").astype(np.uint64)[first], templates)
        text_groups = np.flatnonzero(~item_template)
        bands = lsh_bands(config.near_item_threshold, config.num_perm)

        # near_item compares each (image, question, answer) once, however many rows repeat it
        item_of_row = items.lookup(item_keys)
        answer_keys = cat("answer_keys").astype(np.uint64)
        local = image_rows - first_row
        picture = np.zeros(len(g), dtype=[("image", ">i4"), ("item", ">i4"), ("answer", ">u8")])
        picture["image"], picture["item"], picture["answer"] = g, item_of_row[local], answer_keys[local]
        pictures = ExactGroups(picture.view("V16"), image_rows)  # sorted by image group first
        decoded = pictures.keys.view(picture.dtype)
        return cls(
            config, first_row, len(rows), name_codes, uniq, cat("dataset_index").astype(np.int64), answer_keys,
            images, group_hash, group_layout, thumbs,
            BandIndex(hamming_band_keys(group_hash[hashed_groups], config.near_image_max_distance)),
            BandIndex(hamming_band_keys(group_layout[hashed_groups], config.near_image_layout_distance)),
            hashed_groups, items, signatures[first], item_template,
            BandIndex(minhash_band_keys(signatures[first][text_groups, 0], *bands)), text_groups, bands, templates,
            pictures, np.searchsorted(decoded["image"].astype(np.int64), np.arange(len(images) + 1)),
            decoded["item"].astype(np.int64), decoded["answer"].astype(np.uint64))

    def ids(self, rows: np.ndarray) -> pa.Table:
        """IDS_SCHEMA rows (row, dataset_name, dataset_index) of train rows of this block."""
        local = np.asarray(rows, dtype=np.int64) - self.first_row
        codes = self.name_codes[local]
        di = self.dataset_index[local]
        return pa.table({"row": local + self.first_row,
                         "dataset_name": pa.array(self.names[:-1], pa.string()).take(pa.array(codes, mask=codes < 0)),
                         "dataset_index": pa.array(di, mask=di == NULL_INDEX)}, schema=IDS_SCHEMA)

    # Candidates, one generator per kind: query contents against the block's unique contents, checked
    # and deduplicated, as (query positions, train groups, similarity) per chunk. The matchers below only
    # say what they keep of them. `keep(query positions, train groups)`, when given, drops candidates
    # before the check (match_within's pruning).

    def near_image_pairs(self, q_hashes, q_layouts, q_keys, q_thumbs, thumb_at=None, keep=None, record=False):
        """Query images against the block's hashed images: candidates of other bytes within the distance
        of either hash (the layout hash's own only where the perceptual one is not), confirmed by their
        thumbnails (query i's: q_thumbs[thumb_at[i]], default i); similarity: the structure score.
        record: keep each row's best candidate (against test)."""
        thumb_at = np.arange(len(q_hashes)) if thumb_at is None else thumb_at
        c = self.config
        searches = ((self.image_index, q_hashes, self.image_hash_of_group, c.near_image_max_distance),
                    (self.layout_index, q_layouts, self.image_layout_of_group, c.near_image_layout_distance))
        for n, (index, query, own, limit) in enumerate(searches):
            for qi, ti in index.candidates(hamming_band_keys(query, limit)):
                groups = self.image_index_groups[ti]
                if keep is not None:
                    ok = keep(qi, groups)
                    qi, groups = qi[ok], groups[ok]
                ok = (hamming(query[qi], own[groups]) <= limit) & (self.images.keys[groups] != q_keys[qi])
                if n:  # pairs the perceptual hash proposed were checked in the first search
                    ok &= hamming(q_hashes[qi], self.image_hash_of_group[groups]) > c.near_image_max_distance
                ok = np.flatnonzero(ok)
                ok = ok[unique_pair_positions(qi[ok], groups[ok])]  # the cheap checks first, then dedupe
                for part in np.array_split(ok, max(1, len(ok) // BUDGET + 1)):
                    confirmed, structure = compare(q_thumbs, thumb_at[qi[part]], self.image_thumbs, groups[part], c)
                    if record:
                        rows, structure_, confirmed_ = self.images.expand(groups[part], structure, confirmed)
                        np.maximum.at(self.candidate_structure, rows - self.first_row, structure_)
                        self.candidate_confirmed[rows[confirmed_] - self.first_row] = True
                    yield qi[part][confirmed], groups[part][confirmed], structure[confirmed]

    def text_pairs(self, q_keys, q_sigs, q_template, keep=None):
        """Query items against the block's items that are no template: equal keys, then LSH candidates of
        other keys whose questions (and options where both have some) are near; similarity: the lower
        estimated Jaccard (1 for equal keys)."""
        g = self.items.lookup(q_keys)
        hit = np.flatnonzero((g >= 0) & ~q_template)
        hit = hit[~self.item_template[g[hit]]]
        if keep is not None:
            hit = hit[keep(hit, g[hit])]
        yield hit, g[hit], np.ones(len(hit))
        keys = minhash_band_keys(q_sigs[:, 0], *self.item_bands)
        for qi, ti in self.item_index.candidates(keys, budget=BUDGET):
            groups = self.item_index_groups[ti]
            ok = ~q_template[qi] if keep is None else ~q_template[qi] & keep(qi, groups)
            qi, groups = qi[ok], groups[ok]
            first = unique_pair_positions(qi, groups)  # before the costly check: num_perm comparisons a pair
            qi, groups = qi[first], groups[first]
            sim = item_similarity(q_sigs[qi], self.item_signatures[groups])
            ok = (sim >= self.config.near_item_threshold) & (self.items.keys[groups] != q_keys[qi])
            yield qi[ok], groups[ok], sim[ok]

    def picture_pairs(self, q_pos, image_groups, q_sigs, q_answers):
        """Query rows (positions, each with an image group of this block it shows, the same or near)
        against the block's pictures of those images: (query positions, pictures, similarity) where the
        texts agree (near questions, options where both have some, answers where both have one)."""
        offsets = self.picture_offsets
        counts = offsets[image_groups + 1] - offsets[image_groups]
        for part in by_budget(counts, BUDGET):
            pos = np.repeat(q_pos[part], counts[part])
            pics = spans(offsets[image_groups[part]], counts[part])
            ok, sim = self.agree(q_sigs[pos], q_answers[pos], pics)
            yield pos[ok], pics[ok], sim[ok]

    def agree(self, sigs, answers, pics) -> tuple[np.ndarray, np.ndarray]:
        """Whether texts (signatures, answer keys) agree with pictures' (see picture_pairs), and how near."""
        sim = item_similarity(sigs, self.item_signatures[self.picture_item[pics]])
        other = self.picture_answer[pics]
        return (sim >= self.config.near_item_threshold) & ((answers == other) | (answers == 0) | (other == 0)), sim

    def is_template(self, question_keys: np.ndarray) -> np.ndarray:
        return np.isin(question_keys, self.templates)

    def links(self, q: Columns, record: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Query images and the block's image groups they show: (exact: query images, groups; near:
        query images, groups, structure), query images as positions in q's image arrays."""
        g = self.images.lookup(q.image_keys)
        exact = np.flatnonzero(g >= 0)
        sel = np.flatnonzero(q.image_hashed)
        near = concat3([(sel[qi], groups, sim) for qi, groups, sim in self.near_image_pairs(
            q.image_hashes[sel], q.image_layouts[sel], q.image_keys[sel], q.image_thumbs[sel], record=record)])
        return exact, g[exact], *near

    def _linked_rows(self, q: Columns, exact, exact_groups, near, near_groups):
        """(query row positions, image groups) of the links, for picture_pairs."""
        images = np.concatenate([exact, near]).astype(np.int64)
        return np.searchsorted(q.rows, q.image_rows[images]), np.concatenate([exact_groups, near_groups]).astype(np.int64)

    def match(self, q: Columns) -> dict[str, tuple]:
        """Query rows (test) against train: every (train row, query row, similarity) per kind."""
        exact, exact_groups, near, near_groups, structure = self.links(q, record=True)
        pos, groups = self._linked_rows(q, exact, exact_groups, near, near_groups)
        return {
            "exact_image": self.images.expand(exact_groups, q.image_rows[exact], np.ones(len(exact))),
            "near_image": self.images.expand(near_groups, q.image_rows[near], structure),
            "near_item": concat3([self.pictures.expand(pics, q.rows[p], sim)
                                  for p, pics, sim in self.picture_pairs(pos, groups, q.signatures, q.answer_keys)]),
            "same_question_text": concat3([self.items.expand(g, q.rows[p], sim) for p, g, sim in self.text_pairs(
                q.item_keys, q.signatures, self.is_template(q.question_keys))]),
        }

    def earliest(self, q: Columns) -> dict[str, tuple]:
        """Later train rows (q, a later block) against this block: per query image (image kinds) or row
        (item kinds), the earliest row of this block it matches, the most similar on ties, as (query rows,
        earlier rows, similarity). What match_within finds inside a block, across blocks: O(queries)
        however many rows of this block share an image."""
        exact, exact_groups, near, near_groups, structure = self.links(q)
        pos, groups = self._linked_rows(q, exact, exact_groups, near, near_groups)
        near_image = _earliest(len(q.image_rows), [(near, self.images.first_row(near_groups), structure)])
        near_item = _earliest(len(q.rows), ((p, self.pictures.first_row(pics), sim)
                                            for p, pics, sim in self.picture_pairs(pos, groups, q.signatures, q.answer_keys)))
        text = _earliest(len(q.rows), ((p, self.items.first_row(g), sim) for p, g, sim in self.text_pairs(
            q.item_keys, q.signatures, self.is_template(q.question_keys))))
        return {"exact_image": (q.image_rows[exact], self.images.first_row(exact_groups), np.ones(len(exact))),
                "near_image": (q.image_rows[near_image[0]], *near_image[1:]),
                "near_item": (q.rows[near_item[0]], *near_item[1:]),
                "same_question_text": (q.rows[text[0]], *text[1:])}

    def match_within(self) -> dict[str, tuple]:
        """Train against itself, per unique content (each is queried once): for each row, (row, an
        earlier row it matches, similarity); only a group's first row stands for it as the earlier row,
        so a group of k copies gives k-1 pairs, not k*k."""
        text = self.item_index_groups
        near_image, near_item = self._images_within()
        return {
            "exact_image": later_rows_of_groups(self.images),
            "near_image": near_image,
            "near_item": near_item,
            "same_question_text": concat3([
                later_rows_of_groups(self.items, text),
                _near_within(self.items, text, lambda keep: self.text_pairs(
                    self.items.keys[text], self.item_signatures[text], np.zeros(len(text), bool), keep)),
            ]),
        }

    def _images_within(self) -> tuple[tuple, tuple]:
        """near_image and near_item within the block, from one pass over the near images: for each image
        group and each picture, its earliest match (the most similar on ties), kept as the candidates
        stream by, so the work after the check is O(rows) however dense a cluster of copies is."""
        images, offsets, hashed = self.images, self.picture_offsets, self.image_index_groups
        image_best, picture_best = _Earliest(len(images)), _Earliest(len(self.pictures))
        every = np.arange(len(images))
        for a, b in cross_pairs(offsets, every, every, BUDGET, distinct=True):
            self._offer_pictures(picture_best, a, b)  # the other pictures of the same image
        last_row = images.rows[images.offsets[1:] - 1]

        def keep(qi, gt):
            # only a row earlier than one of gq's rows, and not later than the best so far of gq or of
            # one of its pictures, can matter
            gq, earlier = hashed[qi], images.first_row(gt)
            worst = np.maximum.reduceat(picture_best.row, offsets[:-1])
            return (gq != gt) & (earlier < last_row[gq]) & ((earlier <= image_best.row[gq]) | (earlier < worst[gq]))

        for qi, gt, sim in self.near_image_pairs(self.image_hash_of_group[hashed], self.image_layout_of_group[hashed],
                                                  images.keys[hashed], self.image_thumbs, hashed, keep):
            image_best.offer(hashed[qi], images.first_row(gt), sim)
            for a, b in cross_pairs(offsets, hashed[qi], gt, BUDGET):
                self._offer_pictures(picture_best, a, b)
        near_item = concat3([_later_than(self.pictures, picture_best), later_rows_of_groups(self.pictures)])
        return _later_than(images, image_best), near_item

    def _offer_pictures(self, best: "_Earliest", a: np.ndarray, b: np.ndarray) -> None:
        ok, sim = self.agree(self.item_signatures[self.picture_item[a]], self.picture_answer[a], b)
        best.offer(a[ok], self.pictures.first_row(b[ok]), sim[ok])


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
    return _later_than(groups, best)


def _later_than(groups: ExactGroups, best: "_Earliest") -> tuple:
    """Each row of each group later than the group's earliest match, with that match."""
    rows, earlier, sim = groups.expand(*best.result())
    later = earlier < rows
    return rows[later], earlier[later], sim[later]


def _earliest(n: int, offers) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query, row, similarity) offers -> per query its earliest row, the most similar on ties."""
    best = _Earliest(n)
    for query, row, sim in offers:
        best.offer(query, row, sim)
    return best.result()


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


def later_rows_of_groups(groups: ExactGroups, which: np.ndarray | None = None):
    """Each row of a group (of `which`, default all) but the first, with the group's first row (exact
    copies: similarity 1)."""
    which = np.arange(len(groups)) if which is None else np.asarray(which, dtype=np.int64)
    rows, first = groups.expand(which, groups.first_row(which))
    later = rows > first
    return rows[later], first[later], np.ones(int(later.sum()))


def concat3(parts):
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def row_pairs(matches: dict[str, tuple], within: bool) -> dict[str, np.ndarray]:
    """Matches per kind -> one entry per (train row, other row, kind) with the best similarity. Within
    train, only pairs with an earlier row count, and each row keeps one pair per kind: its earliest
    earlier match of that kind (so a row can name one earlier row for two kinds: what holds for any split
    into blocks). Against test, the pairs are unshadowed (within train, once the blocks are merged)."""
    out = {"train": [], "other": [], "kind": [], "sim": []}
    for k, kind in enumerate(KINDS):
        train, other, sim = (np.asarray(a) for a in matches[kind])
        order = np.lexsort((-sim, other, train))
        train, other, sim = train[order], other[order], sim[order]
        pair = train.astype(np.int64) << 32 | other.astype(np.int64)
        first = np.ones(len(pair), dtype=bool)
        first[1:] = pair[1:] != pair[:-1]  # best similarity of each pair
        if within:  # earliest earlier row per train row
            first[1:] &= train[1:] != train[:-1]
        out["train"].append(train[first])
        out["other"].append(other[first])
        out["kind"].append(np.full(int(first.sum()), k, dtype=np.int8))
        out["sim"].append(sim[first])
    p = {key: np.concatenate(v) for key, v in out.items()}
    return p if within else unshadowed(p)


def unshadowed(p: dict) -> dict:
    """A row pair is listed under its most specific kind only: not as near_image when it shares an exact
    image, not as same_question_text when it is a near_item."""
    pair = p["train"].astype(np.int64) << 32 | p["other"].astype(np.int64)
    drop = np.zeros(len(pair), dtype=bool)
    for kind, by in (("near_image", "exact_image"), ("same_question_text", "near_item")):
        here = p["kind"] == KINDS.index(kind)
        drop |= here & np.isin(pair, pair[p["kind"] == KINDS.index(by)])
    return {k: v[~drop] for k, v in p.items()}
