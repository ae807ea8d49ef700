"""Stage `select`'s work for one split, from what the stage has read: the rows left out (with reason and
detail) and, when it is not simply each kept row once in input order, the order the targets emit them in
(docs/curation.md has the steps and their order; curation/selection.py the steps themselves)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from vlprep.core.failures import InputError
from vlprep.core.sections import AuditSection, CurationParams, MixtureParams, SubsetParams
from vlprep.curation.selection import curate, mix, select_rows
from vlprep.io.sources import hf_dataset_files, plan_arrow_units, read_unit


@dataclass(frozen=True)
class SelectParams:
    """The sections stage select reads."""

    subset: SubsetParams
    audit: AuditSection
    curation: CurationParams
    mixture: MixtureParams


def identities(dataset_dir: Path) -> tuple[list, list]:
    """dataset_name and dataset_index of every row of an hf_bytes split (no image read)."""
    names, indexes = [], []
    for unit in plan_arrow_units(hf_dataset_files(dataset_dir)):
        t = read_unit(unit, ["dataset_name", "dataset_index"])
        names += t.column("dataset_name").to_pylist()
        indexes += t.column("dataset_index").to_pylist()
    return names, indexes


def pass_counts(path: Path, split: str, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """n and passes per row, from stage curation@<split>'s file (checked to describe this split)."""
    if not path.is_file():
        raise InputError(f"{path}: missing: run curation@{split} first (dvc repro)")
    t = pq.read_table(path, columns=["row", "n", "passes"])
    if t.num_rows != rows or not np.array_equal(t.column("row").to_numpy(), np.arange(rows)):
        raise InputError(f"{path}: describes {t.num_rows} rows, the hf_bytes split has {rows}: rerun curation@{split}")
    return t.column("n").to_numpy(), t.column("passes").to_numpy()


def select_split(split: str, names: list, indexes: list, flagged: dict, referenced: dict,
                 passes: tuple[np.ndarray, np.ndarray] | None, p: SelectParams):
    """(left_out: row -> (reason, detail), sequence: the emitted order or None, metrics) of one split.
    `flagged`/`referenced` are the audit's and the references' flagged train rows (empty when not dropped),
    `passes` the curation file's (n, passes) for a split with rollouts."""
    size = p.subset.rows if split in p.subset.splits else None
    left_out = {row: (reason, detail) for row, reason, detail in
                select_rows(names, indexes, flagged, size, p.subset.seed, p.subset.stratify, referenced)}
    m: dict = {}
    sequence = None
    if passes is not None:
        order, m["curation"] = curate(left_out, *passes, names, indexes, p.curation)
        if p.curation.order != "none":
            sequence, m["order"] = order, p.curation.order
    else:
        order = np.array([r for r in range(len(names)) if r not in left_out], dtype=np.int64)
    if p.mixture.weights and split in p.mixture.splits:
        mixed, m["mixture"] = mix(left_out, order, names, indexes, p.mixture, split)
        if sequence is not None or len(mixed) != len(np.unique(mixed)):
            sequence = mixed
    if sequence is not None:
        m["emitted"] = len(sequence)
        m["repeated"] = len(sequence) - len(np.unique(sequence))
    dropped = Counter(reason for reason, _ in left_out.values())
    metrics = {"rows": len(names), "selected": len(names) - len(left_out), "left_out": dict(sorted(dropped.items())), **m}
    return left_out, sequence, metrics
