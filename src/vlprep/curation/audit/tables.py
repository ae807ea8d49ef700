"""The audit's outputs, a block at a time: pairs.parquet (one row per train row, other row and kind, with
both rows' identities) and flagged_train_rows.parquet (each affected train row and its kinds); and
flagged_pairs, which reads pairs.parquet back for a page that shows each pair side by side."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlprep.curation.audit.matching import CONTAMINATION, KINDS, TrainIndex

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



def pairs_table(index: TrainIndex, vs_test: dict, within: dict, test_ids: pa.Table, earlier_ids: pa.Table) -> pa.Table:
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


def flagged_table(index: TrainIndex, vs_test: dict, within: dict) -> pa.Table:
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


def _lookup(ids: pa.Table, rows: np.ndarray) -> np.ndarray:
    """Positions of rows (all present) in an ids table sorted by row."""
    return np.searchsorted(ids.column("row").to_numpy(), rows)


def flagged_pairs(path: Path, kinds: Iterable[str] = CONTAMINATION) -> Iterator[dict]:
    """The pairs of a pairs.parquet of the given kinds (default: those audit.drop_train_contaminated
    drops; train_* for within-train duplicates), in file order, read a row group at a time: per pair the
    kind, the similarity and both rows as {split, row, dataset_name, dataset_index}, `row` being the
    position in that hf_bytes split (what a page needs to show the two images and questions side by side)."""
    wanted = set(kinds)
    f = pq.ParquetFile(path)
    for g in range(f.metadata.num_row_groups):
        for p in f.read_row_group(g).to_pylist():
            if p["kind"] in wanted:
                other_split = "train" if p["kind"].startswith("train_") else "test"
                yield {"kind": p["kind"], "similarity": p["similarity"],
                       "train": {"split": "train", "row": p["train_row"], "dataset_name": p["train_dataset_name"],
                                 "dataset_index": p["train_dataset_index"]},
                       "other": {"split": other_split, "row": p["test_row"], "dataset_name": p["test_dataset_name"],
                                 "dataset_index": p["test_dataset_index"]}}
