"""Build raw parquet inputs for tests: good rows by default, bad ones by override."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def png(width: int = 40, height: int = 30, color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(width: int = 40, height: int = 30, color=(30, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def row(**overrides) -> dict:
    """A valid raw row; keyword arguments replace fields."""
    base = {
        "images": [png(), jpeg()],
        "question": "Which option is correct?",
        "options": {"A": "alpha", "B": "beta", "C": "gamma"},
        "answer_label": "B",
        "answer": "beta",
        "reasoning": "Because beta.",
        "dataset_name": "unit",
        "dataset_index": 0,
        "hash": "h0",
        "misc": json.dumps({"k": 1}),
    }
    base.update(overrides)
    return base


def write_raw(path: Path, rows: list[dict], schema: pa.Schema | None = None, row_group_size: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def png_declaring(width: int, height: int) -> bytes:
    """A ~100-byte PNG whose header claims width x height: a decompression bomb."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def noisy(fmt: str, size: int = 64) -> bytes:
    """Incompressible pixels, so a truncated copy really misses image data."""
    import numpy as np

    buf = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()
