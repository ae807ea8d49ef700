"""Atomic writers: every output is written to a temporary path and renamed into place when complete, so a
killed stage never leaves something at the final path that looks valid.

Temporary paths (outputs being written, worker spills, shuffle buckets) live in one work area,
`.vlprep/tmp/<pid>-<name>` under the project (git and DVC ignore it): a run killed with SIGKILL runs no
cleanup, and when `dvc repro` then restores that stage's outputs from its cache instead of rerunning it,
a leftover beside the output would stay forever. Every stage run first removes the entries of processes
that no longer exist; `rm -rf .vlprep/tmp` clears it by hand when no stage is running."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
import zlib
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq



class EmptyOutput(Exception):
    """Zero rows to publish: nothing is written at the final path."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


WORK_AREA = Path(".vlprep/tmp")


class EarlyWriteback:
    """Follows a file while it is written (append-only), in two background threads, every `step` bytes:
    one flushes the new bytes to disk, the other adds them to the file's CRC-32 and MD5. atomic_path
    fsyncs every output before publishing it; left alone, the kernel kept gigabytes of a large output
    dirty until then and the stage waited for the whole disk write at its end, then read the file back
    for its CRC. Followed, the disk writes while the stage goes on and the digests are computed on the
    second core (apart from the flush, which waits on the disk: one thread doing both fell behind the
    writes); only the last step's bytes are left for the end. Durability is unchanged: atomic_path still
    fsyncs every file. The CRC fingerprints the output in the metrics; the MD5 (md5=True: wanted under
    `dvc repro`) is the hash DVC keys its cache by, handed to it so it need not read the file again
    (io/dvc_state.py)."""

    def __init__(self, path: Path, step: int = 128 << 20, md5: bool = True):
        self.path, self.step = path, step
        self.crc, self.md5 = 0, hashlib.md5() if md5 else None
        self.fd: int | None = None
        self.flush = _Follow(lambda start, end: os.fsync(self.fd), "vlprep-writeback")
        self.digest = _Follow(self._digest, "vlprep-digest")

    def _digest(self, start: int, end: int) -> None:
        self.crc = _digest_range(self.fd, start, end, self.crc, self.md5)

    def grew(self) -> None:
        """Call after each write: starts a follow over the new bytes when `step` of them are waiting for
        it and it is not running."""
        if self.flush.busy() and self.digest.busy():
            return
        if self.fd is None:
            self.fd = os.open(self.path, os.O_RDONLY)  # fsync flushes the file, whichever descriptor
        size = os.fstat(self.fd).st_size
        for follow in (self.flush, self.digest):
            if not follow.busy() and size - follow.done >= self.step:
                follow.start(size)

    def finish(self) -> tuple[int, str]:
        """Once the file is complete: its CRC-32 and MD5 (hex; "" without md5). The rest is flushed by a
        last background fsync, which closes the descriptor (atomic_path waits for it)."""
        try:
            self.flush.join()
            self.digest.join()
        except OSError:
            self.close()
            raise
        fd = self.fd if self.fd is not None else os.open(self.path, os.O_RDONLY)
        self.fd = None
        self.crc = _digest_range(fd, self.digest.done, os.fstat(fd).st_size, self.crc, self.md5)
        _flush(fd, close=True)
        return self.crc, self.md5.hexdigest() if self.md5 else ""

    def close(self) -> None:
        """Stop following (the write failed): wait for running follows, release the descriptor."""
        for follow in (self.flush, self.digest):
            follow.join(raise_error=False)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _Follow:
    """One background job at a time over a growing file's bytes [done, end); done advances when it ends."""

    def __init__(self, job, name: str):
        self.job, self.name = job, name
        self.done = 0
        self.thread: threading.Thread | None = None
        self.error: OSError | None = None

    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, end: int) -> None:
        def run() -> None:
            try:
                self.job(self.done, end)  # fsync, pread, crc32 and md5 of large buffers release the GIL
                self.done = end
            except OSError as e:
                self.error = e

        self.thread = threading.Thread(target=run, name=self.name, daemon=True)
        self.thread.start()

    def join(self, raise_error: bool = True) -> None:
        if self.thread is not None:
            self.thread.join()
        if self.error is not None and raise_error:
            raise self.error


def _digest_range(fd: int, start: int, end: int, crc: int, md5) -> int:
    while start < end:
        chunk = os.pread(fd, min(1 << 24, end - start), start)  # in the page cache: just written
        if not chunk:
            raise OSError(f"file shorter than {end} bytes while its digests were computed")
        crc = zlib.crc32(chunk, crc)
        if md5 is not None:
            md5.update(chunk)  # releases the GIL too
        start += len(chunk)
    return crc


_FLUSHES: list[threading.Thread] = []
_FLUSH_ERRORS: list[OSError] = []


def _flush(fd: int, close: bool) -> threading.Thread:
    def run() -> None:
        try:
            os.fsync(fd)  # releases the GIL: the stage goes on meanwhile
        except OSError as e:
            _FLUSH_ERRORS.append(e)  # raised by atomic_path: a descriptor that saw an error consumed it
        finally:
            if close:
                os.close(fd)

    thread = threading.Thread(target=run, name="vlprep-writeback", daemon=True)
    _FLUSHES[:] = [t for t in _FLUSHES if t.is_alive()] + [thread]
    thread.start()
    return thread


