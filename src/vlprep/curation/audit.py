"""Contamination audit: which train rows repeat a test row (or an earlier train row).

Three kinds of match, each decided on small fixed-size records, never on stored images or texts:

- `exact_image`: the same encoded image bytes (SHA-256 of the bytes, first 128 bits);
- `near_image`: different bytes, perceptual hashes (imagehash pHash/dHash, 64 bits, of a cheaply
  decoded grayscale thumbnail) within `near_image_max_distance` bits: re-encoded, resized or
  recompressed copies;
- `near_item`: the question together with its options, normalised (case, Unicode form, punctuation,
  whitespace; option order ignored) and equal, or with an estimated Jaccard similarity of word
  shingles (datasketch MinHash) of at least `near_item_threshold`. A template question ("What modality
  is this?") with other options is a different item.

Each row becomes one record (item key + MinHash signatures, and per image its content key + perceptual
hash), written to a file; train is indexed a block of `index_rows` rows at a time (AuditRun), so memory
is bounded by the block, not the data. In the index, `BandIndex` keeps per item and band one sorted
uint64 key and one int32 position, and a query compares only the items sharing a band key with it,
never all pairs. Test records stream against each block and are not kept.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import unicodedata
import warnings
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from vlprep.engine.executor import run_units
from vlprep.core.metrics import StageStats
from vlprep.core.params import AuditParams
from vlprep.io.sources import Unit, read_unit
from vlprep.core.writers import FixedRowGroups, work_path

KINDS = ("exact_image", "near_image", "near_item")
HASH_BITS = 64  # imagehash with hash_size=8: an 8x8 bit matrix, stored as one uint64
THUMBNAIL = 64  # decode images to about this size (smaller side) before hashing
COLUMNS = ["images", "question", "options", "dataset_name", "dataset_index"]
RECORD_ROWS = 2048  # rows per row group of the records file (at most index_rows): what blocks and streamed matching take


# The audit's settings: params.yaml `audit`, validated there.
AuditConfig = AuditParams


# ---------------------------------------------------------------- images

class ImageUnhashable(Exception):
    """The bytes do not decode to pixels (the exact content key still applies)."""


def content_key(data: bytes) -> bytes:
    """Exact identity of encoded image bytes: SHA-256, first 128 bits (SHA-256 runs on the CPU's SHA
    instructions where present: ~2x blake2b or md5 here, and this is the audit's cost per image byte)."""
    return hashlib.sha256(data).digest()[:16]


def thumbnail(data: bytes, size: int = THUMBNAIL) -> Image.Image:
    """A grayscale image whose smaller side is about `size` (never below it unless the image is smaller),
    decoded cheaply: JPEG's DCT scaling via draft(), otherwise a box reduce() after decoding."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # decompression-bomb warnings: hf_bytes already bounded sizes
        try:
            im = Image.open(io.BytesIO(data))
            if im.format == "JPEG":
                im.draft("L", (size, size))
            im.load()
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                # 16-bit / float scans: convert("L") would clip everything above 255 to white
                a = np.asarray(im, dtype=np.float64)
                lo, hi = float(a.min()), float(a.max())
                a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
                im = Image.fromarray(a.astype(np.uint8), "L")
            elif im.mode != "L":
                im = im.convert("L")
            factor = min(im.size) // size
            if factor > 1:
                im = im.reduce(factor)
            return im
        except Exception as e:  # Pillow raises many types for undecodable bytes
            raise ImageUnhashable(f"{type(e).__name__}: {e}") from None


def perceptual_hash(data: bytes, method: str = "phash") -> int:
    """64-bit perceptual hash (imagehash, hash_size=8) of the image's thumbnail, as an int."""
    import imagehash

    im = thumbnail(data)
    try:
        h = (imagehash.phash if method == "phash" else imagehash.dhash)(im, hash_size=8)
    except Exception as e:
        raise ImageUnhashable(f"{type(e).__name__}: {e}") from None
    return int.from_bytes(np.packbits(np.asarray(h.hash, dtype=bool).ravel()).tobytes(), "big")


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


# ---------------------------------------------------------------- items

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize_text(text: str | None) -> str:
    """Case, Unicode form, punctuation and whitespace removed: 'What is  this?' == 'what is this'."""
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text or "").casefold()).strip()


