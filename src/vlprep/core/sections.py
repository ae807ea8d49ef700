"""The models of params.yaml's sections: one per section, the one place that knows every key, its type and
its allowed values (core/params.py reads params.yaml and validates a section with them). Strict and closed:
unknown keys are errors (a typo must not silently fall back to a default), and no key has a code default,
so params.yaml is the only source of values (dvc.yaml tracks exactly these sections)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


class EngineParams(Section):
    """Where a stage's work runs and how its output is cut (docs/ray.md): the output is the
    same bytes whichever engine and however many workers run it."""

    engine: Literal["local", "ray"]
    ray_address: str | None  # a Ray cluster (host:port, auto); null = RAY_ADDRESS, else Ray in this process
    part_rows: PositiveInt  # an output part holds the rows of whole input units adding up to this many


# Keys that change where and how the work runs, or how the output is cut into files, never a row: left
# out of the cards' "built with" params.
SCHEDULING_KEYS = {"num_proc", "engine", "ray_address", "part_rows"}


class HfBytesParams(EngineParams):
    keep_first_k_images: NonNegativeInt | None  # 0 or null = keep all
    strict_image: bool  # drop rows left with no valid image
    bad_image: Literal["drop_row", "drop_image"]
    max_image_pixels: PositiveInt
    image_root: str | None  # where path images may be read from; null = each input file's directory
    # Question types kept (derived per row: options -> mcq; none -> open, or yesno for a yes/no answer);
    # the others are dropped as question_type_excluded. [mcq] keeps only multiple-choice rows.
    question_types: Annotated[list[Literal["mcq", "open", "yesno"]], Field(min_length=1)]
    # Image pre-flight (src/vlprep/io/preflight.py): 16-bit / 32-bit / float images are mapped to 8 bits
    # linearly from the low to the high percentile of their own values (0, 100 = min..max: nothing clips)
    high_bit_depth_window: Annotated[list[Annotated[float, Field(ge=0, le=100)]], Field(min_length=2, max_length=2)]
    background: Annotated[list[Annotated[int, Field(ge=0, le=255)]], Field(min_length=3, max_length=3)]  # RGB under transparency
    blank_image: Literal["keep", "drop"]  # one pixel value throughout: keep (counted images_blank) | drop (image_blank)
    # A size model.profile's processors cannot take (aspect ratio above its limit, a side below one patch after
    # its resize): drop (image_aspect_ratio / image_side_below_patch) | pad (background added, counted images_padded)
    unfit_image: Literal["drop", "pad"]
    num_proc: PositiveInt

    @model_validator(mode="after")
    def _window_ordered(self):
        low, high = self.high_bit_depth_window
        if not low < high:
            raise ValueError(f"high_bit_depth_window: low percentile {low} must be below high {high}")
        return self


# The presets src/vlprep/ingest/presets.py defines (a test keeps the two equal). Named here, not imported, so
# that sections.py (which every stage imports) does not make every stage depend on the presets' code.
PRESET_NAMES = ("reference", "pmc_vqa", "slake", "vqa_rad", "path_vqa", "omnimedvqa", "medxpertqa")
MAPPED_FIELDS = ("question", "answer_label", "answer", "reasoning", "dataset_name", "dataset_index", "hash")


class ColumnMapping(Section):
    """Which source column holds what (inputs.<split>[i].columns, or a preset): turns a source row into
    the reference raw row (docs/formats.md §1). Keys left out mean "the data has no such column"; the
    optional keys below have defaults because a mapping names only what its source has."""

    question: str
    # Images: exactly one of a list column, a one-image column (bytes, {bytes, path} struct or a path),
    # or several one-image columns (in order; null cells skipped).
    images: str | None = None
    image: str | None = None
    image_columns: Annotated[list[str], Field(min_length=1)] | None = None
    # Options: at most one source; none at all makes every row open-ended (open / yesno).
    options: str | None = None  # a dict / struct / map / JSON object column (the reference form)
    option_list: str | None = None  # a list (or JSON array) column: letters A, B, C... in order
    option_columns: dict[str, str] | Annotated[list[str], Field(min_length=1)] | None = None  # letter -> column, or columns for A, B, C...
    options_in_question: bool = False  # parse "A: ... B: ..." / "(A) ... (B) ..." out of the question text
    strip_option_prefix: bool = False  # drop an option's own letter prefix from its text ("B: x" -> "x")
    strip_question_options: bool = False  # remove an embedded options block from the question (options come from a column)
    answer_label: str | None = None
    label_form: Literal["letter", "index0", "index1", "text"] = "letter"
    answer: str | None = None
    answer_conflict: Literal["keep", "drop"] = "keep"  # drop rows whose answer text is another option's text
    reasoning: str | None = None
    dataset_name: str | None = None
    dataset_index: str | None = None
    hash: str | None = None
    misc: str | list[str] | None = None  # a column as is, or several columns as one JSON object
    optional: list[str] = []  # mapped columns the files may lack (read as null)

    @model_validator(mode="after")
    def _consistent(self):
        image_sources = [k for k in ("images", "image", "image_columns") if getattr(self, k) is not None]
        if len(image_sources) != 1:
            raise ValueError(f"give exactly one of images / image / image_columns (got {image_sources or 'none'})")
        option_sources = [k for k in ("options", "option_list", "option_columns") if getattr(self, k) is not None]
        option_sources += ["options_in_question"] if self.options_in_question else []
        if len(option_sources) > 1:
            raise ValueError(f"give at most one options source (got {option_sources})")
        if option_sources and self.answer_label is None and self.answer is None:
            raise ValueError("multiple-choice mapping needs answer_label or answer")
        if not option_sources and self.answer is None:
            raise ValueError("open-ended mapping (no options) needs answer")
        if self.label_form != "letter" and self.answer_label is None:
            raise ValueError("label_form needs answer_label")
        if self.strip_question_options and (self.options_in_question or not option_sources):
            raise ValueError("strip_question_options needs options from a column")
        unknown = sorted(set(self.optional) - set(self.columns()))
        if unknown:
            raise ValueError(f"optional names columns the mapping does not map: {unknown}")
        return self

    def option_source(self) -> str | None:
        for key in ("options", "option_list", "option_columns"):
            if getattr(self, key) is not None:
                return key
        return "options_in_question" if self.options_in_question else None

    def columns(self) -> list[str]:
        """Every source column the mapping reads, in a stable order."""
        cols = [getattr(self, k) for k in (*MAPPED_FIELDS, "images", "image", "options", "option_list")]
        cols += list(self.image_columns or [])
        oc = self.option_columns
        cols += list(oc.values() if isinstance(oc, dict) else oc or [])
        cols += [self.misc] if isinstance(self.misc, str) else list(self.misc or [])
        return list(dict.fromkeys(c for c in cols if c is not None))


class InputEntry(Section):
    """One element of inputs.<split> in list form: files with their mapping (a preset or columns)."""

    path: str  # a file, a directory (its files of the entry's format), a glob, or a comma list
    preset: Literal[PRESET_NAMES] | None = None
    columns: ColumnMapping | None = None
    format: Literal["parquet", "csv", "json", "jsonl"] | None = None  # default: the file extension, else the preset's
    image_root: str | None = None  # where relative image paths resolve (default hf_bytes.image_root, else the file's dir)
    name: str | None = None  # dataset_name of rows that have none

    @model_validator(mode="after")
    def _one_mapping(self):
        if (self.preset is None) == (self.columns is None):
            raise ValueError("give exactly one of preset / columns")
        return self


class TokenizerParams(Section):
    out: str


# The model profiles src/vlprep/prompting/profiles.py defines (a test keeps the two equal), named here
# so that sections.py does not import them.
PROFILE_NAMES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


# The model keys hf_bytes reads too (its image pre-flight checks sizes against them): dvc.yaml lists these
# alone, so another tokenizer does not rerun hf_bytes.
HF_BYTES_MODEL_KEYS = ("profile", "max_pixels")


class ModelParams(Section):
    """The model every target is built for: its tokenizer and its image processor's arithmetic (a profile:
    patch and merge size, pixel and aspect limits). Read by every target, and by hf_bytes for the sizes
    its image pre-flight lets through (HF_BYTES_MODEL_KEYS only)."""

    profile: Literal[PROFILE_NAMES]
    tokenizer: str  # a local dir (the default: the Qwen2.5-VL tokenizer built offline) or a hub id
    # The processor's pixel limits (its config's min_pixels / max_pixels); null = the profile's defaults.
    min_pixels: PositiveInt | None
    max_pixels: PositiveInt | None


class TargetParams(EngineParams):
    """What every trainer target section holds (one section per target, read by its stages only)."""

    # Re-encode only images above model.max_pixels, to the size the processor would resize them to.
    resize_to_max_pixels: bool
    row_group_size: PositiveInt
    num_proc: PositiveInt
    # Answer-letter balance of the train split (docs/selection.md#answer-letter-balance): `permute` moves each
    # row's correct option to a position drawn uniformly from its options, seeded by rebalance_seed.
    rebalance: Literal["none", "permute"]
    rebalance_seed: int


class SftParams(TargetParams):
    # What the assistant turn teaches: `reasoning`: <think>reasoning</think><answer>..</answer>, rows
    # without reasoning dropped (reasoning_missing); `answer`: an empty <think></think>, then the answer;
    # `auto`: the first where the row has reasoning, else the second (counted as response_<mode>).
    response: Literal["auto", "reasoning", "answer"]
    max_total_tokens: PositiveInt | None  # prompt + images + response; null = keep all


class VerlParams(TargetParams):
    data_source: str
    ability: str
    max_prompt_tokens: PositiveInt | None
    shuffle: bool
    seed: int
    max_rows: NonNegativeInt | None


class TrlParams(SftParams):
    pass


class LlamaFactoryParams(SftParams):
    # LLaMA-Factory resizes every image into these bounds before the model's processor sees it (its own
    # keys, defaults 768*768 and 32*32): token counts and the overlong filter follow; set the same values
    # in the training YAML.
    image_max_pixels: PositiveInt
    image_min_pixels: PositiveInt


class SwiftParams(SftParams):
    pass


class SwiftGrpoParams(TargetParams):
    max_prompt_tokens: PositiveInt | None  # prompt + images; null = keep all


# Split names: what a directory and a DVC stage name can hold.
SplitName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class TargetsParams(Section):
    """Which splits each target builds; [] switches a target off. Every target of core/targets.py is
    listed (dvc.yaml iterates over each list), and a listed split must be one of `inputs`. The names are
    written here, not imported, so that every stage does not depend on the target table (a test keeps
    the two equal, as it does ExportParams' products)."""

    verl: list[SplitName]
    trl: list[SplitName]
    llamafactory: list[SplitName]
    swift: list[SplitName]
    swift_grpo: list[SplitName]


class AuditParams(Section):
    """Contamination audit (docs/audit.md)."""

    near_image_max_distance: Annotated[int, Field(ge=0, lt=32)]  # candidates: bits between 64-bit perceptual hashes
    near_image_layout_distance: Annotated[int, Field(ge=0, lt=32)]  # candidates: bits between 64-bit layout hashes
    near_image_min_structure: Annotated[float, Field(ge=0, le=1)]  # confirmation: registered detail correlation
    near_image_max_contrast: Annotated[float, Field(ge=1)]  # confirmation: ratio of luma standard deviations
    near_image_max_colour: Annotated[float, Field(ge=0)]  # confirmation: mean |dCb| + |dCr|, 0-255 levels
    image_hash: Literal["phash", "dhash"]
    near_item_threshold: Annotated[float, Field(gt=0, le=1)]  # estimated Jaccard of questions (and options)
    template_min_images: Annotated[int, Field(ge=2)]  # a question asked of this many distinct images is a template
    num_perm: PositiveInt  # MinHash permutations
    shingle: PositiveInt  # words per shingle
    seed: int
    max_pairs_per_row: PositiveInt  # pairs written per train row and kind (counts use all)
    num_proc: PositiveInt
    index_rows: PositiveInt  # train rows per in-memory index block (memory, not results)
    hash_cache_images: NonNegativeInt  # image fingerprints kept per process for repeated images (time, not results)
    # verl/trl train outputs leave out train rows matching a test row (stage select; not read by audit)
    drop_train_contaminated: bool


class ReferenceParams(Section):
    """One benchmark the audit matches train against (audit.references.<name>; docs/curation.md): files read
    like inputs.<split> in list form, and the file or directory DVC tracks for them (like input_data)."""

    data: str  # the file or directory holding every entry's files and images: the stage's DVC dependency
    entries: Annotated[list[InputEntry], Field(min_length=1)]


class AuditSection(AuditParams):
    """The whole `audit` section: the audit's own keys (AuditParams, what the `audit` stage and AuditRun
    read) plus the benchmark references, read by the reference stages and select only."""

    references: dict[SplitName, ReferenceParams]  # name -> benchmark; {} = none (no reference stage exists)
    # select leaves out the train rows matching a reference row (reference_<kind>), like drop_train_contaminated
    drop_train_referenced: bool

    def matching(self) -> AuditParams:
        """The keys AuditRun reads (its metrics list them), without the references."""
        return AuditParams.model_validate(self.model_dump(include=set(AuditParams.model_fields)))


class CurationParams(Section):
    """Curation from rollouts (stages curation@<split> and select; docs/curation.md)."""

    # split -> a rollouts file (JSONL or parquet: `index`, `response` and/or `score`, optional `sample`,
    # `dataset_name`, `dataset_index`) of that split's verl rows; {} = off (no curation stage exists)
    rollouts: dict[SplitName, str]
    # reward kwargs compute_score is called with (as in training), and the score at which a response passes
    format_weight: Annotated[float, Field(ge=0, le=1)]
    require_format: bool
    pass_score: Annotated[float, Field(ge=0, le=1)]
    # keep the items whose pass rate is within [lo, hi] (inclusive); null = no band
    pass_rate: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=2, max_length=2)] | None
    order: Literal["none", "easy_to_hard", "hard_to_easy"]
    control: bool  # true: keep as many rows as the band, drawn at random (seeded) from the rolled-out ones
    seed: int  # the control draw and the order's tie-break

    @model_validator(mode="after")
    def _band_ordered(self):
        if self.pass_rate is not None and self.pass_rate[0] > self.pass_rate[1]:
            raise ValueError(f"pass_rate: low {self.pass_rate[0]} must not be above high {self.pass_rate[1]}")
        if self.control and self.pass_rate is None:
            raise ValueError("control: true needs a pass_rate band (the control has the band's size)")
        return self


