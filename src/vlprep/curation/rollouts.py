"""Rollouts -> pass rates (stage curation@<split>; docs/curation.md).

A rollouts file holds k sampled responses per item of a split's verl rows: JSON Lines (one object a line)
or parquet, with `index` (verl's extra_info.index: the row's position in the hf_bytes split), then
`response` (scored here with the shipped reward, scoring/reward.py compute_score, as verl would) or a
precomputed `score` (used as it is; a record with both uses the score), and optionally `sample` (which of
the k samples: a repeated (index, sample) is a duplicate), `dataset_name` and `dataset_index` (checked,
where not null, against the row at `index`, so rollouts of another build of the split are caught, not
mis-assigned).

Each row's response is scored against the row as verl shows it: the hf_bytes row, with its options
permuted when verl.rebalance permutes the train split (the same permutation, seeded by the row's
identity), since a letter answer names the option at that letter in the prompt the model saw.

Per row: `n` (responses counted), `passes` (score >= curation.pass_score), `pass_rate` = passes / n,
`format_failures` among the responses scored here, and the mean score. A record is never dropped
silently: an index outside the split (`unknown_index`), a repeated (index, sample) (`duplicate_sample`:
the first counts) and a dataset_name/dataset_index differing from the row's (`identity_mismatch`) are
not counted, are listed in the problems file and counted in the metrics; rows without any rollout are
counted (`not_rolled_out`) with examples. A null response counts as a response (scored 0, format failed).

Memory: the rollouts stream through (a JSON line or a parquet batch at a time); what is kept is a few
numbers per row of the split and, for scoring, the row's options, label, answer and question type as
Arrow strings (no images, no question text): bounded by the split's rows, not by k or the responses.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlprep.core.failures import InputError
from vlprep.curation.rebalance import rebalance_row
from vlprep.io.text_sources import json_objects
from vlprep.io.sources import hf_dataset_files, plan_arrow_units, read_unit
from vlprep.scoring.reward import compute_score

ROLLOUT_COLUMNS = ("index", "response", "score", "sample", "dataset_name", "dataset_index")
EXAMPLES = 10  # indices listed per problem kind in the metrics
NO_DATASET = "<none>"  # the key of rows whose dataset_name is null

# data/curation/<split>.parquet: one row per hf_bytes row, in row order
CURATION_SCHEMA = pa.schema([
    ("row", pa.int64()),  # position in the hf_bytes split (verl's extra_info.index)
    ("dataset_name", pa.string()),
    ("dataset_index", pa.int64()),
    ("n", pa.int32()),  # responses counted
    ("passes", pa.int32()),  # responses whose score is at least curation.pass_score
    ("pass_rate", pa.float64()),  # passes / n; null when n = 0 (never rolled out)
    ("scored", pa.int32()),  # responses scored here (the others came with a score)
    ("format_failures", pa.int32()),  # among `scored`
    ("format_failure_rate", pa.float64()),  # format_failures / scored; null when scored = 0
    ("mean_score", pa.float64()),  # null when n = 0
])
# data/curation/<split>.problems.parquet: the records not counted
PROBLEMS_SCHEMA = pa.schema([
    ("record", pa.int64()),  # the record's position in the file (0-based; JSON Lines: line number - 1, blank lines included)
    ("index", pa.int64()),
    ("sample", pa.int64()),
    ("problem", pa.string()),  # unknown_index | duplicate_sample | identity_mismatch
    ("detail", pa.string()),
])
PROBLEMS = ("unknown_index", "duplicate_sample", "identity_mismatch")


@dataclass(frozen=True)
class Rollout:
    record: int
    index: int
    response: str | None
    score: float | None
    sample: int | None
    dataset_name: str | None
    dataset_index: int | None


def _int(value, what: str, where: str, nullable: bool) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}: `{what}` must be an integer{' or null' if nullable else ''}, got {value!r}")
    return value


def _rollout(obj: dict, record: int, where: str) -> Rollout:
    if "response" not in obj and "score" not in obj:
        raise InputError(f"{where}: a rollout needs `response` or `score`")
    index = _int(obj.get("index"), "index", where, nullable=False)
    response = obj.get("response")
    if response is not None and not isinstance(response, str):
        raise InputError(f"{where}: `response` must be a string or null, got {type(response).__name__}")
    score = obj.get("score")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise InputError(f"{where}: `score` must be a finite number or null, got {score!r}")
        score = float(score)
    sample = _int(obj.get("sample"), "sample", where, nullable=True)
    if sample is not None and sample < 0:
        raise InputError(f"{where}: `sample` must be >= 0, got {sample}")
    name = obj.get("dataset_name")
    if name is not None and not isinstance(name, str):
        raise InputError(f"{where}: `dataset_name` must be a string or null, got {name!r}")
    dataset_index = _int(obj.get("dataset_index"), "dataset_index", where, nullable=True)
    return Rollout(record, index, response, score, sample, name, dataset_index)


def read_rollouts(path: Path) -> Iterator[Rollout]:
    """The records of a rollouts file in file order, streamed; a record that breaks the format stops the
    stage naming the file and line (or row)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: rollouts file missing")
    if path.suffix == ".parquet":
        try:
            file = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(f"{path}: not a readable parquet file ({e})") from e
        columns = [c for c in ROLLOUT_COLUMNS if c in file.schema_arrow.names]
        if "index" not in columns or not {"response", "score"} & set(columns):
            raise InputError(f"{path}: needs columns `index` and `response` or `score` (has {file.schema_arrow.names})")
        record = 0
        for batch in file.iter_batches(columns=columns, batch_size=4096):
            for obj in batch.to_pylist():
                yield _rollout(obj, record, f"{path} row {record}")
                record += 1
        return
    if path.suffix not in (".jsonl", ".ndjson", ".json"):
        raise InputError(f"{path}: rollouts must be JSON Lines (.jsonl) or parquet (.parquet)")
    for record, where, obj in json_objects(path, "an object with `index` and `response` or `score`"):
        yield _rollout(obj, record, where)