def _wait_for_flushes() -> None:
    for thread in list(_FLUSHES):
        thread.join()
    if _FLUSH_ERRORS:
        raise _FLUSH_ERRORS.pop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True


def sweep_leftovers(area: Path = WORK_AREA) -> list[Path]:
    """Remove what killed runs left in the work area (entries whose process is gone); returns them."""
    removed = []
    for entry in sorted(area.glob("*-*")) if area.is_dir() else []:
        pid = entry.name.split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            _remove(entry)
            removed.append(entry)
    return removed


def work_path(name: str, near: Path | None = None) -> Path:
    """A fresh temporary path of this process, in the work area; or beside `near` when the work area is
    on another file system than `near` (a rename cannot cross file systems, e.g. data/ symlinked away)."""
    WORK_AREA.mkdir(parents=True, exist_ok=True)
    if near is not None and os.stat(near).st_dev != os.stat(WORK_AREA).st_dev:
        path = near / f".{name}.tmp-{os.getpid()}"
    else:
        path = WORK_AREA / f"{os.getpid()}-{name}"
    _remove(path)
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path (file or directory) that replaces `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Named after the whole path: two outputs of one stage may share a file name (train.parquet).
    tmp = work_path("-".join(p for p in final.parts if p != "/"), near=final.parent)
    try:
        yield tmp
        _wait_for_flushes()
        for p in [tmp, *tmp.rglob("*")] if tmp.is_dir() else [tmp]:
            if p.is_file():
                with open(p, "rb+") as f:
                    os.fsync(f.fileno())
        _remove(final)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except OSError as e:
        # For the one-line failure message (failures.explain_os_error): which output, how far it got.
        if not hasattr(e, "output"):
            e.output, e.written = final, _size(tmp)
        raise
    finally:
        _remove(tmp)


def _size(path: Path) -> int:
    files = [path, *path.rglob("*")] if path.is_dir() else [path]
    return sum(f.stat().st_size for f in files if f.is_file())


def write_parquet(final: Path, schema: pa.Schema, tables: Iterable[pa.Table], row_group_size: int) -> int:
    """Stream tables into one parquet file; returns rows written."""
    rows = 0
    with atomic_path(final) as tmp:
        with parquet_writer(tmp, schema) as writer:
            for table in tables:
                if table.num_rows:
                    writer.write_table(table.cast(schema), row_group_size=row_group_size)
                    rows += table.num_rows
        if not rows:
            raise EmptyOutput(f"{final}: zero rows")
    return rows


def parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """The writer settings of every image-bearing parquet output (one file or a part of a split)."""
    # Image bytes are already compressed (JPEG/PNG): zstd or a dictionary (hashing every image until
    # the dictionary overflows) on them costs time and saves nothing, so only other columns get them.
    leaves = _leaf_paths(schema)
    text_columns = [c for c in leaves if not c.startswith("images.")]
    compression = {c: "zstd" if c in text_columns else "none" for c in leaves}
    return pq.ParquetWriter(path, schema, compression=compression, use_dictionary=text_columns,
                            write_statistics=False)


@contextlib.contextmanager
def parquet_sink(final: Path, schema: pa.Schema) -> Iterator:
    """A `write(table)` function for a small side output written while the main one streams (rejects);
    published atomically when the block ends without error, even with no rows (a valid empty file)."""
    with atomic_path(final) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        yield lambda table: writer.write_table(table.cast(schema))


class FixedRowGroups:
    """Writes tables to a ParquetWriter in row groups of exactly `rows` rows (the last one fewer), however
    the tables come cut: the file's bytes depend on the rows only, not on how a producer batched them.
    Holds at most one row group's rows."""

    def __init__(self, writer: pq.ParquetWriter, rows: int):
        self.writer, self.rows, self.pending = writer, rows, []

    def write(self, table: pa.Table) -> None:
        self.pending.append(table)
        held = sum(t.num_rows for t in self.pending)
        if held >= self.rows:
            table = pa.concat_tables(self.pending)
            full = held - held % self.rows
            self.writer.write_table(table.slice(0, full), row_group_size=self.rows)
            self.pending = [table.slice(full)]

    def close(self) -> None:
        rest = pa.concat_tables(self.pending) if self.pending else None
        if rest is not None and rest.num_rows:
            self.writer.write_table(rest, row_group_size=self.rows)
        self.pending = []


def _leaf_paths(schema: pa.Schema) -> list[str]:
    """Dotted column paths as parquet names them (list items as `list.element`)."""
    def walk(prefix: str, t: pa.DataType) -> Iterator[str]:
        if pa.types.is_struct(t):
            for f in t:
                yield from walk(f"{prefix}.{f.name}", f.type)
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            yield from walk(f"{prefix}.list.element", t.value_type)
        else:
            yield prefix

    return [p for f in schema for p in walk(f.name, f.type)]