class MixtureParams(Section):
    """Weighted mixture of dataset_name sources (stage select; docs/curation.md)."""

    weights: dict[str, Annotated[float, Field(gt=0)]]  # dataset_name -> weight; {} = off; unlisted sources are left out
    # total rows; null = the most rows the weights allow without repeating a row ("all of the smallest").
    # Not called `size` (see SubsetParams.rows).
    rows: PositiveInt | None
    upsample: bool  # allow repeating a source's rows to reach its share (else a share above its rows is an error)
    seed: int
    splits: list[str]


class SubsetParams(Section):
    """A seeded subset of rows the targets are built from (stage select; docs/selection.md#seeded-subsets)."""

    # rows per split in `splits`; null = all rows. Not called `size`: DVC's run cache leaves any key named
    # size or nfiles out of a stage's key (dvc.stage.cache), so `dvc repro`/`dvc exp run` would restore the
    # outputs of a run with another size (tests/test_selection_rebalance.py checks params.yaml for such keys).
    rows: PositiveInt | None
    seed: int
    stratify: bool  # proportional to dataset_name (Sainte-Laguë rounding); nested like the plain subset
    splits: list[str]  # the splits it applies to


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
    # hf_bytes or any target (core/targets.py) the params build; empty: the export stage does not exist
    products: list[Literal["hf_bytes", "verl", "trl", "llamafactory", "swift", "swift_grpo"]]
    rows_per_shard: PositiveInt


SECTIONS: dict[str, type[Section]] = {
    "raw": RawParams,
    "hf_bytes": HfBytesParams,
    "tokenizer": TokenizerParams,
    "model": ModelParams,
    "targets": TargetsParams,
    "verl": VerlParams,
    "trl": TrlParams,
    "llamafactory": LlamaFactoryParams,
    "swift": SwiftParams,
    "swift_grpo": SwiftGrpoParams,
    "audit": AuditSection,
    "curation": CurationParams,
    "mixture": MixtureParams,
    "subset": SubsetParams,
    "card": CardParams,
    "preview": PreviewParams,
    "export": ExportParams,
}