def item_parts(question: str | None, options: str | None) -> tuple[str, list[str]]:
    """Normalised question and the normalised option texts, sorted (labels and order ignored)."""
    try:
        parsed = json.loads(options) if options else {}
    except (TypeError, ValueError):
        parsed = {"": options}
    values = parsed.values() if isinstance(parsed, dict) else parsed if isinstance(parsed, list) else [parsed]
    return normalize_text(question), sorted(normalize_text(str(v)) for v in values if v is not None)


def item_key(question: str | None, options: str | None) -> bytes:
    """Exact identity of an item after normalisation: 128-bit blake2b."""
    q, opts = item_parts(question, options)
    return hashlib.blake2b("\x1f".join([q, *opts]).encode(), digest_size=16).digest()


def item_shingles(question: str | None, options: str | None, k: int) -> tuple[set[bytes], set[bytes]]:
    """Word k-grams of the question, and of the options (within each option, so none spans two);
    a text shorter than k words is one shingle. Question and options are compared separately: an item
    is near another only if both are, so a template question with other options is not."""
    q, opts = item_parts(question, options)
    sets: tuple[set[bytes], set[bytes]] = (set(), set())
    for out, prefix, text in [(sets[0], "q", q), *((sets[1], "o", o) for o in opts)]:
        words = text.split()
        if words:
            grams = [words[i : i + k] for i in range(max(1, len(words) - k + 1))]
            out.update(f"{prefix} {' '.join(g)}".encode() for g in grams)
    return sets


class MinHasher:
    """datasketch MinHash with one shared permutation scheme; signatures as uint32 arrays."""

    def __init__(self, num_perm: int, seed: int = 1):
        from datasketch import MinHash

        self._cls = MinHash
        self.num_perm = num_perm
        self.seed = seed
        self.permutations = MinHash(num_perm=num_perm, seed=seed).permutations

    def signature(self, shingles: set[bytes]) -> np.ndarray:
        m = self._cls(num_perm=self.num_perm, seed=self.seed, permutations=self.permutations, scheme="affine32")
        m.update_batch(sorted(shingles))
        return np.asarray(m.hashvalues, dtype=np.uint32)


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


def item_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard of the questions and of the options, (n, 2, num_perm) each: the lower of the two."""
    return (a == b).mean(axis=2).min(axis=1)


# ---------------------------------------------------------------- index

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
                qi = np.repeat(np.arange(start, stop), counts)
                pos = np.repeat(lo[b, start:stop], counts) + (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
                qs.append(qi)
                ts.append(self.order[b][pos])
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
        counts = self.offsets[groups + 1] - self.offsets[groups]
        total = int(counts.sum())
        pos = np.repeat(self.offsets[groups], counts) + (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
        return (self.rows[pos], *(np.repeat(v, counts) for v in values))


# ---------------------------------------------------------------- per unit

RECORD_SCHEMA = pa.schema([
    ("row", pa.int64()),
    ("dataset_name", pa.string()),
    ("dataset_index", pa.int64()),
    ("item_key", pa.binary(16)),
    ("question_signature", pa.binary()),  # MinHash: num_perm uint32, little-endian
    ("options_signature", pa.binary()),
    ("image_keys", pa.list_(pa.binary(16))),
    ("image_hashes", pa.list_(pa.uint64())),
    ("image_hashed", pa.list_(pa.bool_())),  # False: undecodable, only the exact key applies
])


def hash_unit(unit: Unit, config: AuditConfig) -> tuple[pa.Table, StageStats]:
    """One hf_bytes unit -> one small record per row (what the index keeps), and counts."""
    table = read_unit(unit, COLUMNS)
    hasher = _hasher(config.num_perm, config.seed)
    recent = _recent_hashes(config.hash_cache_images)
    stats = StageStats()
    cols = {name: [] for name in RECORD_SCHEMA.names}
    images = table.column("images").to_pylist()
    questions = table.column("question").to_pylist()
    options = table.column("options").to_pylist()
    for i in range(table.num_rows):
        keys, hashes, hashed = [], [], []
        for image in images[i] or []:
            data = image.get("bytes") if image else None
            stats.counts["images"] += 1
            if not data:
                stats.counts["images_unhashable"] += 1
                continue
            key = content_key(data)
            keys.append(key)
            h = recent.get((key, config.image_hash))
            if h is None:
                try:
                    h = perceptual_hash(data, config.image_hash)
                except ImageUnhashable:
                    h = -1
                recent.put((key, config.image_hash), h)
            if h < 0:
                stats.counts["images_unhashable"] += 1
            hashes.append(max(h, 0))
            hashed.append(h >= 0)
        cols["row"].append(unit.first_row + i)
        cols["item_key"].append(item_key(questions[i], options[i]))
        for name, shingles in zip(("question_signature", "options_signature"),
                                  item_shingles(questions[i], options[i], config.shingle)):
            cols[name].append(hasher.signature(shingles).astype("<u4").tobytes())
        cols["image_keys"].append(keys)
        cols["image_hashes"].append(hashes)
        cols["image_hashed"].append(hashed)
    cols["dataset_name"] = table.column("dataset_name").combine_chunks()
    cols["dataset_index"] = table.column("dataset_index").combine_chunks()
    stats.rows_in = stats.rows_out = table.num_rows
    return pa.table(cols, schema=RECORD_SCHEMA), stats


class _Recent:
    """The last `size` results by key (a bounded LRU): medical VQA sets ask many questions about one
    image (VQA-RAD, SLAKE, PathVQA: ~5-20 per image), and decoding is the audit's main cost."""

    def __init__(self, size: int):
        self.size, self.items = size, OrderedDict()

    def get(self, key):
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        self.items[key] = value
        if len(self.items) > self.size:
            self.items.popitem(last=False)


