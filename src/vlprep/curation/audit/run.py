"""Contamination audit: which train rows repeat a test row (or an earlier train row). The whole run.

Four kinds of match (matching.py says what each means, docs/audit.md why): `exact_image`, `near_image`
(proposed by two hashes, confirmed on detail thumbnails: confirm.py), `near_item` (an image and its
question: the same or a near image, and near texts), and `same_question_text` (the text alone: reported,
never dropped; templates left out). Each is decided on small fixed-size records, never on stored images.

Each row becomes one record (hashing.py), written to a file; the templates (questions asked of many
distinct images) are counted from the records in buckets on disk; train is indexed a block of
`index_rows` rows at a time (AuditRun), so memory is bounded by the block, not the data. In the index
(lsh.py, matching.py) a query compares only the items sharing an LSH band key with it, never all pairs.
Test records stream against each block and are not kept; each block's pairs and flagged rows
(tables.py) are final when it ends.
"""
from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlprep.core.metrics import StageStats
from vlprep.core.sections import AuditParams
from vlprep.core.writers import FixedRowGroups, work_path
from vlprep.curation.audit.hashing import IDS_SCHEMA, RECORD_SCHEMA, Columns, hash_unit
from vlprep.curation.audit.lsh import lsh_bands
from vlprep.curation.audit.matching import BINS, CONTAMINATION, KINDS, TrainIndex, row_pairs, unshadowed
from vlprep.curation.audit.tables import FLAGGED_SCHEMA, PAIRS_SCHEMA, flagged_table, pairs_table
from vlprep.engine.executor import run_units
from vlprep.io.sources import Unit

RECORD_ROWS = 2048  # rows per row group of the records file (at most index_rows): what blocks and streamed matching take


@dataclass
class AuditResult:
    pairs: pa.Table
    flagged: pa.Table
    metrics: dict
    index: TrainIndex = field(repr=False, default=None)  # the last block's


def audit(train_units: list[Unit], test_units: list[Unit], config: AuditParams, num_proc: int = 1) -> AuditResult:
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

    def __init__(self, config: AuditParams, num_proc: int = 1):
        self.config, self.num_proc = config, num_proc
        self.metrics: dict = {}
        self.index: TrainIndex | None = None
        self.templates = np.zeros(0, np.uint64)
        self.similarity = {"vs_test": _histograms(), "within": _histograms()}

    def blocks(self, train_units: list[Unit], test_units: list[Unit]) -> Iterator[tuple[pa.Table, pa.Table]]:
        config = self.config
        spill = work_path("audit-records")
        spill.mkdir()
        try:
            train_file, test_file = spill / "train.parquet", spill / "test.parquet"
            train_stats, test_stats = self._hash(train_units, train_file), self._hash(test_units, test_file)
            self.templates, template_rows = templates([train_file, test_file], config, spill)
            blocks = _blocks(pq.ParquetFile(train_file).metadata, config.index_rows)
            test_matched = np.zeros(test_stats.rows_in, dtype=bool)  # one byte per test row
            totals = {"vs_test": Counter(), "within": Counter(), "flagged": 0, "pairs": 0, "pairs_found": 0}
            self.similarity = {"vs_test": _histograms(), "within": _histograms()}
            candidates = {"train_rows": 0, "train_rows_confirmed": 0, "best_structure": np.zeros(len(BINS) - 1, np.int64)}
            for j, block in enumerate(blocks):
                self.index = index = self._index(train_file, block)
                within = self._within(index, train_file, block, blocks[:j])
                vs_test, found = self._vs_test(index, test_file, test_matched)
                checked = index.candidate_structure >= 0
                candidates["train_rows"] += int(checked.sum())
                candidates["train_rows_confirmed"] += int(index.candidate_confirmed.sum())
                candidates["best_structure"] += np.histogram(np.clip(index.candidate_structure[checked], 0, 1), BINS)[0]
                test_ids = _identities(test_file, vs_test["other"])
                earlier_ids = _identities(train_file, within["other"][within["other"] < index.first_row])
                pairs = pairs_table(index, vs_test, within, test_ids, earlier_ids)
                flagged = flagged_table(index, vs_test, within)
                totals["vs_test"].update(_counts(vs_test))
                totals["within"].update(_counts(within))
                _add_similarity(self.similarity["within"], within)
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
            "templates": {"questions": len(self.templates), **template_rows},
            # train rows with a near-image candidate against test, with one confirmed, and per such row the
            # best structure score of its candidates (copies near 1, what the hashes alone would flag below)
            "near_image_candidates": {**candidates, "best_structure": candidates["best_structure"].tolist()},
            "similarity": {"bins": np.round(BINS, 2).tolist(), "train_vs_test": _listed(self.similarity["vs_test"]),
                           "within_train": _listed(self.similarity["within"])},
        }

    def plots(self) -> dict[str, list[dict]]:
        """plots/audit/<name>.json rows: per kind, how many train-vs-test pairs (before the cap) have each
        similarity; and per train row with a near-image candidate, its best structure score."""
        def rows(counts):
            return [{"similarity": round(float(lo), 2), "pairs": int(n)} for lo, n in zip(BINS[:-1], counts)]
        return {**{kind: rows(c) for kind, c in self.similarity["vs_test"].items()},
                "near_image_candidates": rows(self.metrics["near_image_candidates"]["best_structure"])}

    def _index(self, train_file: Path, block: list[int]) -> TrainIndex:
        return TrainIndex.build(list(_read_records(train_file, block, self.config)), self.config, self.templates)

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
            earlier = self._index(train_file, earlier_block)
            found = [row_pairs(earlier.earliest(q), within=True) for q in _read_records(train_file, block, self.config)]
            del earlier  # before the next one is built: two indexes in memory at most, this block's and one
            found = _concat_pairs(found)  # <= 4 a row of the block (one per kind)
            within = _earliest_pairs(found, within)
        return unshadowed(within)

    def _vs_test(self, index: TrainIndex, test_file: Path, test_matched: np.ndarray) -> tuple[dict, int]:
        """Test streams by the block's index. Kept: at most max_pairs_per_row pairs per train row and kind,
        so memory stays bounded even when one image is in every row of both splits. New pairs are reduced
        into the kept ones in batches, once they outnumber them: each pair is sorted O(1) times, not once
        per test unit."""
        kept, pending, pairs_found = _empty_pairs(), [], 0
        for q in _read_records(test_file, None, self.config):
            found = row_pairs(index.match(q), within=False)
            pairs_found += len(found["train"])
            test_matched[found["other"][found["kind"] < len(CONTAMINATION)]] = True
            _add_similarity(self.similarity["vs_test"], found)
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