@dataclass
class ScoringRows:
    """What scoring needs of each row of the split, as verl shows it (Arrow strings, no images)."""

    options: pa.Array
    answer_label: pa.Array
    answer: pa.Array
    question_type: pa.Array
    dataset_name: pa.Array
    dataset_index: pa.Array

    def __len__(self) -> int:
        return len(self.answer)

    def extra_info(self, i: int) -> tuple[str | None, dict]:
        """(ground_truth, extra_info) of row i, as verl hands them to compute_score."""
        info = {"options": self.options[i].as_py(), "answer_label": self.answer_label[i].as_py(),
                "answer": self.answer[i].as_py(), "question_type": self.question_type[i].as_py()}
        return info["answer"], info


SCORING_COLUMNS = ["question", "options", "answer_label", "answer", "question_type", "dataset_name", "dataset_index"]


def scoring_rows(dataset_dir: Path, rebalance_seed: int | None) -> ScoringRows:
    """The split's rows, with options permuted as verl permutes them when rebalance_seed is not None
    (verl.rebalance: permute, train split)."""
    parts: dict[str, list] = {k: [] for k in ("options", "answer_label", "answer", "question_type", "dataset_name",
                                              "dataset_index")}
    for unit in plan_arrow_units(hf_dataset_files(dataset_dir)):
        table = read_unit(unit, SCORING_COLUMNS)
        if rebalance_seed is not None:
            rows = table.to_pylist()
            rows = [rebalance_row(r, unit.first_row + i, rebalance_seed, False)[0] if r["options"] is not None else r
                    for i, r in enumerate(rows)]
            parts["options"].append(pa.array([r["options"] for r in rows], pa.string()))
            parts["answer_label"].append(pa.array([r["answer_label"] for r in rows], pa.string()))
        else:
            parts["options"].append(table.column("options").combine_chunks())
            parts["answer_label"].append(table.column("answer_label").combine_chunks())
        for name in ("answer", "question_type", "dataset_name", "dataset_index"):
            parts[name].append(table.column(name).combine_chunks())
    types = {"dataset_index": pa.int64()}
    return ScoringRows(**{k: pa.chunked_array(v, types.get(k, pa.string())).combine_chunks() for k, v in parts.items()})