_RECENT: dict = {}
_HASHERS: dict = {}


def _recent_hashes(size: int) -> _Recent:
    """This process's perceptual hashes of the last `size` distinct images (~100 bytes an entry)."""
    if size not in _RECENT:
        _RECENT[size] = _Recent(size)
    return _RECENT[size]


def _hasher(num_perm: int, seed: int) -> MinHasher:
    if (num_perm, seed) not in _HASHERS:
        _HASHERS[(num_perm, seed)] = MinHasher(num_perm, seed)
    return _HASHERS[(num_perm, seed)]


NULL_INDEX = np.iinfo(np.int64).min  # a null dataset_index, in int64 arrays


IDS_SCHEMA = pa.schema([("row", pa.int64()), ("dataset_name", pa.string()), ("dataset_index", pa.int64())])


@dataclass
class Columns:
    """Numpy views of a records table: per-row and per-image arrays."""

    rows: np.ndarray
    names: pa.Array  # Arrow strings: compact, not one Python object a row
    dataset_index: np.ndarray
    item_keys: np.ndarray  # V16
    signatures: np.ndarray  # (rows, 2, num_perm) uint32: question, options
    image_rows: np.ndarray
    image_keys: np.ndarray  # V16
    image_hashes: np.ndarray  # uint64
    image_hashed: np.ndarray  # bool

    @classmethod
    def of(cls, t: pa.Table, num_perm: int) -> "Columns":
        rows = t.column("row").to_numpy()
        lengths = pa.compute.list_value_length(t.column("image_keys")).to_numpy(zero_copy_only=False)
        flat = lambda name: pa.compute.list_flatten(t.column(name))  # noqa: E731
        return cls(
            rows=rows,
            names=t.column("dataset_name").combine_chunks(),
            dataset_index=t.column("dataset_index").fill_null(NULL_INDEX).to_numpy(),
            item_keys=_v16(t.column("item_key")),
            signatures=np.stack([_signatures(t.column(c), num_perm) for c in ("question_signature", "options_signature")],
                                axis=1),
            image_rows=np.repeat(rows, lengths),
            image_keys=_v16(flat("image_keys")),
            image_hashes=flat("image_hashes").to_numpy(zero_copy_only=False).astype(np.uint64),
            image_hashed=flat("image_hashed").to_numpy(zero_copy_only=False).astype(bool),
        )


def _signatures(column, num_perm: int) -> np.ndarray:
    return np.frombuffer(b"".join(column.to_pylist()), dtype="<u4").reshape(len(column), num_perm).astype(np.uint32)


def _v16(column) -> np.ndarray:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return np.frombuffer(b"".join(column.to_pylist()) if len(column) else b"", dtype="V16")


# ---------------------------------------------------------------- train index and matching

