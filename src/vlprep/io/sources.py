"""Input specs -> a sorted, de-duplicated list of files -> work units (parquet row groups, chunks of
CSV / JSON Lines / JSON rows, record batches of a saved dataset)."""
from __future__ import annotations

import functools
import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vlprep.io import remote
from vlprep.io.text_sources import TextChunk, read_text_unit
from vlprep.core.failures import InputError


# File format -> the extensions a directory is searched for.
SUFFIXES = {"parquet": (".parquet",), "csv": (".csv",), "json": (".json",), "jsonl": (".jsonl", ".ndjson")}


def file_format(path: Path | str, default: str | None = None) -> str | None:
    """The format a file's extension names, else `default`."""
    suffix = Path(path).suffix.lower()
    return next((fmt for fmt, suffixes in SUFFIXES.items() if suffix in suffixes), default)


def resolve_inputs(spec: str, base: Path = Path("."), fmt: str = "parquet") -> list[Path]:
    """Accept what the reference tools accepted: a glob, a directory (all *.parquet below it, recursively;
    files of `fmt` for other formats), a single file, or a comma-separated list of these. Each part's
    matches are sorted (so output order never depends on the file system); duplicates are removed
    keeping the first occurrence."""
    files: list[Path | str] = []
    for part in (p.strip() for p in str(spec).split(",")):
        if not part:
            continue
        if remote.is_s3(part):  # listed in place, never copied (remote.py); S3 keys stay strings
            if fmt != "parquet":
                raise InputError(f"input {part!r}: S3 inputs are read as parquet only")
            matches = remote.list_files(part, SUFFIXES[fmt])
            if not matches:
                raise InputError(f"input {part!r} matched no {fmt} files (or no such bucket/prefix)")
            files.extend(matches)
            continue
        path = Path(os.path.expanduser(part))
        path = path if path.is_absolute() else base / path
        if glob.has_magic(str(path)):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        elif path.is_dir():
            matches = sorted(p for suffix in SUFFIXES[fmt] for p in path.rglob(f"*{suffix}") if p.is_file())
        elif path.is_file():
            matches = [path]
        else:
            raise InputError(f"input {part!r} does not exist")
        if not matches:
            raise InputError(f"input {part!r} matched no {fmt} files")
        files.extend(matches)
    seen: set = set()
    unique = []
    for f in files:
        key = f if remote.is_s3(f) else f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    if not unique:
        raise InputError(f"input spec {spec!r} names no files")
    return unique


@dataclass(frozen=True)
class RowGroup:
    """One row group of a raw parquet file: the unit of work hf_bytes hands a process, so memory is
    bounded by one row group."""

    path: str
    row_group: int
    first_row: int  # the group's first row within its file: rejects and error messages name file + row
    rows: int = 0  # rows in the group (for progress)
    entry: int = 0  # which inputs.<split> entry the file belongs to (its mapping), for list-form inputs

    @property
    def source(self) -> str:
        return self.path


@dataclass(frozen=True)
class ArrowBatch:
    """One record batch of an Arrow stream shard of a saved dataset (hf_bytes): what verl/trl read."""

    path: str  # the shard file
    offset: int  # byte offset of the record batch message in it
    first_row: int  # the batch's first row within the whole dataset (all shards): a row's stable id
    rows: int = 0  # rows in the batch (for progress)

    @property
    def source(self) -> str:
        return str(Path(self.path).parent)  # the dataset directory, in which first_row counts


