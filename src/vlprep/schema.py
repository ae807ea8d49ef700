"""Every output's columns, declared once. Arrow schemas are derived from these datasets Features, so
the HF feature metadata and the physical schema cannot disagree."""
from __future__ import annotations

import pyarrow as pa
from datasets import Features, Image, List, Value

# Raw columns a stage cannot work without; the others are optional and filled with null.
RAW_REQUIRED = ("images", "question", "options", "answer_label")
RAW_COLUMNS = [*RAW_REQUIRED, "answer", "reasoning", "dataset_name", "dataset_index", "hash", "misc"]

HF_BYTES_FEATURES = Features(
    {
        # decode=False: consumers get the original encoded bytes, never a re-encoded copy.
        "images": List(Image(decode=False)),
        "question": Value("string"),
        "options": Value("string"),  # JSON object, ensure_ascii=False, nulls removed
        "answer_label": Value("string"),
        "answer": Value("string"),
        "reasoning": Value("string"),
        "dataset_name": Value("string"),
        "dataset_index": Value("int64"),
        "hash": Value("string"),
        "misc": Value("string"),
    }
)
HF_BYTES_SCHEMA = HF_BYTES_FEATURES.arrow_schema

IMAGES_TYPE = pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
