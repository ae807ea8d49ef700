"""Per-unit hashing: each hf_bytes row becomes one small fixed-size record (item, question and answer
keys, MinHash signatures, and per image its content key, perceptual and layout hashes and detail
thumbnail), and records read back as numpy columns."""
from __future__ import annotations

import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vlprep.core.metrics import StageStats
from vlprep.core.sections import AuditParams
from vlprep.curation.audit.fingerprints import (
    THUMB_BYTES,
    ImageUnhashable,
    MinHasher,
    answer_key,
    content_key,
    image_fingerprint,
    item_key,
    item_shingles,
    question_key,
)
from vlprep.io.sources import Unit, read_unit

COLUMNS = ["images", "question", "options", "answer", "answer_label", "dataset_name", "dataset_index"]


RECORD_SCHEMA = pa.schema([
    ("row", pa.int64()),
    ("dataset_name", pa.string()),
    ("dataset_index", pa.int64()),
    ("item_key", pa.binary(16)),  # question + options, normalised
    ("question_key", pa.uint64()),  # the question alone: templates are counted by it
    ("answer_key", pa.uint64()),  # 0: no answer
    ("question_signature", pa.binary()),  # MinHash: num_perm uint32, little-endian
    ("options_signature", pa.binary()),
    ("image_keys", pa.list_(pa.binary(16))),
    ("image_hashes", pa.list_(pa.uint64())),  # perceptual hash
    ("image_layouts", pa.list_(pa.uint64())),  # layout hash
    ("image_thumbs", pa.list_(pa.binary(THUMB_BYTES))),  # detail thumbnail (confirm.py)
    ("image_hashed", pa.list_(pa.bool_())),  # False: undecodable, only the exact key applies
])
_UNHASHED = (0, 0, bytes(THUMB_BYTES))


def hash_unit(unit: Unit, config: AuditParams) -> tuple[pa.Table, StageStats]:
    """One hf_bytes unit -> one small record per row (what the index keeps), and counts."""
    table = read_unit(unit, COLUMNS)
    hasher = _hasher(config.num_perm, config.seed)
    recent = _recent_prints(config.hash_cache_images)
    stats = StageStats()
    cols = {name: [] for name in RECORD_SCHEMA.names}
    images = _image_buffers(table.column("images"))
    keys_of = [[content_key(data) if data else None for data in row] for row in images]
    found_of = _fingerprints(images, keys_of, recent, config.image_hash)
    questions, options = table.column("question").to_pylist(), table.column("options").to_pylist()
    answers, labels = table.column("answer").to_pylist(), table.column("answer_label").to_pylist()
    for i in range(table.num_rows):
        keys, prints, hashed = [], [], []
        for key in keys_of[i]:
            stats.counts["images"] += 1
            if key is None:
                stats.counts["images_unhashable"] += 1
                continue
            keys.append(key)
            found = found_of[key]
            if found is False:
                stats.counts["images_unhashable"] += 1
            prints.append(found or _UNHASHED)
            hashed.append(found is not False)
        cols["row"].append(unit.first_row + i)
        cols["item_key"].append(item_key(questions[i], options[i]))
        cols["question_key"].append(question_key(questions[i]))
        cols["answer_key"].append(answer_key(answers[i], labels[i], options[i]))
        for name, shingles in zip(("question_signature", "options_signature"),
                                  item_shingles(questions[i], options[i], config.shingle)):
            cols[name].append(hasher.signature(shingles).astype("<u4").tobytes())
        cols["image_keys"].append(keys)
        for name, values in zip(("image_hashes", "image_layouts", "image_thumbs"), zip(*prints) if prints else ((), (), ())):
            cols[name].append(list(values))
        cols["image_hashed"].append(hashed)
    cols["dataset_name"] = table.column("dataset_name").combine_chunks()
    cols["dataset_index"] = table.column("dataset_index").combine_chunks()
    stats.rows_in = stats.rows_out = table.num_rows
    return pa.table(cols, schema=RECORD_SCHEMA), stats


def _fingerprints(images: list[list], keys: list[list], recent: "_Recent", method: str) -> dict:
    """{content key: image_fingerprint or False (unhashable)} for every image of the unit: from the
    recent ones, else computed, the distinct new images in threads. Decoding is most of the audit's time
    and Pillow releases the GIL while it decodes and resizes, so the other cores share it; unlike more
    processes (num_proc), threads share one cache, where each process would decode the images its rows
    have in common with another's."""
    found, todo = {}, {}
    for row_images, row_keys in zip(images, keys):
        for data, key in zip(row_images, row_keys):
            if key is None or key in found or key in todo:
                continue
            cached = recent.get((key, method))
            if cached is None:
                todo[key] = data
            else:
                found[key] = cached
    for key, result in zip(todo, _pool().map(partial(_fingerprint_or_false, method=method), todo.values())):
        recent.put((key, method), result)
        found[key] = result
    return found