@dataclass
class TrainIndex:
    """Everything the audit keeps about train: fixed-size records and indexes over unique contents."""

    config: AuditConfig
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
    def build(cls, parts: list[Columns], config: AuditConfig) -> "TrainIndex":
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

    # Each matcher returns (train rows, query rows, similarity) for one kind.

    def exact_images(self, q_rows, q_keys):
        g = self.images.lookup(q_keys)
        hit = g >= 0
        train_rows, query_rows = self.images.expand(g[hit], q_rows[hit])
        return train_rows, query_rows, np.ones(len(train_rows))

    def near_images(self, q_rows, q_keys, q_hashes, q_hashed):
        sel = np.flatnonzero(q_hashed)
        qk = hamming_band_keys(q_hashes[sel], self.config.near_image_max_distance)
        out = []
        for qi, ti in self.image_index.candidates(qk):
            groups = self.image_index_groups[ti]
            dist = hamming(q_hashes[sel][qi], self.image_hash_of_group[groups])
            ok = (dist <= self.config.near_image_max_distance) & (self.images.keys[groups] != q_keys[sel][qi])
            qi, ti = _unique_pairs(qi[ok], ti[ok])  # the cheap check first, then dedupe the few left
            groups = self.image_index_groups[ti]
            dist = hamming(q_hashes[sel][qi], self.image_hash_of_group[groups])
            ok = np.ones(len(qi), dtype=bool)
            out.append(self.images.expand(groups[ok], q_rows[sel][qi][ok], 1.0 - dist[ok] / HASH_BITS))
        return _concat3(out)

    def near_items(self, q_rows, q_keys, q_sigs):
        g = self.items.lookup(q_keys)
        hit = g >= 0
        out = [self.items.expand(g[hit], q_rows[hit], np.ones(int(hit.sum())))]
        qk = minhash_band_keys(q_sigs.min(axis=1), *self.item_bands)
        for qi, ti in self.item_index.candidates(qk, budget=1 << 16):
            qi, ti = _unique_pairs(qi, ti)  # before the costly check: num_perm comparisons a pair
            sim = item_similarity(q_sigs[qi], self.item_signatures[ti])
            ok = (sim >= self.config.near_item_threshold) & (self.items.keys[ti] != q_keys[qi])
            out.append(self.items.expand(ti[ok], q_rows[qi][ok], sim[ok]))
        return _concat3(out)

    def match(self, q: Columns) -> dict[str, tuple]:
        """Query rows (test) against train: every (train row, query row, similarity) per kind."""
        return {
            "exact_image": self.exact_images(q.image_rows, q.image_keys),
            "near_image": self.near_images(q.image_rows, q.image_keys, q.image_hashes, q.image_hashed),
            "near_item": self.near_items(q.rows, q.item_keys, q.signatures),
        }

    def earliest(self, q: Columns) -> dict[str, tuple]:
        """Later train rows (q, a later block) against this block: per query image (image kinds) or row
        (near_item), the earliest row of this block it matches, the most similar on ties, as
        (query rows, earlier rows, similarity). What match_within finds inside a block, across blocks:
        O(queries) however many rows of this block share an image."""
        g = self.images.lookup(q.image_keys)
        hit = np.flatnonzero(g >= 0)
        exact = (q.image_rows[hit], self.images.first_row(g[hit]), np.ones(len(hit)))

        sel = np.flatnonzero(q.image_hashed)
        best = _Earliest(len(sel))
        for qi, ti in self.image_index.candidates(hamming_band_keys(q.image_hashes[sel], self.config.near_image_max_distance)):
            groups = self.image_index_groups[ti]
            dist = hamming(q.image_hashes[sel][qi], self.image_hash_of_group[groups])
            ok = (dist <= self.config.near_image_max_distance) & (self.images.keys[groups] != q.image_keys[sel][qi])
            best.offer(qi[ok], self.images.first_row(groups[ok]), 1.0 - dist[ok] / HASH_BITS)
        found, earlier, sim = best.result()
        near_image = (q.image_rows[sel][found], earlier, sim)

        g = self.items.lookup(q.item_keys)
        best = _Earliest(len(q.rows))
        best.offer(np.flatnonzero(g >= 0), self.items.first_row(g[g >= 0]), np.ones(int((g >= 0).sum())))
        qk = minhash_band_keys(q.signatures.min(axis=1), *self.item_bands)
        for qi, ti in self.item_index.candidates(qk, budget=1 << 16):
            qi, ti = _unique_pairs(qi, ti)
            sim = item_similarity(q.signatures[qi], self.item_signatures[ti])
            ok = sim >= self.config.near_item_threshold
            best.offer(qi[ok], self.items.first_row(ti[ok]), sim[ok])
        found, earlier, sim = best.result()
        return {"exact_image": exact, "near_image": near_image, "near_item": (q.rows[found], earlier, sim)}

    def match_within(self) -> dict[str, tuple]:
        """Train against itself, per unique image / item (each group is queried once): for each row,
        (row, an earlier row it matches, similarity); only a group's first row stands for it as the
        earlier row, so a group of k copies gives k-1 pairs, not k*k."""
        return {
            "exact_image": _later_rows_of_groups(self.images),
            "near_image": self._near_within(
                self.images, self.image_index, self.image_index_groups,
                hamming_band_keys(self.image_hash_of_group[self.image_index_groups], self.config.near_image_max_distance),
                lambda g, h: 1.0 - hamming(self.image_hash_of_group[g], self.image_hash_of_group[h]) / HASH_BITS,
                1.0 - self.config.near_image_max_distance / HASH_BITS, budget=1 << 20),
            "near_item": _concat3([
                _later_rows_of_groups(self.items),
                self._near_within(
                    self.items, self.item_index, np.arange(len(self.items)),
                    minhash_band_keys(self.item_signatures.min(axis=1), *self.item_bands),
                    lambda g, h: item_similarity(self.item_signatures[g], self.item_signatures[h]),
                    self.config.near_item_threshold, budget=1 << 16, dedupe=True),
            ]),
        }

    @staticmethod
    def _near_within(groups: ExactGroups, index: BandIndex, index_groups, keys, similarity, min_sim, budget,
                     dedupe: bool = False):
        """For each group, the earliest row of another group near it (the most similar on ties): kept per
        group as the candidates stream by, so the work after the check and the output are O(rows) however
        many near pairs a dense cluster has. Then each of the group's rows later than that row."""
        best = _Earliest(len(groups))
        last_row = groups.rows[groups.offsets[1:] - 1]
        for qi, ti in index.candidates(keys, budget=budget):
            gq, gt = index_groups[qi], index_groups[ti]
            earlier = groups.first_row(gt)
            # only a row earlier than one of gq's rows, and not later than gq's best so far, can matter
            keep = (gq != gt) & (earlier < last_row[gq]) & (earlier <= best.row[gq])
            gq, gt, earlier = gq[keep], gt[keep], earlier[keep]
            if dedupe:  # a costly similarity: compute it once per pair, not once per shared band
                gq, gt = _unique_pairs(gq, gt)
                earlier = groups.first_row(gt)
            sim = similarity(gq, gt)
            ok = sim >= min_sim - 1e-12
            best.offer(gq[ok], earlier[ok], sim[ok])
        rows, earlier, sim = groups.expand(*best.result())
        keep = earlier < rows
        return rows[keep], earlier[keep], sim[keep]


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