@dataclass(frozen=True)
class ArrowRows:
    """Rows of a saved dataset (hf_bytes) taken by position in a given order, a row possibly more than once:
    what the targets read when stage select orders or repeats the rows (a curriculum, an up-sampled
    mixture). Its rows come from whichever record batches hold them, each memory-mapped as ArrowBatch is.

    `skipped` are rows the selection leaves out, spread over the units so that every unit (and so every
    output part) holds selected rows: they are only counted and named, their small columns read
    (read_skipped), never their images."""

    batches: tuple[ArrowBatch, ...]  # the record batches its rows (and skipped rows) come from
    take: tuple[tuple[int, int], ...]  # per row: (which of `batches`, row within that batch)
    positions: tuple[int, ...]  # per row: its position in the whole dataset (its stable id)
    repeats: int = 0  # rows that repeat one read earlier in the order (an up-sampled copy)
    skipped: tuple[int, ...] = ()  # positions of rows left out
    skipped_take: tuple[tuple[int, int], ...] = ()

    @property
    def rows(self) -> int:  # input rows: read and skipped (progress, part sizes)
        return len(self.positions) + len(self.skipped)

    @property
    def first_row(self) -> int:  # (for messages)
        return self.positions[0] if self.positions else 0

    @property
    def path(self) -> str:
        return self.batches[0].path if self.batches else ""

    @property
    def source(self) -> str:
        return self.batches[0].source if self.batches else ""


Unit = RowGroup | ArrowBatch | TextChunk | ArrowRows


def unit_paths(unit: Unit) -> tuple[str, ...]:
    """The files a unit reads."""
    return tuple(dict.fromkeys(b.path for b in unit.batches)) if isinstance(unit, ArrowRows) else (unit.path,)


