"""Target `llamafactory`: hf_bytes rows -> LLaMA-Factory "sharegpt" multimodal SFT rows (docs/formats.md,
llamafactory): the string-message SFT row (targets.base.marker_sft_row), as ms-swift's. The card stage
writes the dataset_info.json naming the split directories (products/llamafactory_info.py)."""
from __future__ import annotations

from vlprep.core.schema import LLAMAFACTORY_SCHEMA
from vlprep.targets.base import TrainerTarget, marker_sft_row

TARGET = TrainerTarget("llamafactory", LLAMAFACTORY_SCHEMA, with_response=True, row_fn=marker_sft_row)