def _unique_pairs(qi: np.ndarray, ti: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.unique(qi << 32 | ti)
    return pairs >> 32, pairs & 0xFFFFFFFF


def _later_rows_of_groups(groups: ExactGroups):
    """Each row of a group but the first, with the group's first row (exact copies: similarity 1)."""
    sizes = np.diff(groups.offsets)
    first = np.repeat(groups.rows[groups.offsets[:-1]], sizes)
    later = groups.rows > first
    return groups.rows[later], first[later], np.ones(int(later.sum()))


def _concat3(parts):
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


# ---------------------------------------------------------------- the whole audit

PAIRS_SCHEMA = pa.schema([
    ("train_dataset_name", pa.string()),
    ("train_dataset_index", pa.int64()),
    ("train_row", pa.int64()),
    ("test_dataset_name", pa.string()),  # for train_* kinds: the earlier train row
    ("test_dataset_index", pa.int64()),
    ("test_row", pa.int64()),
    ("kind", pa.string()),
    ("similarity", pa.float64()),
])
FLAGGED_SCHEMA = pa.schema([
    ("row", pa.int64()),
    ("dataset_name", pa.string()),
    ("dataset_index", pa.int64()),
    ("kinds", pa.list_(pa.string())),
])


@dataclass
class AuditResult:
    pairs: pa.Table
    flagged: pa.Table
    metrics: dict
    index: TrainIndex = field(repr=False, default=None)  # the last block's


def audit(train_units: list[Unit], test_units: list[Unit], config: AuditConfig, num_proc: int = 1) -> AuditResult:
    """The whole audit in memory (tests, small data): AuditRun's blocks concatenated."""
    run = AuditRun(config, num_proc)
    blocks = list(run.blocks(train_units, test_units))
    tables = [pa.concat_tables([b[i] for b in blocks]) if blocks else schema.empty_table()
              for i, schema in enumerate((PAIRS_SCHEMA, FLAGGED_SCHEMA))]
    return AuditResult(*tables, run.metrics, run.index)


class AuditRun:
    """The audit in bounded memory, whatever the number of rows.

    First every row of both splits is hashed once (in num_proc processes) into its small record, and the
    records go to a file in the work area, in row groups of RECORD_ROWS. Then train is taken in blocks of about
    `index_rows` rows, in row order; for each block only that block's index is in memory:
    - within train: the block against itself, then its rows against each earlier block's index (rebuilt
      from the records file), keeping per row and kind the earliest match;
    - train vs test: the test records stream against the block's index.
    Every pair names a train row of the block, so the block's pairs and flagged rows are final when it
    ends: `blocks()` yields them (in row order) and keeps nothing of them. Blocks cost time, not results:
    the outputs are the same for any index_rows."""

    def __init__(self, config: AuditConfig, num_proc: int = 1):
        self.config, self.num_proc = config, num_proc
        self.metrics: dict = {}
        self.index: TrainIndex | None = None

    def blocks(self, train_units: list[Unit], test_units: list[Unit]) -> Iterator[tuple[pa.Table, pa.Table]]:
        config = self.config
        spill = work_path("audit-records")
        spill.mkdir()
        try:
            train_file, test_file = spill / "train.parquet", spill / "test.parquet"
            train_stats, test_stats = self._hash(train_units, train_file), self._hash(test_units, test_file)
            blocks = _blocks(pq.ParquetFile(train_file).metadata, config.index_rows)
            test_matched = np.zeros(test_stats.rows_in, dtype=bool)  # one byte per test row
            totals = {"vs_test": Counter(), "within": Counter(), "flagged": 0, "pairs": 0, "pairs_found": 0}
            for j, block in enumerate(blocks):
                self.index = index = TrainIndex.build(list(_read_records(train_file, block, config)), config)
                within = self._within(index, train_file, block, blocks[:j])
                vs_test, found = self._vs_test(index, test_file, test_matched)
                test_ids = _identities(test_file, vs_test["other"])
                earlier_ids = _identities(train_file, within["other"][within["other"] < index.first_row])
                pairs = _pairs_table(index, vs_test, within, test_ids, earlier_ids)
                flagged = _flagged_table(index, vs_test, within)
                totals["vs_test"].update(_counts(vs_test))
                totals["within"].update(_counts(within))
                totals["flagged"] += flagged.num_rows
                totals["pairs"] += pairs.num_rows
                totals["pairs_found"] += found
                yield pairs, flagged
        finally:
            shutil.rmtree(spill, ignore_errors=True)
        keys = [*KINDS, "any", "pairs"]
        self.metrics = {
            # num_proc, index_rows, hash_cache_images never change the result; drop_train_contaminated is for select
            "params": config.model_dump(exclude={"num_proc", "index_rows", "hash_cache_images",
                                                "drop_train_contaminated"}),
            "lsh_bands": dict(zip(("bands", "rows"), lsh_bands(config.near_item_threshold, config.num_perm))),
            "rows": {"train": train_stats.rows_in, "test": test_stats.rows_in},
            "images": {"train": train_stats.counts["images"], "test": test_stats.counts["images"]},
            "images_unhashable": train_stats.counts["images_unhashable"] + test_stats.counts["images_unhashable"],
            "images_unhashable_by_split": {"train": train_stats.counts["images_unhashable"],
                                           "test": test_stats.counts["images_unhashable"]},
            "train_vs_test": {**{k: totals["vs_test"][k] for k in keys}, "pairs_found": totals["pairs_found"],
                              "test_rows_matched": int(test_matched.sum())},
            "within_train": {k: totals["within"][k] for k in keys},
            "total": {
                "train_rows_flagged": totals["flagged"],
                "train_rows_flagged_vs_test": totals["vs_test"]["any"],
                "train_rows_flagged_within_train": totals["within"]["any"],
                "pairs": totals["pairs"],
            },
        }

    def _hash(self, units: list[Unit], path: Path) -> StageStats:
        """Every row's record into one file, in row order whatever num_proc, in row groups of RECORD_ROWS
        (units are often ~100 rows: matching works on larger arrays, and reads fewer, larger groups)."""
        stats = StageStats()
        with pq.ParquetWriter(path, RECORD_SCHEMA, compression="none") as writer:
            out = FixedRowGroups(writer, min(RECORD_ROWS, self.config.index_rows))
            for table in run_units(partial(hash_unit, config=self.config), units, self.num_proc, stats):
                out.write(table)
            out.close()
        return stats

    def _within(self, index: TrainIndex, train_file: Path, block: list[int], earlier_blocks: list[list[int]]) -> dict:
        """Each row of the block with, per kind, its earliest earlier train row (row_pairs, within=True)."""
        within = row_pairs(index.match_within(), within=True)
        for earlier_block in earlier_blocks:
            earlier = TrainIndex.build(list(_read_records(train_file, earlier_block, self.config)), self.config)
            found = [row_pairs(earlier.earliest(q), within=True) for q in _read_records(train_file, block, self.config)]
            del earlier  # before the next one is built: two indexes in memory at most, this block's and one
            found = _concat_pairs(found)  # <= 3 a row of the block
            within = _earliest_pairs(found, within)
        return within

    def _vs_test(self, index: TrainIndex, test_file: Path, test_matched: np.ndarray) -> tuple[dict, int]:
        """Test streams by the block's index. Kept: at most max_pairs_per_row pairs per train row and kind,
        so memory stays bounded even when one image is in every row of both splits. New pairs are reduced
        into the kept ones in batches, once they outnumber them: each pair is sorted O(1) times, not once
        per test unit."""
        kept, pending, pairs_found = _empty_pairs(), [], 0
        for q in _read_records(test_file, None, self.config):
            found = row_pairs(index.match(q), within=False)
            pairs_found += len(found["train"])
            test_matched[found["other"]] = True
            pending.append(found)
            if sum(len(p["train"]) for p in pending) > max(1 << 18, len(kept["train"])):
                kept = _best_pairs(_concat_pairs([kept, *pending]), self.config.max_pairs_per_row)
                pending.clear()
        return _best_pairs(_concat_pairs([kept, *pending]), self.config.max_pairs_per_row), pairs_found


def _concat_pairs(parts: list[dict]) -> dict:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _identities(path: Path, rows: np.ndarray) -> pa.Table:
    """IDS_SCHEMA rows of a records file for some rows, sorted by row, read from its small columns only."""
    rows = np.unique(rows)
    f = pq.ParquetFile(path)
    found = []
    for g in range(f.metadata.num_row_groups):
        t = f.read_row_group(g, columns=IDS_SCHEMA.names)
        take = np.flatnonzero(np.isin(t.column("row").to_numpy(), rows))
        if len(take):
            found.append(t.take(take))
    return pa.concat_tables(found).cast(IDS_SCHEMA) if found else IDS_SCHEMA.empty_table()


def _lookup(ids: pa.Table, rows: np.ndarray) -> np.ndarray:
    """Positions of rows (all present) in an ids table sorted by row."""
    return np.searchsorted(ids.column("row").to_numpy(), rows)


def _blocks(metadata: pq.FileMetaData, index_rows: int) -> list[list[int]]:
    """Consecutive row groups of the train records, at least index_rows rows a block."""
    blocks, rows = [[]], 0
    for g in range(metadata.num_row_groups):
        if rows >= index_rows:
            blocks.append([])
            rows = 0
        blocks[-1].append(g)
        rows += metadata.row_group(g).num_rows
    return blocks if blocks[0] else []


def _read_records(path: Path, row_groups: list[int] | None, config: AuditConfig) -> Iterator[Columns]:
    """The records of some row groups (None: all) as Columns, one per unit, read as they are consumed."""
    f = pq.ParquetFile(path)
    groups = range(f.metadata.num_row_groups) if row_groups is None else row_groups
    return (Columns.of(f.read_row_group(g), config.num_perm) for g in groups)
def _earliest_pairs(a: dict, b: dict) -> dict:
    """Two row_pairs(within=True) results merged: per (train row, kind) the earliest other row, the most
    similar on ties."""
    p = _concat_pairs([a, b])
    order = np.lexsort((-p["sim"], p["other"], p["kind"], p["train"]))
    p = {k: v[order] for k, v in p.items()}
    key = p["train"].astype(np.int64) * 8 + p["kind"]
    first = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, dtype=bool)
    return {k: v[first] for k, v in p.items()}


