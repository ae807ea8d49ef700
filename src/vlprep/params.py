"""params.yaml, validated: one model per section, the one place that knows every key, its type and its
allowed values. A stage checks its own section at start and stops with a line naming the key; unknown
keys are errors (a typo must not silently fall back to a default), and no key has a code default, so
params.yaml is the only source of values (dvc.yaml tracks exactly these sections)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PARAMS_FILE = Path("params.yaml")


class ParamsError(Exception):
    """params.yaml is missing, unreadable or has a bad key; the message names the key."""


class Section(BaseModel):
    # strict: "true" or "6" in YAML is a string, not a bool/int; extra: unknown keys are errors.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class RawParams(Section):
    """The deterministic offline sample (stage `raw`)."""

    rows: dict[str, PositiveInt]  # split -> rows
    shards: PositiveInt
    seed: int
    max_images_per_row: PositiveInt
    image_size: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]  # min and max side, pixels


class HfBytesParams(Section):
    keep_first_k_images: NonNegativeInt | None  # 0 or null = keep all
    strict_image: bool  # drop rows left with no valid image
    bad_image: Literal["drop_row", "drop_image"]
    max_image_pixels: PositiveInt
    image_root: str | None  # where path images may be read from; null = each input file's directory
    num_proc: PositiveInt


class TokenizerParams(Section):
    out: str


class BudgetParams(Section):
    """What every trainer target reads: the tokenizer and Qwen2.5-VL's image-token budget."""

    tokenizer: str  # a local dir or a hub id
    min_pixels: PositiveInt
    max_pixels: PositiveInt
    # Re-encode only images above max_pixels, to the size the processor would resize them to.
    resize_to_max_pixels: bool
    row_group_size: PositiveInt
    num_proc: PositiveInt


class VerlParams(BudgetParams):
    data_source: str
    ability: str
    max_prompt_tokens: PositiveInt | None
    shuffle: bool
    seed: int
    max_rows: NonNegativeInt | None


class TrlParams(BudgetParams):
    splits: list[str]
    max_total_tokens: PositiveInt | None


class LlamaFactoryParams(BudgetParams):
    splits: list[str]  # one data/llamafactory/<split>.parquet each, all named in its dataset_info.json
    max_total_tokens: PositiveInt | None


class SwiftParams(BudgetParams):
    splits: list[str]  # SFT: data/swift/<split>.parquet
    grpo_splits: list[str]  # GRPO: data/swift_grpo/<split>.parquet
    max_total_tokens: PositiveInt | None  # SFT: prompt + images + response
    max_prompt_tokens: PositiveInt | None  # GRPO: prompt + images


class AuditParams(Section):
    """Contamination audit (README, "Contamination audit")."""

    near_image_max_distance: Annotated[int, Field(ge=0, lt=32)]  # bits between 64-bit perceptual hashes
    image_hash: Literal["phash", "dhash"]
    near_item_threshold: Annotated[float, Field(gt=0, le=1)]  # estimated Jaccard of question+options
    num_perm: PositiveInt  # MinHash permutations
    shingle: PositiveInt  # words per shingle
    seed: int
    max_pairs_per_row: PositiveInt  # pairs written per train row and kind (counts use all)
    num_proc: PositiveInt


class CardParams(Section):
    """The dataset cards and hf_bytes' dataset_info.json."""

    pretty_name: Annotated[str, Field(min_length=1)]
    description: Annotated[str, Field(min_length=1)]
    license: Annotated[str, Field(min_length=1)]  # a Hub licence id; `other` when the sources' terms apply
    homepage: str
    citation: str


class PreviewParams(Section):
    rows_per_split: PositiveInt  # per split and target
    rejects_per_reason: NonNegativeInt  # per stage, split and reason
    seed: int


class ExportParams(Section):
    products: list[Literal["hf_bytes", "verl", "trl"]]  # empty: the export stage does not exist
    rows_per_shard: PositiveInt


SECTIONS: dict[str, type[Section]] = {
    "raw": RawParams,
    "hf_bytes": HfBytesParams,
    "tokenizer": TokenizerParams,
    "verl": VerlParams,
    "trl": TrlParams,
    "llamafactory": LlamaFactoryParams,
    "swift": SwiftParams,
    "audit": AuditParams,
    "card": CardParams,
    "preview": PreviewParams,
    "export": ExportParams,
}


def load_params(path: Path | str = PARAMS_FILE) -> dict:
    try:
        with open(path) as f:
            params = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise ParamsError(f"{path}: cannot read ({e})") from e
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: not a mapping of sections")
    return params


def validate(section: str, values, path: Path | str = PARAMS_FILE) -> Section:
    """The section's values as its model, or ParamsError naming each bad key and what it accepts."""
    try:
        return SECTIONS[section].model_validate(values)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join([section, *map(str, err["loc"])])
            got = "" if err["type"] == "missing" else f" (got {err['input']!r})"
            problems.append(f"{key}: {err['msg']}{got}")
        raise ParamsError(f"{path}: " + "; ".join(problems)) from None


def load_section(section: str, path: Path | str = PARAMS_FILE):
    params = load_params(path)
    if section not in params:
        raise ParamsError(f"{path}: section {section!r} missing")
    return validate(section, params[section], path)


def load_input(split: str, path: Path | str = PARAMS_FILE) -> str:
    """inputs.<split>: the raw input spec of one split (a glob, dir, file or comma list)."""
    inputs = load_params(path).get("inputs")
    if not isinstance(inputs, dict) or split not in inputs:
        raise ParamsError(f"{path}: inputs.{split} missing (splits: {sorted(inputs or {})})")
    spec = inputs[split]
    if not isinstance(spec, str) or not spec.strip():
        raise ParamsError(f"{path}: inputs.{split}: expected a non-empty path spec (got {spec!r})")
    return spec
