"""S3 inputs (`inputs.<split>: s3://bucket/prefix`): listed and read in place with pyarrow's S3 file
system, by the stage process and by every worker (local or Ray), never copied whole to a local disk.
The endpoint comes from AWS_ENDPOINT_URL (an S3-compatible server; unset: AWS), the credentials and
region from the usual AWS_* variables, as for `dvc` and boto3."""
from __future__ import annotations

import functools
import os
import posixpath

import pyarrow.fs as pafs

SCHEME = "s3://"


def is_s3(path) -> bool:
    return str(path).startswith(SCHEME)


@functools.lru_cache(maxsize=1)
def s3() -> pafs.S3FileSystem:
    # Per process (a forked or Ray worker builds its own): pyarrow's S3 client holds connections.
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    scheme = "http" if endpoint and endpoint.startswith("http://") else "https"
    host = endpoint.split("://", 1)[-1] if endpoint else None
    return pafs.S3FileSystem(endpoint_override=host, scheme=scheme, region=region)


def key(path: str) -> str:
    """bucket/key, as pyarrow names S3 objects."""
    return str(path)[len(SCHEME):].rstrip("/")


def info(path: str) -> pafs.FileInfo:
    return s3().get_file_info(key(path))


def list_files(path: str, suffixes: tuple[str, ...]) -> list[str]:
    """An S3 object, or every object under a prefix with one of these suffixes, sorted."""
    found = info(path)
    if found.type == pafs.FileType.File:
        return [path]
    if found.type == pafs.FileType.NotFound:
        return []
    entries = s3().get_file_info(pafs.FileSelector(key(path), recursive=True))
    return sorted(SCHEME + e.path for e in entries if e.type == pafs.FileType.File and e.path.endswith(suffixes))


def open_input(path: str):
    return s3().open_input_file(key(path))


def read_bytes(path: str) -> bytes:
    with open_input(path) as f:
        return f.read()


def stamp(path: str) -> tuple | None:
    """Size and modification time: how a changed object shows (runner.unchanged_inputs)."""
    found = info(path)
    return None if found.type == pafs.FileType.NotFound else (found.size, found.mtime_ns)


def parent(path: str) -> str:
    return SCHEME + posixpath.dirname(key(path))


def join_under(root: str, relative: str) -> str | None:
    """root/relative, or None when that leaves root ('..', an absolute path): S3 has no symlinks, so
    the normalised key is all there is to check."""
    if relative.startswith("/"):
        return None
    joined = posixpath.normpath(posixpath.join(key(root), relative))
    return SCHEME + joined if joined.startswith(key(root) + "/") else None