@dataclass
class PassRates:
    """Per row of the split: counts of the rollouts counted, and what the stage reports."""

    rows: int
    n: np.ndarray = field(init=False)
    passes: np.ndarray = field(init=False)
    scored: np.ndarray = field(init=False)
    format_failures: np.ndarray = field(init=False)
    score_sum: np.ndarray = field(init=False)
    problems: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=lambda: {p: [] for p in PROBLEMS})
    records: int = 0
    null_responses: int = 0
    precomputed: int = 0

    def __post_init__(self):
        self.n, self.passes, self.scored, self.format_failures = (np.zeros(self.rows, np.int32) for _ in range(4))
        self.score_sum = np.zeros(self.rows, np.float64)


class _SeenSamples:
    """(index, sample) pairs seen: a 64-bit mask per row for samples 0-63 (k is rarely above 64), a set
    for the others; memory by rows, not by rollouts."""

    def __init__(self, rows: int):
        self.bits = np.zeros(rows, np.uint64)
        self.other: set = set()

    def add(self, index: int, sample: int) -> bool:
        """False when already seen."""
        if sample < 64:
            bit = np.uint64(1) << np.uint64(sample)
            if self.bits[index] & bit:
                return False
            self.bits[index] |= bit
            return True
        if (index, sample) in self.other:
            return False
        self.other.add((index, sample))
        return True


def pass_rates(rollouts: Iterator[Rollout], rows: ScoringRows, pass_score: float, format_weight: float,
               require_format: bool, problem: Callable[[Rollout, str, str], None] = lambda r, p, d: None) -> PassRates:
    """Count and score every rollout; `problem(rollout, kind, detail)` receives each record not counted."""
    out = PassRates(len(rows))
    seen = _SeenSamples(len(rows))
    names, dataset_index = rows.dataset_name, rows.dataset_index
    cached = (None, None)  # the last row's (index, (truth, extra_info)): an item's k rollouts are usually adjacent

    def reject(r: Rollout, kind: str, detail: str) -> None:
        out.problems[kind] += 1
        if len(out.examples[kind]) < EXAMPLES:
            out.examples[kind].append(r.index)
        problem(r, kind, detail)

    for r in rollouts:
        out.records += 1
        i = r.index
        if not 0 <= i < len(rows):
            reject(r, "unknown_index", f"the split has {len(rows)} rows (index 0..{len(rows) - 1})")
            continue
        if ((r.dataset_name is not None and r.dataset_name != names[i].as_py())
                or (r.dataset_index is not None and r.dataset_index != dataset_index[i].as_py())):
            reject(r, "identity_mismatch", f"row {i} is ({names[i].as_py()!r}, {dataset_index[i].as_py()!r}), "
                                           f"the rollout names ({r.dataset_name!r}, {r.dataset_index!r})")
            continue
        if r.sample is not None and not seen.add(i, r.sample):
            reject(r, "duplicate_sample", f"sample {r.sample} of index {i} seen before (the first counts)")
            continue
        out.n[i] += 1
        if r.score is not None:
            score = r.score
            out.precomputed += 1
        else:
            if cached[0] != i:
                cached = (i, rows.extra_info(i))
            truth, info = cached[1]
            result = compute_score(None, r.response, truth, info, format_weight=format_weight,
                                   require_format=require_format)
            score = result["score"]
            out.scored[i] += 1
            out.format_failures[i] += result["format"] == 0.0
            out.null_responses += r.response is None
        out.passes[i] += score >= pass_score
        out.score_sum[i] += score
    return out


