"""Every output's columns, declared once, as `datasets` feature dicts (the JSON form `Features.to_dict()`
gives and `Features.from_dict()` reads). The Arrow schemas are derived from them here, so the HF feature
metadata and the physical schema cannot disagree; tests check both against `datasets` itself. Declared
as plain dicts so stages do not import `datasets` (~0.5 s a process) only to name their columns."""
from __future__ import annotations

import json

import pyarrow as pa

# Raw columns a stage cannot work without; the others are optional and filled with null.
RAW_REQUIRED = ("images", "question", "options", "answer_label")
RAW_COLUMNS = [*RAW_REQUIRED, "answer", "reasoning", "dataset_name", "dataset_index", "hash", "misc"]

STRING = {"dtype": "string", "_type": "Value"}
INT64 = {"dtype": "int64", "_type": "Value"}


def list_of(feature: dict) -> dict:
    return {"feature": feature, "_type": "List"}


def image(decode: bool = True) -> dict:
    # datasets omits decode when it is the default (True).
    return {"_type": "Image"} if decode else {"decode": False, "_type": "Image"}


def arrow_type(feature: dict) -> pa.DataType:
    """The Arrow type `datasets` stores a feature as (only the feature kinds this project uses)."""
    kind = feature.get("_type")
    if kind == "Value":
        return pa.type_for_alias(feature["dtype"])
    if kind == "List":
        return pa.list_(arrow_type(feature["feature"]))
    if kind == "Image":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    if kind is None:  # a dict of features is a struct
        return pa.struct([(name, arrow_type(f)) for name, f in feature.items()])
    raise ValueError(f"unsupported feature {feature}")


def arrow_schema(features: dict) -> pa.Schema:
    """The schema `Features(...).arrow_schema` gives: columns plus the `huggingface` metadata through
    which readers (datasets, TRL) recover Image features from plain Arrow/parquet."""
    metadata = {"huggingface": json.dumps({"info": {"features": features}})}
    return pa.schema([(name, arrow_type(f)) for name, f in features.items()], metadata=metadata)


HF_BYTES_FEATURES = {
    # decode=False: consumers get the original encoded bytes, never a re-encoded copy.
    "images": list_of(image(decode=False)),
    "question": STRING,
    "options": STRING,  # JSON object, ensure_ascii=False, nulls removed
    "answer_label": STRING,
    "answer": STRING,
    "reasoning": STRING,
    "dataset_name": STRING,
    "dataset_index": INT64,
    "hash": STRING,
    "misc": STRING,
    "question_type": STRING,  # mcq | open | yesno (open and yesno rows have null options and answer_label)
}
HF_BYTES_SCHEMA = arrow_schema(HF_BYTES_FEATURES)

IMAGES_TYPE = arrow_type(list_of(image()))

# verl: the row format RLHFDataset reads with prompt_key=prompt, image_key=images (docs/formats.md, verl).
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
                    ("question_type", pa.string()),  # mcq | open | yesno: how the reward should score
                ]
            ),
        ),
    ]
)

# TRL: hf_bytes columns + conversation + token budget. Message parts carry only `type` and `text`:
# Arrow gives every struct all fields, and an extra (even null) `image` field makes TRL miscount images.
TRL_FEATURES = {
    **{name: feature for name, feature in HF_BYTES_FEATURES.items() if name != "images"},
    # decode=True in the metadata: load_dataset("parquet") yields PIL images, as TRL's collator needs.
    "images": list_of(image()),
    "messages": list_of({"role": STRING, "content": list_of({"type": STRING, "text": STRING})}),
    "text": STRING,
    "prompt_tokens": INT64,
    "image_tokens": INT64,
    "total_tokens": INT64,  # prompt + images + response, as the model sees the sequence
}
TRL_SCHEMA = arrow_schema(TRL_FEATURES)

# LLaMA-Factory ("sharegpt" layout) and ms-swift: string message contents, one literal <image> per image
# in the user turn (both loaders place images[i] at the i-th marker), and the images. The hf_bytes
# columns a reward function or a collator may need are kept, as are the token counts.
STRING_MESSAGES = list_of({"role": STRING, "content": STRING})
PASSTHROUGH_FEATURES = {  # targets.MARKER_PASSTHROUGH
    name: HF_BYTES_FEATURES[name] for name in ("question", "options", "answer_label", "answer", "dataset_name", "dataset_index")
}
# SFT: user + assistant turn (LLaMA-Factory, ms-swift `swift sft`).
MARKER_SFT_FEATURES = {
    "messages": STRING_MESSAGES,
    "images": list_of(image()),
    **PASSTHROUGH_FEATURES,
    "prompt_tokens": INT64,
    "image_tokens": INT64,
    "total_tokens": INT64,
}
LLAMAFACTORY_FEATURES = MARKER_SFT_FEATURES
LLAMAFACTORY_SCHEMA = arrow_schema(LLAMAFACTORY_FEATURES)
SWIFT_FEATURES = MARKER_SFT_FEATURES
SWIFT_SCHEMA = arrow_schema(SWIFT_FEATURES)
# GRPO (`swift rlhf --rlhf_type grpo`): the user turn only; every other column reaches the reward
# functions as a keyword argument: `solution` (ms-swift's name for the reference: the correct letter),
# `answer_label`, `answer` (its text) and `options`.
SWIFT_GRPO_FEATURES = {
    "messages": STRING_MESSAGES,
    "images": list_of(image()),
    "solution": STRING,
    **PASSTHROUGH_FEATURES,
    "prompt_tokens": INT64,
    "image_tokens": INT64,
}
SWIFT_GRPO_SCHEMA = arrow_schema(SWIFT_GRPO_FEATURES)

# Each target's rows, by its name in core/targets.py (the targets' modules use the same objects).
TARGET_SCHEMAS = {
    "verl": VERL_SCHEMA,
    "trl": TRL_SCHEMA,
    "llamafactory": LLAMAFACTORY_SCHEMA,
    "swift": SWIFT_SCHEMA,
    "swift_grpo": SWIFT_GRPO_SCHEMA,
}

# Rejects: one row per dropped row, per stage and split (data/rejects/<stage>/<split>.parquet), so a
# user can find and fix the rows. `source` and `row` locate it: the raw file and the row within it
# (hf_bytes), or the hf_bytes split directory and the row's position in it (verl, trl).
REJECTS_SCHEMA = pa.schema(
    [
        ("stage", pa.string()),
        ("split", pa.string()),
        ("source", pa.string()),
        ("row", pa.int64()),
        ("dataset_name", pa.string()),
        ("dataset_index", pa.int64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)
