"""Parted outputs: a split's output is a directory of parts, part i holding the output rows of a fixed,
consecutive range of input units (whole units adding up to at least `part_rows` input rows; the last
part may hold fewer). The ranges depend only on the input and part_rows, never on the engine or the
number of workers, so a part can be written by whichever process runs it (engine ray: each worker
writes its own parts; engine local: the stage process writes them in turn) and the files are the same
bytes either way. Every part is written, even one whose rows were all dropped (a valid empty file), so
the list of files depends on the input alone."""
from __future__ import annotations

import contextlib
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence

import pyarrow as pa

from vlprep.core.metrics import StageStats
from vlprep.core.schema import arrow_schema
from vlprep.io.dvc_state import record_hashes, wants_hashes
from vlprep.io.sources import Unit
from vlprep.core.writers import EarlyWriteback, EmptyOutput, atomic_path, parquet_writer


@dataclass(frozen=True)
class PartInfo:
    rows: int
    nbytes: int  # file size (named as pa.Table's, so progress reporting takes either)
    crc: int  # crc32 of the file's bytes
    name: str = ""  # the file's name in the split's directory
    md5: str = ""  # md5 (hex) of the file's bytes: what DVC hashes it by


class PartFormat(Protocol):
    def name(self, index: int, count: int) -> str: ...

    def open(self, path: Path): ...  # a context manager yielding write(table)


@dataclass(frozen=True)
class ParquetParts:
    """verl, trl: part-00000.parquet, ...; row groups cut exactly as the single-file writer cut them."""

    schema: pa.Schema
    row_group_size: int

    def name(self, index: int, count: int) -> str:
        return f"part-{index:05d}.parquet"

    @contextlib.contextmanager
    def open(self, path: Path):
        with parquet_writer(path, self.schema) as writer:
            yield lambda table: writer.write_table(table.cast(self.schema), row_group_size=self.row_group_size)


@dataclass(frozen=True)
class ArrowParts:
    """hf_bytes: the Arrow stream shards of the `datasets.save_to_disk` layout, one per part."""

    schema: pa.Schema

    def name(self, index: int, count: int) -> str:
        return f"data-{index:05d}-of-{count:05d}.arrow"

    @contextlib.contextmanager
    def open(self, path: Path):
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, self.schema) as writer:
            yield lambda table: writer.write_table(table.cast(self.schema))


def plan_parts(units: Sequence[Unit], part_rows: int | None) -> list[list[Unit]]:
    """Consecutive units, cut after each reaches part_rows input rows; None: one part (a global
    transform such as verl's shuffle has no input ranges)."""
    if part_rows is None:
        return [list(units)]
    parts, current, rows = [], [], 0
    for unit in units:
        current.append(unit)
        rows += unit.rows
        if rows >= part_rows:
            parts.append(current)
            current, rows = [], 0
    if current or not parts:
        parts.append(current)
    return parts


def write_part(fmt: PartFormat, path: Path, tables: Iterable[pa.Table]) -> PartInfo:
    """Write one part: through a temporary name in the same directory, renamed when complete, so a
    retried task (its worker killed mid-write) truncates its own leftover and a part file is whole."""
    tmp = path.with_name(f".{path.name}.partial")
    rows = 0
    follow = EarlyWriteback(tmp, md5=wants_hashes())  # flushed and digested as it grows, on the second core
    try:
        with fmt.open(tmp) as write:
            for table in tables:
                if table.num_rows:
                    write(table)
                    rows += table.num_rows
                    follow.grew()
    except BaseException:
        follow.close()
        raise
    crc, md5 = follow.finish()
    os.replace(tmp, path)
    return PartInfo(rows, path.stat().st_size, crc, path.name, md5)


class Observer(Protocol):
    """A whole-split count over the output tables (hf_bytes' duplicate ids) that merges across parts."""

    def update(self, table: pa.Table) -> None: ...

    def merge(self, other: "Observer") -> None: ...

    def record(self, stats: StageStats) -> None: ...


@dataclass
class PartResult:
    """What a part's task hands back: small (counts, rejects records, an observer's keys), never rows."""

    info: PartInfo
    unit_stats: list[StageStats]  # per unit, in order: the rejects file is written unit by unit
    observer: Observer | None = None

    @property
    def nbytes(self) -> int:
        return self.info.nbytes


def run_part(fmt: PartFormat, path: str, units: list[Unit], unit_fn, attach,
             observer: Callable[[], Observer] | None = None, cwd: str | None = None) -> PartResult:
    """One part, start to end, in whatever process runs it: the units' pure function, the pass-through
    columns attached, the file written. Memory: one unit at a time. `cwd`: the project directory, as
    every path in units and params is relative to it (a Ray worker starts elsewhere)."""
    if cwd is not None:
        os.chdir(cwd)
    seen = observer() if observer else None
    unit_stats: list[StageStats] = []

    def tables() -> Iterator[pa.Table]:
        for unit in units:
            table, stats = unit_fn(unit)
            table = attach(unit, table)
            unit_stats.append(stats)
            if seen is not None:
                seen.update(table)
            yield table

    info = write_part(fmt, Path(path), tables())
    return PartResult(info, unit_stats, seen)


