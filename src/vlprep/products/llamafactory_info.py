"""LLaMA-Factory's dataset_info.json (data/dataset_info.json): one entry `vlprep_<split>` per built
llamafactory split directory, so `dataset_dir: data` and `dataset: vlprep_train` (`eval_dataset:
vlprep_test`) are all a user types. LLaMA-Factory reads every file of a `file_name` directory (they must
share one extension: the parts are all parquet). Written by the card stage, from `targets.llamafactory`;
`{}` when the target is off."""
from __future__ import annotations

# How LLaMA-Factory's "sharegpt" converter reads our columns (data/llamafactory/<split>/part-*.parquet).
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
    """{"vlprep_<split>": {"file_name": "llamafactory/<split>", ...}} for each split, in order (relative to
    data/, where the file is)."""
    return {dataset_name(split): {"file_name": f"llamafactory/{split}", **SHAREGPT} for split in splits}