def plan_arrow_rows(units: list[ArrowBatch], sequence, rows_per_unit: int, skipped=()) -> list[ArrowRows]:
    """Units reading the dataset's rows in the order `sequence` gives (positions in the dataset, a row
    possibly more than once), `rows_per_unit` rows each; the `skipped` positions (sorted) are spread over
    them in consecutive runs, as evenly as the units' count allows."""
    import numpy as np

    sequence = np.asarray(sequence, dtype=np.int64)
    skipped = np.asarray(skipped, dtype=np.int64)
    starts = np.array([u.first_row for u in units], dtype=np.int64)
    total = int(starts[-1] + units[-1].rows) if units else 0
    for rows in (sequence, skipped):
        if len(rows) and (rows.min() < 0 or rows.max() >= total):
            raise InputError(f"a row order names rows outside the dataset's 0..{total - 1}: rerun stage select")
    which = np.searchsorted(starts, sequence, side="right") - 1
    skipped_which = np.searchsorted(starts, skipped, side="right") - 1
    seen = np.zeros(total, dtype=bool)
    count = -(-len(sequence) // rows_per_unit)
    out = []
    for j, lo in enumerate(range(0, len(sequence), rows_per_unit)):
        rows, batch = sequence[lo:lo + rows_per_unit].tolist(), which[lo:lo + rows_per_unit].tolist()
        a, b = j * len(skipped) // count, (j + 1) * len(skipped) // count
        skip, skip_batch = skipped[a:b].tolist(), skipped_which[a:b].tolist()
        used = list(dict.fromkeys(batch + skip_batch))
        slot = {k: i for i, k in enumerate(used)}
        repeats = 0
        for r in rows:
            repeats += bool(seen[r])
            seen[r] = True
        out.append(ArrowRows(tuple(units[k] for k in used),
                             tuple((slot[k], r - units[k].first_row) for k, r in zip(batch, rows)),
                             tuple(rows), repeats, tuple(skip),
                             tuple((slot[k], r - units[k].first_row) for k, r in zip(skip_batch, skip))))
    return out


def read_skipped(unit: ArrowRows, columns: list[str]) -> pa.Table:
    """The given columns of an ArrowRows unit's skipped rows, in order."""
    return _take(unit, unit.skipped_take, columns)


def _take(unit: ArrowRows, take, columns: list[str] | None) -> pa.Table:
    # Each batch memory-mapped (no copy); only the rows taken are copied, in the unit's order.
    tables = [read_unit(b, columns) for b in unit.batches]
    offsets, first = [], 0
    for t in tables:
        offsets.append(first)
        first += t.num_rows
    return pa.concat_tables(tables).take(pa.array([offsets[b] + r for b, r in take], pa.int64()))


@functools.lru_cache(maxsize=8)
def open_parquet(path: Path | str) -> pq.ParquetFile:
    # pre_buffer=False: the default buffers whole column chunks ahead, making memory grow with file size.
    # Cached: a file's row groups are read one after another, and parsing its footer each time costs.
    try:
        return pq.ParquetFile(remote.open_input(path) if remote.is_s3(path) else path, pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: not a readable parquet file ({e})") from e


def plan_units(files: list[Path], required: tuple[str, ...]) -> list[RowGroup]:
    """Check every file's schema up front (so a bad shard fails before any work) and list its row groups."""
    units = []
    for path in files:
        pf = open_parquet(path)
        missing = [c for c in required if c not in pf.schema_arrow.names]
        if missing:
            raise InputError(f"{path}: missing required column(s) {missing}; has {pf.schema_arrow.names}")
        first = 0
        for i in range(pf.metadata.num_row_groups):
            rows = pf.metadata.row_group(i).num_rows
            units.append(RowGroup(str(path), i, first, rows))
            first += rows
    return units


def plan_arrow_units(files: list[Path]) -> list[ArrowBatch]:
    """Record batches of Arrow stream files (the save_to_disk layout) with their byte offsets.

    The stream format has no index; scanning message headers through a memory map touches only
    metadata pages, and lets each worker later map just its batch (see read_unit)."""
    units, first = [], 0
    for path in files:
        schema = _arrow_schema(path)
        with pa.memory_map(str(path)) as src:
            reader = pa.ipc.MessageReader.open_stream(src)
            while True:
                pos = src.tell()
                try:
                    msg = reader.read_next_message()
                except StopIteration:
                    break
                if msg.type == "record batch":
                    rows = pa.ipc.read_record_batch(msg, schema).num_rows
                    units.append(ArrowBatch(str(path), pos, first, rows))
                    first += rows
    return units


def _arrow_schema(path) -> pa.Schema:
    with pa.OSFile(str(path)) as f:
        return pa.ipc.read_schema(f)


def hf_dataset_files(dataset_dir: Path) -> list[Path]:
    """The Arrow shards of a save_to_disk directory, in the order its state.json lists them."""
    state = Path(dataset_dir) / "state.json"
    if not state.is_file():
        raise InputError(f"{dataset_dir}: not a saved datasets directory (no state.json)")
    return [Path(dataset_dir) / f["filename"] for f in json.loads(state.read_text())["_data_files"]]


def split_files(path: Path) -> list[Path]:
    """A verl/trl split's parquet files in order: the parts of its directory (docs/formats.md#output-parts),
    or the one file given."""
    path = Path(path)
    files = sorted(path.glob("part-*.parquet")) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        raise InputError(f"{path}: missing (run its stage first)")
    return files


def read_unit(unit: Unit, columns: list[str] | None = None) -> pa.Table:
    if isinstance(unit, ArrowRows):  # its rows in order (not the skipped ones: read_skipped)
        return _take(unit, unit.take, columns)
    try:
        if isinstance(unit, ArrowBatch):
            # Memory-mapped, one map per unit: the batch's buffers are the page cache's pages, not a copy,
            # and image bytes that pass through reach the writer without ever being copied. The pages
            # stay mapped only while the table lives, so resident memory stays one unit's worth.
            with pa.memory_map(unit.path) as f:
                schema = pa.ipc.read_schema(f)
                f.seek(unit.offset)
                batch = pa.ipc.read_record_batch(pa.ipc.read_message(f), schema)
            table = pa.Table.from_batches([batch])
            return table.select([c for c in columns if c in table.column_names]) if columns else table
        pf = open_parquet(unit.path)
        names = [c for c in columns if c in pf.schema_arrow.names] if columns else None
        return pf.read_row_group(unit.row_group, columns=names)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{unit.source}: rows from {unit.first_row} unreadable ({e}); "
                         "if the input was changed or removed while the stage ran, rerun") from e


def read_rows(unit: Unit, columns: list[str] | None = None) -> list[dict]:
    """A raw unit's rows as dicts, whatever the file type."""
    if isinstance(unit, TextChunk):
        return read_text_unit(unit, columns)
    return read_unit(unit, columns).to_pylist()


def parquet_columns(path: Path | str) -> pa.Schema:
    return open_parquet(path).schema_arrow
