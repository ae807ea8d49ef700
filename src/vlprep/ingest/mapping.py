"""Bring your own dataset: inputs.<split> entries (files + a preset or column mapping) -> work units, and
each source row -> the reference raw row (docs/formats.md §1), BEFORE the usual normalisation, so that
records.py and images.py stay the one place that validates text and images.

The mapping only moves values into place; what it decides itself is listed in docs/inputs.md#column-mapping: options from
separate columns, a list or the question text, a label given as an index or as the option's text, and
the answer-text conflict rule. Each such row-level problem is a drop with a registered reason."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from vlprep.core.failures import InputError
from vlprep.core.metrics import Rejected
from vlprep.core.sections import ColumnMapping, InputEntry
from vlprep.ingest.presets import PRESETS
from vlprep.ingest.records import normalize_options
from vlprep.io.remote import is_s3, parent as remote_parent
from vlprep.io.sources import RowGroup, file_format, open_parquet, resolve_inputs
from vlprep.io.text_sources import MALFORMED, TextChunk, plan_text_units

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Input:
    """One compiled inputs.<split> entry: what a worker needs to map its rows."""

    label: str  # "inputs.train[1]", for messages
    mapping: ColumnMapping
    format: str | None  # the entry's format, or the preset's (a file's extension decides otherwise)
    image_root: str | None
    name: str | None


def compile_inputs(split: str, entries: list[InputEntry]) -> list[Input]:
    inputs = []
    for i, entry in enumerate(entries):
        preset = PRESETS.get(entry.preset) if entry.preset else None
        mapping = ColumnMapping.model_validate(preset["columns"]) if preset else entry.columns
        fmt = entry.format or (preset["format"] if preset else None)
        inputs.append(Input(f"inputs.{split}[{i}]", mapping, fmt, entry.image_root, entry.name))
    return inputs


def plan_inputs(entries: list[InputEntry], inputs: list[Input]) -> list[RowGroup | TextChunk]:
    """Every entry's files, in entry order, checked against its mapping up front (a bad mapping stops
    the stage before any work, naming the entry, the file and the column), and cut into units."""
    units: list[RowGroup | TextChunk] = []
    for index, (entry, inp) in enumerate(zip(entries, inputs)):
        try:
            files = resolve_inputs(entry.path, fmt=inp.format or "parquet")
        except InputError as e:
            raise InputError(f"{inp.label}: {e}") from None
        for path in files:
            fmt = file_format(path, inp.format)
            if fmt is None:
                raise InputError(f"{inp.label}: {path}: unknown file type; set `format` (parquet, csv, json, jsonl)")
            if fmt == "parquet":
                pf = open_parquet(path)
                check_columns(inp, path, pf.schema_arrow.names, pf.schema_arrow)
                first = 0
                for g in range(pf.metadata.num_row_groups):
                    rows = pf.metadata.row_group(g).num_rows
                    units.append(RowGroup(str(path), g, first, rows, entry=index))
                    first += rows
            else:
                chunks, columns = plan_text_units(path, fmt, index)
                check_columns(inp, path, columns)
                units.extend(chunks)
    return units


def check_columns(inp: Input, path, names: list[str], schema: pa.Schema | None = None) -> None:
    """Every column the mapping reads exists (bar its `optional` ones); in parquet, list-valued ones are lists."""
    m = inp.mapping
    missing = [c for c in m.columns() if c not in names and c not in m.optional]
    if missing:
        raise InputError(f"{inp.label} ({path}): mapped column(s) {missing} not in the file; it has {names}. "
                         f"Name the file's columns in a `columns:` mapping for {inp.label} (a preset's is in "
                         "src/vlprep/ingest/presets.py), or list these in its `optional` to read them as null")
    if schema is None:
        return
    listy = {m.option_list: "a list (or JSON array string)"}
    if m.images is not None and inp.mapping != REFERENCE:  # the reference schema tolerates single images
        listy[m.images] = "a list of images"
    for column, want in listy.items():
        if column in names:
            t = schema.field(column).type
            if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_string(t) or pa.types.is_large_string(t)):
                raise InputError(f"{inp.label} ({path}): column {column!r} is {t}, the mapping expects {want}")
    if m.question in names and pa.types.is_nested(schema.field(m.question).type):
        raise InputError(f"{inp.label} ({path}): column {m.question!r} is {schema.field(m.question).type}, "
                         f"the mapping expects question text")


REFERENCE = ColumnMapping.model_validate(PRESETS["reference"]["columns"])


def apply_mapping(row: dict, inp: Input) -> dict:
    """One source row -> the reference raw row (RAW_COLUMNS keys, plus `open_ended` when the mapping
    has no options). Raises Rejected for rows that do not fit."""
    if MALFORMED in row:
        raise Rejected("row_malformed", row[MALFORMED])
    m = inp.mapping
    get = row.get
    out = {
        "question": get(m.question),
        "answer": get(m.answer) if m.answer else None,
        "reasoning": get(m.reasoning) if m.reasoning else None,
        "dataset_name": get(m.dataset_name) if m.dataset_name else None,
        "dataset_index": get(m.dataset_index) if m.dataset_index else None,
        "hash": get(m.hash) if m.hash else None,
        "misc": (get(m.misc) if isinstance(m.misc, str) else
                 {c: get(c) for c in m.misc} if m.misc else None),
    }
    if out["dataset_name"] is None and inp.name is not None:
        out["dataset_name"] = inp.name
    if m.images is not None:
        out["images"] = get(m.images)
    elif m.image is not None:
        out["images"] = None if get(m.image) is None else [get(m.image)]
    else:
        out["images"] = [get(c) for c in m.image_columns if get(c) is not None]
    source = m.option_source()
    if source is None:
        out.update(options=None, answer_label=None, open_ended=True)
        return out
    label = get(m.answer_label) if m.answer_label else None
    if source == "options" and m.label_form == "letter" and m.answer_label and m.answer_conflict == "keep":
        # The reference form: values go to records.py as they are (it reports their problems).
        out.update(options=get(m.options), answer_label=label)
        if m.strip_question_options:
            out["question"] = _strip_embedded_options(out["question"], get(m.options))
        return out
    options = _options(row, m, out)
    if m.strip_question_options:
        out["question"] = _strip_embedded_options(out["question"], options)
    if m.answer_label is None:
        label = _letter_of_text(out["answer"], options, "answer_not_in_options")
    elif m.label_form in ("index0", "index1"):
        label = _letter_of_index(label, options, 1 if m.label_form == "index1" else 0)
    elif m.label_form == "text":
        label = _letter_of_text(label, options, "answer_label_not_in_options")
    if m.answer_conflict == "drop":
        _check_conflict(out["answer"], label, options)
    out.update(options=options, answer_label=label)
    return out


def _options(row: dict, m: ColumnMapping, out: dict) -> dict[str, str]:
    """The row's options as {letter: text}, from whichever form the mapping declares."""
    source = m.option_source()
    if source == "options":
        return normalize_options(row.get(m.options))
    if source == "option_list":
        value = row.get(m.option_list)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as e:
                raise Rejected("options_malformed_json", str(e)) from None
        if value is None:
            raise Rejected("options_missing")
        if not isinstance(value, list) or len(value) > len(LETTERS):
            raise Rejected("options_not_mapping", f"{type(value).__name__} of {len(value) if isinstance(value, list) else '?'}")
        return normalize_options(dict(zip(LETTERS, value)))
    if source == "option_columns":
        pairs = m.option_columns.items() if isinstance(m.option_columns, dict) else zip(LETTERS, m.option_columns)
        options = {}
        for letter, column in pairs:
            value = row.get(column)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue  # a blank cell is no option (e.g. a 3-choice item in a 4-column table)
            options[letter] = _strip_prefix(str(value), letter) if m.strip_option_prefix else value
        if not options:
            raise Rejected("options_missing")
        return normalize_options(options)
    # options_in_question
    question = out["question"]
    if not isinstance(question, str) or not question.strip():
        raise Rejected("question_missing")
    stem, options = parse_embedded_options(question)
    out["question"] = stem
    return options