def _counts(p: dict) -> dict:
    """Train rows affected per kind (a row counts once per kind), all kinds together, and pairs written."""
    out = {kind: len(np.unique(p["train"][p["kind"] == k])) for k, kind in enumerate(KINDS)}
    out["any"] = len(np.unique(p["train"]))
    out["pairs"] = len(p["train"])
    return out


def _empty_pairs() -> dict:
    return {"train": np.empty(0, np.int64), "other": np.empty(0, np.int64), "kind": np.empty(0, np.int8),
            "sim": np.empty(0, np.float64)}


def _best_pairs(p: dict, limit: int) -> dict:
    """At most `limit` pairs per (train row, kind): the most similar, then the lowest other row."""
    order = np.lexsort((p["other"], -p["sim"], p["kind"], p["train"]))
    p = {k: v[order] for k, v in p.items()}
    group = p["train"].astype(np.int64) * 8 + p["kind"]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if len(group) else np.empty(0, np.int64)
    rank = np.arange(len(group)) - np.repeat(starts, np.diff(np.r_[starts, len(group)]))
    return {k: v[rank < limit] for k, v in p.items()}


def _pairs_table(index: TrainIndex, vs_test: dict, within: dict, test_ids: pa.Table, earlier_ids: pa.Table) -> pa.Table:
    """One block's pairs, sorted by train row, other row, kind. The other row's identity comes from
    test_ids (test rows), earlier_ids (train rows of earlier blocks) or the block's index."""
    kinds = np.array([*KINDS, *(f"train_{k}" for k in KINDS)], dtype=object)
    train = np.concatenate([vs_test["train"], within["train"]]).astype(np.int64)
    other = np.concatenate([vs_test["other"], within["other"]]).astype(np.int64)
    kind = np.concatenate([vs_test["kind"], within["kind"] + len(KINDS)]).astype(np.int64)
    sim = np.concatenate([vs_test["sim"], within["sim"]]).astype(np.float64)
    is_test = np.arange(len(train)) < len(vs_test["train"])
    order = np.lexsort((kind, other, train))
    train, other, kind, sim, is_test = train[order], other[order], kind[order], sim[order], is_test[order]
    # one table of every identity needed: test rows, earlier train rows, this block's rows
    in_block = ~is_test & (other >= index.first_row)
    block_ids = index.ids(np.unique(other[in_block]))
    position = np.where(is_test, _lookup(test_ids, other), 0)
    earlier = ~is_test & ~in_block
    position[earlier] = test_ids.num_rows + _lookup(earlier_ids, other[earlier])
    position[in_block] = test_ids.num_rows + earlier_ids.num_rows + _lookup(block_ids, other[in_block])
    others = pa.concat_tables([test_ids, earlier_ids, block_ids]).take(position)
    trains = index.ids(train)
    return pa.table({
        "train_dataset_name": trains.column("dataset_name"),
        "train_dataset_index": trains.column("dataset_index"),
        "train_row": train,
        "test_dataset_name": others.column("dataset_name"),
        "test_dataset_index": others.column("dataset_index"),
        "test_row": other,
        "kind": kinds[kind].tolist(),
        "similarity": np.round(sim, 6),
    }, schema=PAIRS_SCHEMA)


def _flagged_table(index: TrainIndex, vs_test: dict, within: dict) -> pa.Table:
    """The block's train rows with any pair, and their kinds."""
    train = np.concatenate([vs_test["train"], within["train"]]).astype(np.int64) - index.first_row
    kind = np.concatenate([vs_test["kind"], within["kind"] + len(KINDS)]).astype(np.int64)
    names = [*KINDS, *(f"train_{k}" for k in KINDS)]
    flags = np.zeros((index.rows, len(names)), dtype=bool)
    flags[train, kind] = True
    local = np.flatnonzero(flags.any(axis=1))
    ids = index.ids(local + index.first_row)
    return pa.table({
        "row": ids.column("row"),
        "dataset_name": ids.column("dataset_name"),
        "dataset_index": ids.column("dataset_index"),
        "kinds": [[names[k] for k in np.flatnonzero(flags[r])] for r in local.tolist()],
    }, schema=FLAGGED_SCHEMA)
