"""Target `swift`: hf_bytes rows -> ms-swift `swift sft` conversations (docs/formats.md, ms-swift): the
string-message SFT row (targets.base.marker_sft_row), as LLaMA-Factory's."""
from __future__ import annotations

from vlprep.core.schema import SWIFT_SCHEMA
from vlprep.targets.base import TrainerTarget, marker_sft_row

TARGET = TrainerTarget("swift", SWIFT_SCHEMA, with_response=True, row_fn=marker_sft_row)