def _ratio(a: np.ndarray, b: np.ndarray) -> pa.Array:
    with np.errstate(invalid="ignore", divide="ignore"):
        values = a / np.where(b > 0, b, 1)
    return pa.array(values, pa.float64(), mask=b == 0)


def curation_table(rates: PassRates, rows: ScoringRows) -> pa.Table:
    return pa.table({
        "row": pa.array(np.arange(rates.rows, dtype=np.int64)),
        "dataset_name": rows.dataset_name,
        "dataset_index": rows.dataset_index,
        "n": rates.n,
        "passes": rates.passes,
        "pass_rate": _ratio(rates.passes.astype(np.float64), rates.n),
        "scored": rates.scored,
        "format_failures": rates.format_failures,
        "format_failure_rate": _ratio(rates.format_failures.astype(np.float64), rates.scored),
        "mean_score": _ratio(rates.score_sum, rates.n),
    }, schema=CURATION_SCHEMA)


def _hist(values: np.ndarray) -> dict[int, int]:
    counts = np.bincount(values) if len(values) else np.zeros(0, np.int64)
    return {int(v): int(c) for v, c in enumerate(counts) if c}


def curation_metrics(rates: PassRates, rows: ScoringRows) -> dict:
    """What metrics/curation/<split>.json holds: counts of every kind of record and row, the overall
    and per-dataset_name histograms of pass counts (items by passes), pass and format-failure rates."""
    rolled = rates.n > 0
    names = np.array([NO_DATASET if n is None else n for n in rows.dataset_name.to_pylist()], dtype=object)
    never = np.flatnonzero(~rolled)
    per_dataset = {}
    for name in sorted(set(names[rolled].tolist())):
        mine = rolled & (names == name)
        per_dataset[name] = {
            "items": int(mine.sum()),
            "mean_pass_rate": round(float((rates.passes[mine] / rates.n[mine]).mean()), 6),
            "pass_counts": _hist(rates.passes[mine]),
        }
    scored = int(rates.scored.sum())
    return {
        "rows": rates.rows,
        "records": rates.records,
        "rollouts_counted": int(rates.n.sum()),
        "responses_scored": scored,
        "scores_precomputed": rates.precomputed,
        "null_responses": rates.null_responses,
        "problems": {p: {"count": rates.problems[p], "examples": rates.examples[p]} for p in PROBLEMS},
        "items_rolled_out": int(rolled.sum()),
        "not_rolled_out": {"count": len(never), "examples": never[:EXAMPLES].tolist()},
        "rollouts_per_item": _hist(rates.n[rolled]),
        "pass_counts": _hist(rates.passes[rolled]),
        "mean_pass_rate": round(float((rates.passes[rolled] / rates.n[rolled]).mean()), 6) if rolled.any() else 0.0,
        "format_failure_rate": round(int(rates.format_failures.sum()) / scored, 6) if scored else 0.0,
        "per_dataset": per_dataset,
    }


def pass_count_plots(metrics: dict) -> dict[str, list[dict]]:
    """DVC plot files: items per pass count, overall and per dataset_name (long form)."""
    overall = [{"passes": p, "items": c} for p, c in sorted(metrics["pass_counts"].items())]
    by_dataset = [{"passes": p, "dataset_name": name, "items": c}
                  for name, d in sorted(metrics["per_dataset"].items()) for p, c in sorted(d["pass_counts"].items())]
    return {"pass_counts": overall, "pass_counts_by_dataset": by_dataset}


def problems_table(records: list[tuple[Rollout, str, str]]) -> pa.Table:
    return pa.table({
        "record": pa.array([r.record for r, _, _ in records], pa.int64()),
        "index": pa.array([r.index for r, _, _ in records], pa.int64()),
        "sample": pa.array([r.sample for r, _, _ in records], pa.int64()),
        "problem": pa.array([p for _, p, _ in records], pa.string()),
        "detail": pa.array([d for _, _, d in records], pa.string()),
    }, schema=PROBLEMS_SCHEMA)
