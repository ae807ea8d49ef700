"""Text fields of one raw row -> clean values, or a named drop reason (docs/formats.md: raw, hf_bytes)."""
from __future__ import annotations

import json

from vlprep.core.metrics import Rejected


def _text(value) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def normalize_options(value) -> dict[str, str]:
    """dict, parquet struct/map, or JSON string -> {letter: text} in original key order.

    Null values are removed: when pyarrow infers a struct from dicts with different keys, absent keys
    come back as null, and the reference printed them as 'E. None' option lines."""
    if value is None:
        raise Rejected("options_missing")
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as e:
            raise Rejected("options_malformed_json", str(e)) from None
    if isinstance(value, list) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        value = dict(value)  # a parquet map<string,string> arrives as a list of (key, value) pairs
    if not isinstance(value, dict):
        raise Rejected("options_not_mapping", type(value).__name__)
    options = {str(k).strip(): _text(v) for k, v in value.items() if v is not None}
    if not options:
        raise Rejected("options_empty")
    return options


def normalize_label(value, options: dict[str, str]) -> str:
    label = _text(value)
    if label is None or not label.strip():
        raise Rejected("answer_label_missing")
    label = label.strip()
    if label not in options:
        # e.g. 1 instead of "A", or "F" with options A-E: guessing a mapping could train on wrong answers.
        raise Rejected("answer_label_not_in_options", f"{label!r} not in {list(options)}")
    return label


def normalize_misc(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


YES_NO = ("yes", "no")


def question_type(answer: str) -> str:
    """A question without options is yes/no when its answer is (ignoring case, spaces, a final '.')."""
    return "yesno" if answer.strip().rstrip(".").strip().casefold() in YES_NO else "open"


def normalize_text_fields(row: dict, warnings) -> dict:
    """Everything but images. `warnings` is a Counter for kept-but-suspicious rows. A row marked
    `open_ended` (mapped from a source without options) has no options or label: its answer text is
    the truth, and its question_type is open or yesno; any other row is a multiple-choice one (mcq)."""
    question = _text(row.get("question"))
    if question is None or not question.strip():
        raise Rejected("question_missing")
    if row.get("open_ended"):
        answer = _text(row.get("answer"))
        if answer is None or not answer.strip():
            raise Rejected("answer_missing")
        return _clean(row, question, None, None, answer, question_type(answer))
    options = normalize_options(row.get("options"))
    label = normalize_label(row.get("answer_label"), options)
    answer = _text(row.get("answer"))
    if answer is None or not answer.strip():
        # The answer text is recoverable from the label; the label is the source of truth.
        answer = options[label]
        warnings["answer_filled_from_options"] += 1
    elif answer.strip() != options[label].strip():
        # Kept: sources often abbreviate or rephrase the answer text. Counted so a dataset where this
        # is common (a sign of misaligned labels) stands out in the metrics.
        warnings["answer_text_mismatch"] += 1
    return _clean(row, question, json.dumps(options, ensure_ascii=False), label, answer, "mcq")


def _clean(row: dict, question: str, options: str | None, label: str | None, answer: str, qtype: str) -> dict:
    reasoning = _text(row.get("reasoning"))
    dataset_index = row.get("dataset_index")
    try:
        dataset_index = None if dataset_index is None else int(dataset_index)
    except (TypeError, ValueError):
        raise Rejected("dataset_index_not_integer", repr(dataset_index)) from None
    return {
        "question": question,
        "options": options,
        "answer_label": label,
        "answer": answer,
        "reasoning": reasoning if reasoning and reasoning.strip() else None,
        "dataset_name": _text(row.get("dataset_name")),
        "dataset_index": dataset_index,
        "hash": _text(row.get("hash")),
        "misc": normalize_misc(row.get("misc")),
        "question_type": qtype,
    }