def _strip_prefix(text: str, letter: str) -> str:
    """" B:Tumor" / "B. Tumor" / "(B) Tumor" in option B -> "Tumor"; any other text is kept as is."""
    match = re.match(rf"\s*\(?{letter}\s*[:.)]\s*", text)
    return text[match.end():].strip() if match else text


# Markers of options embedded in question text: "(A) ..." or "A: ..." (a capital letter that does not
# end a word, then a colon). Only a complete, unambiguous sequence A, B, C... is accepted.
_MARKERS = {
    "paren": re.compile(r"\(([A-Z])\)"),
    "colon": re.compile(r"(?<![A-Za-z0-9])([A-Z]):"),
}
_LEAD_IN = re.compile(r"(answer\s+choices|choices|options)\s*:?\s*$", re.IGNORECASE)


def parse_embedded_options(text: str) -> tuple[str, dict[str, str]]:
    """"What is shown? A: CT B: MRI" -> ("What is shown?", {"A": "CT", "B": "MRI"}).

    Conservative: in one style, the markers must read A, B, C... each exactly once (at least two), and
    exactly one style may fit; the stem and every option must be non-blank. Anything else is an
    ambiguous parse: dropped as options_unparseable, never guessed."""
    parses = []
    for style, pattern in _MARKERS.items():
        found = list(pattern.finditer(text))
        letters = "".join(f.group(1) for f in found)
        if len(found) >= 2 and letters == LETTERS[:len(found)]:
            parses.append(found)
        elif len(found) >= 2 and letters.startswith("AB"):
            raise Rejected("options_unparseable", f"{style} markers {letters!r} are not A, B, C... once each")
    if len(parses) != 1:
        raise Rejected("options_unparseable", "no option markers" if not parses else "two marker styles fit")
    found = parses[0]
    stem = _LEAD_IN.sub("", text[:found[0].start()]).strip()
    options = {}
    for f, nxt in zip(found, [*found[1:], None]):
        options[f.group(1)] = text[f.end():nxt.start() if nxt else len(text)].strip()
    if not stem or not all(options.values()):
        raise Rejected("options_unparseable", "blank question stem or option")
    return stem, options


