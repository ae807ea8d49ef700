"""Offline evaluation: score a file of model responses against a verl split with the training reward.

    python -m vlprep.scoring.evaluate --responses FILE --data data/verl/test --out metrics/eval/NAME.json

FILE is JSONL (one {"index": int, "response": str} per line) or parquet (columns `index`, `response`);
`index` is the row's `extra_info.index` in the verl split. Writes a DVC-style metrics JSON: accuracy,
mean reward score and format-failure rate, overall and per `dataset_name`, with counts. Responses whose
index is not in the split, repeated indices (the first response is scored) and split rows without a
response are counted in the JSON, with a few examples, and printed on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

from vlprep.core.failures import InputError
from vlprep.scoring.reward import compute_score
from vlprep.io.sources import split_files
from vlprep.io.text_sources import json_objects

# Only what scoring needs: the split's image bytes are never read.
DATA_COLUMNS = ["data_source", "reward_model", "extra_info"]
EXAMPLES = 10  # indices listed per problem kind
NO_DATASET = "<none>"  # the key for rows whose dataset_name is null


class ResponsesError(ValueError):
    """The responses file cannot be read as documented; names the file and line/row."""


def _record(index, response, where: str) -> tuple[int, str | None]:
    if isinstance(index, bool) or not isinstance(index, int):
        raise ResponsesError(f"{where}: `index` must be an integer, got {index!r}")
    if response is not None and not isinstance(response, str):
        raise ResponsesError(f"{where}: `response` must be a string or null, got {type(response).__name__}")
    return index, response


def read_responses(path: Path):
    """Yields (index, response or None) in file order."""
    if path.suffix == ".parquet":
        file = pq.ParquetFile(path)
        missing = {"index", "response"} - set(file.schema_arrow.names)
        if missing:
            raise ResponsesError(f"{path}: missing column(s) {sorted(missing)}")
        row = 0
        for batch in file.iter_batches(columns=["index", "response"]):
            for index, response in zip(batch.column("index").to_pylist(), batch.column("response").to_pylist()):
                yield _record(index, response, f"{path} row {row}")
                row += 1
        return
    for _, where, obj in json_objects(path, "an object with `index` and `response`", ResponsesError):
        if "index" not in obj or "response" not in obj:
            raise ResponsesError(f"{where}: expected an object with `index` and `response`")
        yield _record(obj["index"], obj["response"], where)


def _problem(indices: list[int], count: int | None = None) -> dict:
    return {"count": len(indices) if count is None else count, "examples": indices[:EXAMPLES]}


def _summary(n: int, correct: float, score: float, format_failures: int) -> dict:
    return {
        "n_scored": n,
        "n_correct": int(correct),
        "n_format_failures": format_failures,
        "accuracy": correct / n if n else 0.0,
        "mean_score": score / n if n else 0.0,
        "format_failure_rate": format_failures / n if n else 0.0,
    }


def evaluate(responses_path: Path, data_path: Path, **reward_kwargs) -> dict:
    responses: dict[int, str | None] = {}
    duplicates: list[int] = []
    n_lines = 0
    for index, response in read_responses(responses_path):
        n_lines += 1
        if index in responses:
            duplicates.append(index)
        else:
            responses[index] = response

    # dataset_name -> [n, correct, score sum, format failures]
    totals: dict[str, list] = defaultdict(lambda: [0, 0.0, 0.0, 0])
    seen: set[int] = set()
    missing: list[int] = []
    rows = 0
    batches = (b for f in split_files(data_path) for b in pq.ParquetFile(f).iter_batches(columns=DATA_COLUMNS))
    for batch in batches:
        for source, reward_model, extra in zip(
            batch.column("data_source").to_pylist(),
            batch.column("reward_model").to_pylist(),
            batch.column("extra_info").to_pylist(),
        ):
            rows += 1
            extra = extra or {}
            index = extra.get("index")
            seen.add(index)
            response = responses.get(index)
            if response is None:  # absent, or null in the file
                missing.append(index)
                continue
            truth = (reward_model or {}).get("ground_truth")
            result = compute_score(source, response, truth, dict(extra), **reward_kwargs)
            name = extra.get("dataset_name")
            t = totals[NO_DATASET if name is None else name]
            t[0] += 1
            t[1] += result["acc"]
            t[2] += result["score"]
            t[3] += result["format"] == 0.0

    unknown = [index for index in responses if index not in seen]
    per_dataset = {name: _summary(*t) for name, t in sorted(totals.items())}
    overall = _summary(*(sum(t[i] for t in totals.values()) for i in range(4)))
    return {
        **overall,
        "per_dataset": per_dataset,
        "rows_in_split": rows,
        "responses_in_file": n_lines,
        "unknown_indices": _problem(unknown),
        "duplicate_indices": _problem(sorted(set(duplicates)), count=len(duplicates)),
        "missing_responses": _problem(missing),
    }


def write_metrics(metrics: dict, out: Path) -> None:
    """Sorted keys and a trailing newline (as DVC writes metrics); renamed into place when complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out)


def report_problems(metrics: dict) -> None:
    notes = {
        "unknown_indices": "responses whose index is not in the split (not scored)",
        "duplicate_indices": "extra responses for an index already seen (only the first is scored)",
        "missing_responses": "split rows without a response (not scored)",
    }
    for key, what in notes.items():
        problem = metrics[key]
        if problem["count"]:
            print(f"warning: {problem['count']} {what}; e.g. index {problem['examples']}", file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Score model responses on a verl split with vlprep's reward.")
    ap.add_argument("--responses", required=True, type=Path, help="JSONL or parquet with `index` and `response`")
    ap.add_argument("--data", required=True, type=Path, help="the verl split, e.g. data/verl/test (its parts) or one parquet file")
    ap.add_argument("--out", required=True, type=Path, help="metrics JSON, e.g. metrics/eval/NAME.json")
    ap.add_argument("--format-weight", type=float, default=0.0, help="reward kwarg format_weight (as in training)")
    ap.add_argument("--require-format", action=argparse.BooleanOptionalAction, default=True,
                    help="reward kwarg require_format (as in training)")
    args = ap.parse_args(argv)
    try:
        metrics = evaluate(args.responses, args.data, format_weight=args.format_weight,
                           require_format=args.require_format)
    except (ResponsesError, InputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_metrics(metrics, args.out)
    report_problems(metrics)
    print(
        f"{args.out}: accuracy {metrics['accuracy']:.4f}, format failures {metrics['format_failure_rate']:.4f} "
        f"({metrics['n_scored']} scored of {metrics['rows_in_split']} rows)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