def write_stream(fmt: PartFormat, directory: Path, parts: list[list[Unit]], tables: Iterator[pa.Table]) -> Iterator[PartInfo]:
    """Engine local: the ordered stream of output tables (one per unit) into the parts, in turn. With a
    single part, every table goes to it (a shuffle's stream has other table boundaries)."""
    owner = itertools.repeat(0) if len(parts) == 1 else (i for i, part in enumerate(parts) for _ in part)
    grouped = itertools.groupby(zip(owner, tables), key=lambda pair: pair[0])
    done = 0
    for index, pairs in grouped:
        for missing in range(done, index):  # (cannot happen: every unit yields a table; kept total)
            yield write_part(fmt, directory / fmt.name(missing, len(parts)), [])
        yield write_part(fmt, directory / fmt.name(index, len(parts)), (table for _, table in pairs))
        done = index + 1
    for missing in range(done, len(parts)):
        yield write_part(fmt, directory / fmt.name(missing, len(parts)), [])


@dataclass
class Parted:
    """A parted output at `final`: its format, how input units make parts, what the stage process adds
    once every part is written (hf_bytes: dataset_info.json, state.json, the card) and an optional
    observer run over every output table."""

    final: Path
    fmt: PartFormat
    part_rows: int | None
    finish: Callable[[Path, list[PartInfo], StageStats], None] | None = None
    observer: Callable[[], Observer] | None = None

    def publish(self, produce: Callable[[Path], Iterable[PartInfo]], stats: StageStats) -> int:
        """Write every part into a temporary directory (produce(directory) yields their infos in part
        order), then the stage's own files, and rename the whole into place; returns rows written."""
        with atomic_path(self.final) as tmp:
            tmp.mkdir()
            infos = list(produce(tmp))
            rows = sum(info.rows for info in infos)
            # A fingerprint of the bytes in the metrics: the products (cards, preview, summary) depend on
            # the metrics alone, and still rerun whenever an output changes.
            stats.output = {"files": len(infos), "bytes": sum(i.nbytes for i in infos), "crc32": f"{combined_crc(infos):08x}"}
            if not rows:
                raise EmptyOutput(f"{self.final}: zero rows")
            if self.finish:
                self.finish(tmp, infos, stats)
        # Published: hand DVC the parts' md5s, so its commit after the stage need not read them again.
        record_hashes({self.final / info.name: info.md5 for info in infos})
        return rows


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """crc32(a + b) from crc32(a), crc32(b) and len(b) (zlib's crc32_combine, which Python's zlib does
    not expose): a fingerprint of all parts without reading them again in one process."""
    def times(matrix: list[int], vector: int) -> int:
        total, i = 0, 0
        while vector:
            if vector & 1:
                total ^= matrix[i]
            vector >>= 1
            i += 1
        return total

    def square(matrix: list[int]) -> list[int]:
        return [times(matrix, matrix[n]) for n in range(32)]

    op = [0xEDB88320] + [1 << n for n in range(31)]  # the operator appending one zero bit
    for _ in range(3):
        op = square(op)  # ... two, four, eight zero bits: one zero byte
    while len2 > 0:  # append len2 zero bytes to crc1, one bit of len2 at a time
        if len2 & 1:
            crc1 = times(op, crc1)
        len2 >>= 1
        op = square(op)
    return crc1 ^ crc2


def combined_crc(infos: list[PartInfo]) -> int:
    crc = 0
    for info in infos:
        crc = crc32_combine(crc, info.crc, info.nbytes)
    return crc


def finish_hf_dataset(directory: Path, features: dict, parts: list[PartInfo], info: dict) -> int:
    """dataset_info.json and state.json beside the Arrow shards (ArrowParts): the layout
    `datasets.Dataset.save_to_disk` writes, so `datasets.load_from_disk` reads it. Returns rows."""
    rows = sum(part.rows for part in parts)
    names = [ArrowParts(pa.schema([])).name(i, len(parts)) for i in range(len(parts))]
    # A content checksum of all shards in order: datasets keys its .map() cache on the fingerprint, so it
    # must change when the data does. This is a cache key, not a security hash.
    dataset_info = {"citation": "", "description": "", "homepage": "", "license": "", **info, "features": features}
    state = {
        "_data_files": [{"filename": n} for n in names],
        "_fingerprint": f"{combined_crc(parts):08x}{rows:08x}",
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    (directory / "dataset_info.json").write_text(json.dumps(dataset_info, indent=2, sort_keys=True) + "\n")
    (directory / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    return rows


def write_hf_dataset(final: Path, features: dict, tables: Iterable[pa.Table], info: dict | None = None) -> int:
    """A save_to_disk directory of one part from a stream of tables (tests and tools; hf_bytes writes
    its parts through run_stage). Returns rows written."""
    fmt = ArrowParts(arrow_schema(features))

    def finish(directory: Path, parts: list[PartInfo], stats: StageStats) -> None:
        finish_hf_dataset(directory, features, parts, info or {})

    return Parted(final, fmt, None, finish).publish(lambda d: write_stream(fmt, d, [[]], iter(tables)), StageStats())
