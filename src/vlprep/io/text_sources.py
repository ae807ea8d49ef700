"""Text inputs (CSV, JSON Lines, JSON arrays) as work units: chunks of rows found in one streaming pass,
each read again from its byte offset (io/sources.py plans and reads the parquet and Arrow units beside them)."""
from __future__ import annotations

import csv
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from vlprep.core.failures import InputError

# Rows per text unit: text rows are small, but each names its images, read in the same unit.
TEXT_ROWS_PER_UNIT = 256
# A row read from a text file that is not a record (a JSON line that does not parse, a CSV row whose
# field count differs from the header's): the row is dropped (row_malformed), the file still read.
MALFORMED = "__vlprep_malformed__"


def json_objects(path: Path, expected: str, error: type[Exception] = InputError) -> Iterator[tuple[int, str, dict]]:
    """(record, where, object) for each non-blank line of a JSON Lines side file (rollouts, responses):
    a line that is not a JSON object stops the read with `error`, naming the file, the line and `expected`
    (a side file is the user's own record of a run, so a bad line is structural, not a row to drop)."""
    with open(path, encoding="utf-8") as f:
        for record, line in enumerate(f):
            if not line.strip():
                continue
            where = f"{path}:{record + 1}"
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise error(f"{where}: not JSON ({e})") from None
            if not isinstance(obj, dict):
                raise error(f"{where}: expected {expected}")
            yield record, where, obj



@dataclass(frozen=True)
class TextChunk:
    """Up to TEXT_ROWS_PER_UNIT rows of a CSV, JSON Lines or JSON (array) file: the unit of work for
    text inputs, like a parquet row group. CSV and JSON Lines are read from the chunk's byte offset, so a
    file is streamed, never loaded whole; a JSON array is parsed whole (once per process)."""

    path: str
    format: str  # csv | jsonl | json
    offset: int  # byte offset of the chunk's first row (csv, jsonl; 0 for json)
    first_row: int  # the chunk's first row within its file (the header does not count)
    num_rows: int
    entry: int = 0
    header: tuple = ()  # csv column names

    @property
    def rows(self) -> int:  # (for progress)
        return self.num_rows

    @property
    def source(self) -> str:
        return self.path



def _lines(f, position: list[int]):
    """Decoded lines of a binary file, advancing position[0] by each line's bytes: exact offsets of
    record boundaries whatever the encoding, and csv.reader still sees quoted newlines."""
    for line in f:
        position[0] += len(line)
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{f.name}: not UTF-8 text at byte {position[0] - len(line)} ({e})") from None
        yield text.lstrip("\ufeff") if position[0] == len(line) else text


def _csv_records(f, position):
    for record in csv.reader(_lines(f, position)):
        if record:  # a blank line is no record
            yield record


def _jsonl_records(f, position):
    for line in _lines(f, position):
        if line.strip():
            yield line


def plan_text_units(path: Path, fmt: str, entry: int = 0, rows_per_unit: int = TEXT_ROWS_PER_UNIT) -> tuple[list[TextChunk], list[str]]:
    """One streaming pass over a text file: its chunks (with their byte offsets) and its column names
    (the CSV header; for JSON, every key any row has)."""
    units: list[TextChunk] = []
    columns: dict[str, None] = {}
    try:
        if fmt == "json":
            rows = _json_rows(str(path))
            for row in rows:
                if isinstance(row, dict):
                    columns.update(dict.fromkeys(row))
            units = [TextChunk(str(path), fmt, 0, first, min(rows_per_unit, len(rows) - first), entry)
                     for first in range(0, len(rows), rows_per_unit)]
            return units, list(columns)
        with open(path, "rb") as f:
            position = [0]
            records = _csv_records(f, position) if fmt == "csv" else _jsonl_records(f, position)
            header: tuple = ()
            if fmt == "csv":
                header = tuple(next(records, None) or ())
                if not header:
                    raise InputError(f"{path}: empty CSV file (no header)")
                columns = dict.fromkeys(header)
            start, count, first = position[0], 0, 0
            for record in records:
                if fmt == "jsonl":
                    try:
                        value = json.loads(record)
                    except json.JSONDecodeError:
                        value = None
                    if isinstance(value, dict):
                        columns.update(dict.fromkeys(value))
                count += 1
                if count == rows_per_unit:
                    units.append(TextChunk(str(path), fmt, start, first, count, entry, header))
                    start, first, count = position[0], first + count, 0
            if count:
                units.append(TextChunk(str(path), fmt, start, first, count, entry, header))
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e})") from e
    except csv.Error as e:
        raise InputError(f"{path}: not a readable CSV file ({e})") from e
    return units, list(columns)


@functools.lru_cache(maxsize=1)
def _json_rows(path: str) -> list:
    """A JSON file: an array of objects, or (when it does not start with '[') JSON Lines."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8-sig", errors="strict")
    if not text.lstrip().startswith("["):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # several values: JSON Lines
        if whole is not None:
            raise InputError(f"{path}: a JSON {type(whole).__name__}, not an array of row objects (nor JSON Lines)")
        rows = []
        for line in text.splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    rows.append(None)
        return rows
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(rows, list):
        raise InputError(f"{path}: a JSON {type(rows).__name__}, not an array of row objects (nor JSON Lines)")
    return rows


def read_text_unit(unit: TextChunk, columns: list[str] | None = None) -> list[dict]:
    """A text chunk's rows as dicts (values as parsed: CSV cells are strings, blank cells None);
    a row that is not a record is {MALFORMED: detail}."""
    keep = set(columns) if columns else None

    def pick(record) -> dict:
        if not isinstance(record, dict):
            return {MALFORMED: f"not an object: {str(record)[:200]}"}
        return {k: v for k, v in record.items() if keep is None or k in keep}

    if unit.format == "json":
        return [pick(r) for r in _json_rows(unit.path)[unit.first_row:unit.first_row + unit.num_rows]]
    rows = []
    try:
        with open(unit.path, "rb") as f:
            f.seek(unit.offset)
            position = [unit.offset]
            records = _csv_records(f, position) if unit.format == "csv" else _jsonl_records(f, position)
            for record in records:
                if unit.format == "csv":
                    if len(record) != len(unit.header):
                        rows.append({MALFORMED: f"{len(record)} fields, header has {len(unit.header)}"})
                    else:
                        rows.append(pick({k: (v if v != "" else None) for k, v in zip(unit.header, record)}))
                else:
                    try:
                        rows.append(pick(json.loads(record)))
                    except json.JSONDecodeError as e:
                        rows.append({MALFORMED: f"invalid JSON: {e}"})
                if len(rows) == unit.num_rows:
                    break
    except (OSError, csv.Error) as e:
        raise InputError(f"{unit.path}: unreadable at byte {unit.offset} ({e})") from e
    return rows
