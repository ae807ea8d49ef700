"""Target `llamafactory`: hf_bytes rows -> LLaMA-Factory "sharegpt" multimodal SFT rows (docs/formats.md,
llamafactory): the string-message SFT row (targets.marker_sft_row), as ms-swift's. The stage
`llamafactory_info` writes the dataset_info.json naming these files (vlprep.targets.llamafactory_info)."""
from __future__ import annotations

from vlprep.core.schema import LLAMAFACTORY_SCHEMA
from vlprep.targets.base import TrainerTarget, marker_sft_row

LLAMAFACTORY = TrainerTarget("llamafactory", LLAMAFACTORY_SCHEMA, with_response=True, row_fn=marker_sft_row)