def _read_records(path: Path, row_groups: list[int] | None, config: AuditParams) -> Iterator[Columns]:
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
    """Train rows affected per kind (a row counts once per kind), by any contamination kind (not
    same_question_text: a text alone is no contamination), and pairs written."""
    out = {kind: len(np.unique(p["train"][p["kind"] == k])) for k, kind in enumerate(KINDS)}
    out["any"] = len(np.unique(p["train"][p["kind"] < len(CONTAMINATION)]))
    out["pairs"] = len(p["train"])
    return out


def _histograms() -> dict[str, np.ndarray]:
    return {kind: np.zeros(len(BINS) - 1, np.int64) for kind in KINDS}


def _add_similarity(histograms: dict, p: dict) -> None:
    for k, kind in enumerate(KINDS):
        histograms[kind] += np.histogram(np.clip(p["sim"][p["kind"] == k], 0, 1), BINS)[0]


def _listed(histograms: dict) -> dict:
    return {kind: counts.tolist() for kind, counts in histograms.items()}


def templates(files: list[Path], config: AuditParams, spill: Path) -> tuple[np.ndarray, dict]:
    """The question keys asked of at least template_min_images distinct images over both splits (sorted),
    and per split how many rows ask one. In bounded memory: the (question, image) pairs go to buckets on
    disk by question, about index_rows pairs a bucket, and each bucket is counted on its own."""
    names = ("train_rows", "test_rows")
    groups = [(f, g) for f in files for g in range(pq.ParquetFile(f).metadata.num_row_groups)]
    images = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    buckets = [spill / f"questions-{b}.u64" for b in range(max(1, -(-images // config.index_rows)))]
    with ExitStack() as stack:
        out = [stack.enter_context(open(b, "wb")) for b in buckets]
        for f, g in groups:
            t = pq.ParquetFile(f).read_row_group(g, columns=["question_key", "image_keys"])
            lengths = pc.list_value_length(t.column("image_keys")).to_numpy(zero_copy_only=False)
            question = np.repeat(t.column("question_key").to_numpy().astype(np.uint64), lengths)
            image = _v16_prefix(pc.list_flatten(t.column("image_keys")))
            bucket = question % np.uint64(len(buckets))
            for b in np.unique(bucket):
                np.stack([question[bucket == b], image[bucket == b]], axis=1).tofile(out[int(b)])
    found = []
    for b in buckets:
        pairs = np.unique(np.fromfile(b, np.uint64).reshape(-1, 2), axis=0)
        b.unlink()
        question, count = np.unique(pairs[:, 0], return_counts=True)
        found.append(question[count >= config.template_min_images])
    keys = np.sort(np.concatenate(found)) if found else np.zeros(0, np.uint64)
    rows = {name: 0 for name in names}
    for f, g in groups:
        asked = pq.ParquetFile(f).read_row_group(g, columns=["question_key"]).column("question_key").to_numpy()
        rows[names[files.index(f)]] += int(np.isin(asked.astype(np.uint64), keys).sum())
    return keys, rows


def _v16_prefix(array) -> np.ndarray:
    """The first 8 bytes of each 16-byte key, as uint64 (enough to tell images apart when counting)."""
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    if not len(array):
        return np.zeros(0, np.uint64)
    return np.frombuffer(array.buffers()[1], np.uint64, 2 * len(array), array.offset * 16)[::2].copy()


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