def _fingerprint_or_false(data, method: str):
    try:
        return image_fingerprint(data, method)
    except ImageUnhashable:
        return False


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool() -> ThreadPoolExecutor:
    """One thread per core this process may use, made by the process that uses it: a worker forked
    (engine/executor.py) after its parent used its pool inherits the pool without its threads, and work
    handed to it would wait forever."""
    pid = os.getpid()
    if pid not in _POOLS:
        _POOLS[pid] = ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0)), thread_name_prefix="vlprep-audit")
    return _POOLS[pid]


def _image_buffers(column: pa.ChunkedArray) -> list[list]:
    """Per row, its images' encoded bytes as Arrow buffers (None for a missing image): views of the
    unit's memory, never copied into Python bytes (hashing reads them in place)."""
    rows = []
    for images in column.chunks:  # chunk by chunk: combining them would copy every image
        lengths = pc.list_value_length(images).fill_null(0).to_numpy(zero_copy_only=False)
        data = pc.struct_field(pc.list_flatten(images), "bytes")
        valid = data.is_valid().to_numpy(zero_copy_only=False)
        buffers = [data[j].as_buffer() if valid[j] else None for j in range(len(data))]
        ends = np.cumsum(lengths)
        rows += [buffers[end - n:end] for n, end in zip(lengths, ends)]
    return rows


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


def _recent_prints(size: int) -> _Recent:
    """This process's fingerprints of the last `size` distinct images (~1.7 KB an entry: the thumbnail)."""
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
    question_keys: np.ndarray  # uint64
    answer_keys: np.ndarray  # uint64, 0: none
    signatures: np.ndarray  # (rows, 2, num_perm) uint32: question, options
    image_rows: np.ndarray
    image_keys: np.ndarray  # V16
    image_hashes: np.ndarray  # uint64
    image_layouts: np.ndarray  # uint64
    image_thumbs: np.ndarray  # (images, THUMB_BYTES) uint8
    image_hashed: np.ndarray  # bool

    @classmethod
    def of(cls, t: pa.Table, num_perm: int) -> "Columns":
        rows = t.column("row").to_numpy()
        lengths = pc.list_value_length(t.column("image_keys")).to_numpy(zero_copy_only=False)
        flat = lambda name: pc.list_flatten(t.column(name))  # noqa: E731
        number = lambda name: t.column(name).to_numpy().astype(np.uint64)  # noqa: E731
        thumbs = flat("image_thumbs").combine_chunks()
        return cls(
            rows=rows,
            names=t.column("dataset_name").combine_chunks(),
            dataset_index=t.column("dataset_index").fill_null(NULL_INDEX).to_numpy(),
            item_keys=_v16(t.column("item_key")),
            question_keys=number("question_key"),
            answer_keys=number("answer_key"),
            signatures=np.stack([_signatures(t.column(c), num_perm) for c in ("question_signature", "options_signature")],
                                axis=1),
            image_rows=np.repeat(rows, lengths),
            image_keys=_v16(flat("image_keys")),
            image_hashes=flat("image_hashes").to_numpy(zero_copy_only=False).astype(np.uint64),
            image_layouts=flat("image_layouts").to_numpy(zero_copy_only=False).astype(np.uint64),
            image_thumbs=_fixed(thumbs, THUMB_BYTES),
            image_hashed=flat("image_hashed").to_numpy(zero_copy_only=False).astype(bool),
        )


def _fixed(array: pa.Array, width: int) -> np.ndarray:
    """A fixed-size binary array as (n, width) uint8, without a copy."""
    if not len(array):
        return np.zeros((0, width), dtype=np.uint8)
    return np.frombuffer(array.buffers()[1], np.uint8, len(array) * width, array.offset * width).reshape(-1, width)


def _signatures(column, num_perm: int) -> np.ndarray:
    return np.frombuffer(b"".join(column.to_pylist()), dtype="<u4").reshape(len(column), num_perm).astype(np.uint32)


def _v16(column) -> np.ndarray:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return np.frombuffer(b"".join(column.to_pylist()) if len(column) else b"", dtype="V16")

