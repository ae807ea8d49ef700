"""Telling DVC the md5 of files a stage wrote, so `dvc repro` need not read them again.

After a stage, DVC hashes each of its outputs (md5, one core, ~0.7 GB/s here) before moving it into
its cache: with three image-bearing products that was most of DVC's share of a run (docs/performance.md).
The stages already follow every part they write on the second core (core/writers.EarlyWriteback), so
they compute its md5 there, while writing, and hand it to DVC through DVC's own state database, the
cache of known hashes DVC consults before hashing a file (`Repo.state`, dvc-data's State). DVC keys an
entry by the file's inode, mtime and size, as seen when the entry is saved: a file changed afterwards no
longer matches it and DVC hashes that file itself, so an entry is never trusted for other bytes.

Only under `dvc repro` (DVC_ROOT in the environment, set by DVC for every stage command) and only for
outputs large enough to pay for opening DVC (~0.5 s: below MIN_BYTES DVC's own hashing is cheaper).
Anything that goes wrong here costs only time: DVC then hashes the files as it always did."""
from __future__ import annotations

import logging
import os
from pathlib import Path

# DVC hashes ~256 MB in the time it takes to import it and open its state (measured: 0.45 s).
MIN_BYTES = 256 << 20

log = logging.getLogger(__name__)


def wants_hashes() -> bool:
    """Whether DVC runs this stage (and would take its outputs' md5s): outside `dvc repro` the stages
    do not spend the CPU on them."""
    return bool(os.environ.get("DVC_ROOT"))


def record_hashes(md5s: dict[Path, str]) -> bool:
    """Save {path: md5 hex} as DVC's known hashes of these files (module docstring). Returns whether
    it did; relative paths are from the working directory (DVC runs a stage in its wdir)."""
    root = os.environ.get("DVC_ROOT")
    md5s = {p: md5 for p, md5 in md5s.items() if md5}  # "": not computed (e.g. a Ray worker without DVC_ROOT)
    if not root or not md5s or sum(_size(p) for p in md5s) < MIN_BYTES:
        return False
    try:
        from dvc.repo import Repo
        from dvc_data.hashfile.hash_info import HashInfo
        from dvc_objects.fs import LocalFileSystem

        repo = Repo(root)
        try:
            items = [(os.path.abspath(p), HashInfo("md5", md5), None) for p, md5 in md5s.items()]
            repo.state.save_many(items, LocalFileSystem())
        finally:
            repo.close()
        return True
    except Exception as e:  # an optimisation only: DVC hashes the files itself
        log.debug("DVC's state not updated (%s): DVC will hash the outputs itself", e)
        return False


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
