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
