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

# verl: the row format RLHFDataset reads with prompt_key=prompt, image_key=images (SPEC §3).
VERL_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("images", IMAGES_TYPE),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        (
            "extra_info",
            pa.struct(
                [
                    ("split", pa.string()),
                    ("index", pa.int64()),  # row position in the hf_bytes split: stable, unique
                    ("question", pa.string()),
                    ("options", pa.string()),
                    ("answer_label", pa.string()),
                    ("answer", pa.string()),
                    ("dataset_name", pa.string()),
                    ("dataset_index", pa.int64()),
                    ("prompt_tokens", pa.int64()),  # text tokens of the rendered prompt, image pads excluded
                    ("image_tokens", pa.int64()),  # sum over images of Qwen2-VL's (h/28)*(w/28)
                ]
            ),
        ),
    ]
)

# TRL: hf_bytes columns + conversation + token budget. Message parts carry only `type` and `text`:
# Arrow gives every struct all fields, and an extra (even null) `image` field makes TRL miscount images.
_PART = {"type": Value("string"), "text": Value("string")}
TRL_FEATURES = Features(
    {
        **{name: feature for name, feature in HF_BYTES_FEATURES.items() if name != "images"},
        # decode=True in the metadata: load_dataset("parquet") yields PIL images, as TRL's collator needs.
        "images": List(Image()),
        "messages": List({"role": Value("string"), "content": List(_PART)}),
        "text": Value("string"),
        "prompt_tokens": Value("int64"),
        "image_tokens": Value("int64"),
        "total_tokens": Value("int64"),  # prompt + images + response, as the model sees the sequence
    }
)
TRL_SCHEMA = TRL_FEATURES.arrow_schema