def _strip_embedded_options(question, options) -> str:
    """The question without its embedded options block when that block lists exactly the row's option
    letters; otherwise the question unchanged."""
    if not isinstance(question, str):
        return question
    try:
        stem, embedded = parse_embedded_options(question)
        letters = set(json.loads(options) if isinstance(options, str) else options or {})
    except (Rejected, ValueError, TypeError):
        return question
    return stem if set(embedded) == letters else question


def _letter_of_index(value, options: dict[str, str], base: int) -> str:
    keys = list(options)
    try:
        if isinstance(value, bool):
            raise ValueError
        index = int(str(value).strip()) - base
    except (TypeError, ValueError):
        if value is None or not str(value).strip():
            raise Rejected("answer_label_missing") from None
        raise Rejected("answer_label_not_in_options", f"{value!r} is not an index") from None
    if not 0 <= index < len(keys):
        raise Rejected("answer_label_not_in_options", f"index {value!r} ({base}-based) outside {keys}")
    return keys[index]


def _norm(text) -> str:
    return " ".join(str(text).split()).casefold()


def _letter_of_text(text, options: dict[str, str], reason: str) -> str:
    """The letter of the one option whose text equals `text` (exactly, else ignoring case and spacing)."""
    if text is None or not str(text).strip():
        raise Rejected("answer_label_missing" if reason == "answer_label_not_in_options" else "answer_missing")
    for same in (lambda v: v.strip() == str(text).strip(), lambda v: _norm(v) == _norm(text)):
        hits = [k for k, v in options.items() if same(v)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise Rejected(reason, f"{text!r} is the text of options {hits}")
    raise Rejected(reason, f"{str(text)[:200]!r} is no option's text ({list(options.values())[:10]})")


def _check_conflict(answer, label, options: dict[str, str]) -> None:
    """answer_conflict: drop. An answer text that is not the label's option but exactly another option's
    text contradicts the label: which is right is unknowable, so the row goes."""
    if answer is None or label not in options or _norm(answer) == _norm(options[label]):
        return
    others = [k for k, v in options.items() if k != label and _norm(v) == _norm(answer)]
    if others:
        raise Rejected("answer_conflicts_with_label", f"answer {answer!r} is option {others[0]}, label is {label}")


def image_root(inp: Input | None, default: str | None, path: str) -> Path:
    """Where a row's relative image paths resolve: the entry's image_root, else hf_bytes.image_root,
    else the directory of the file naming them (images.read_image_file keeps reads under it)."""
    root = (inp.image_root if inp else None) or default
    if is_s3(root or path):  # S3 keys stay strings: Path would fold "s3://" into "s3:/"
        return root or remote_parent(path)
    return Path(root) if root else Path(path).parent


def containment_warnings(split: str, entries: list[InputEntry] | str, tracked: str | None) -> list[str]:
    """Input paths DVC would not see change: those outside input_data.<split>, hf_bytes@<split>'s dep."""
    if tracked is None or isinstance(entries, str):  # a plain spec: no new output, as before entries existed
        return []
    root = Path(tracked).resolve()
    items = [(f"inputs.{split}[{i}].{key}", value) for i, e in enumerate(entries)
             for key, value in (("path", e.path), ("image_root", e.image_root)) if value]
    out = []
    for label, spec in items:
        for part in filter(None, (p.strip() for p in spec.split(","))):
            fixed = Path(re.split(r"[*?\[]", part)[0] or ".").resolve()
            if fixed != root and root not in fixed.parents:
                out.append(f"warning: {label} {part!r} is outside input_data.{split} ({tracked!r}): "
                           f"`dvc repro` will not notice when it changes")
    return out
