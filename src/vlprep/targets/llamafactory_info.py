"""LLaMA-Factory's dataset_info.json for data/llamafactory: one entry `vlprep_<split>` per split file, so
`dataset_dir: data/llamafactory` and `dataset: vlprep_train` (`eval_dataset: vlprep_test`) are all a
user types. Written by its own small stage (`llamafactory_info`, reading only llamafactory.splits), since
the per-split stages cannot share an output."""
from __future__ import annotations

# How LLaMA-Factory's "sharegpt" converter reads our columns (data/llamafactory/<split>.parquet).
SHAREGPT = {
    "formatting": "sharegpt",
    "columns": {"messages": "messages", "images": "images"},
    "tags": {
        "role_tag": "role",
        "content_tag": "content",
        "user_tag": "user",
        "assistant_tag": "assistant",
        "system_tag": "system",
    },
}


def dataset_name(split: str) -> str:
    return f"vlprep_{split}"


def dataset_info(splits: list[str]) -> dict:
    """{"vlprep_<split>": {"file_name": "<split>.parquet", ...}} for each split, in order."""
    return {dataset_name(split): {"file_name": f"{split}.parquet", **SHAREGPT} for split in splits}
