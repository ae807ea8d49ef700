"""Input specs -> a sorted, de-duplicated list of parquet files -> row-group work units."""
from __future__ import annotations

import functools
import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vlprep.failures import InputError


def resolve_inputs(spec: str, base: Path = Path(".")) -> list[Path]:
    """Accept what the reference tools accepted: a glob, a directory (all *.parquet below it, recursively),
    a single file, or a comma-separated list of these. Each part's matches are sorted (so output order
    never depends on the file system); duplicates are removed keeping the first occurrence."""
    files: list[Path] = []
    for part in (p.strip() for p in str(spec).split(",")):
        if not part:
            continue
        path = Path(os.path.expanduser(part))
        path = path if path.is_absolute() else base / path
        if glob.has_magic(str(path)):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        elif path.is_dir():
            matches = sorted(p for p in path.rglob("*.parquet") if p.is_file())
        elif path.is_file():
            matches = [path]
        else:
            raise InputError(f"input {part!r} does not exist")
        if not matches:
            raise InputError(f"input {part!r} matched no parquet files")
        files.extend(matches)
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
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


Unit = RowGroup | ArrowBatch


@functools.lru_cache(maxsize=8)
def open_parquet(path: Path | str) -> pq.ParquetFile:
    # pre_buffer=False: the default buffers whole column chunks ahead, making memory grow with file size.
    # Cached: a file's row groups are read one after another, and parsing its footer each time costs.
    try:
        return pq.ParquetFile(path, pre_buffer=False)
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


def read_unit(unit: Unit, columns: list[str] | None = None) -> pa.Table:
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
