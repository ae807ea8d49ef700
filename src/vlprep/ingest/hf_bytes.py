"""Stage core: raw rows -> hf_bytes rows (docs/formats.md, hf_bytes). `convert_row` is the whole output
row; `convert_unit` the pure function the executor runs per raw row group."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from vlprep.engine.batches import map_rows
from vlprep.io.preflight import Preflight, ShapeCheck, preflight_image
from vlprep.ingest.mapping import Input, apply_mapping, image_root
from vlprep.core.metrics import Rejected, StageStats
from vlprep.core.sections import HfBytesParams, ModelParams
from vlprep.ingest.records import normalize_text_fields
from vlprep.core.schema import HF_BYTES_SCHEMA, RAW_COLUMNS
from vlprep.io.sources import RowGroup, read_rows
from vlprep.io.text_sources import TextChunk
from vlprep.prompting.profiles import ModelProfile, get_profile


def image_limits(model: ModelParams) -> ModelProfile:
    """The sizes the model's processors take, from the keys hf_bytes reads (core/sections.py
    HF_BYTES_MODEL_KEYS): its profile, and max_pixels, which can squeeze a thin image's side away."""
    return get_profile(model.profile, max_pixels=model.max_pixels)


def preflight_of(config: HfBytesParams, shape: ShapeCheck | None = None) -> Preflight:
    """The image pre-flight the params ask for (io/preflight.py: what the trainers' processors would
    misread is fixed here, once, so every target inherits it); `shape`: the model's size limits
    (image_limits), None to leave sizes unchecked."""
    return Preflight(tuple(config.high_bit_depth_window), tuple(config.background), config.blank_image, shape,
                     config.unfit_image)


def convert_row(row: dict, config: HfBytesParams, root: Path | None, stats: StageStats,
                shape: ShapeCheck | None = None) -> dict:
    """One raw row -> one hf_bytes row; raises Rejected with the drop reason."""
    clean = normalize_text_fields(row, stats.counts)
    if clean["question_type"] not in config.question_types:
        raise Rejected("question_type_excluded", clean["question_type"])
    raw_images = row.get("images")
    if raw_images is None:
        raw_images = []
    elif not isinstance(raw_images, (list, tuple)):
        raw_images = [raw_images]  # a single image where a list was expected
    stats.counts["images_in"] += len(raw_images)
    k = config.keep_first_k_images
    if k and len(raw_images) > k:
        # Truncate before validating: an image we would not keep must not cost time or drop the row.
        stats.counts["images_truncated_by_k"] += len(raw_images) - k
        raw_images = raw_images[:k]
    images = []
    preflight = preflight_of(config, shape)
    for value in raw_images:
        try:
            images.append(preflight_image(value, root, preflight, config.max_image_pixels))
        except Rejected as e:
            if config.bad_image == "drop_row":
                raise  # a question about "the second image" is unanswerable without it
            stats.counts[f"images_dropped_{e.reason}"] += 1
    if not images and config.strict_image:
        raise Rejected("no_image" if not raw_images else "no_valid_image")
    stats.counts["images_out"] += len(images)
    for image in images:  # counted for kept rows only, like images_out; a counter exists once it counts
        for fix in image.fixes:
            stats.counts[f"images_{fix}"] += 1
        if image.fixes:
            stats.counts["images_rewritten"] += 1
        if image.blank:
            stats.counts["images_blank"] += 1
    stats.counts["bytes_out"] += sum(len(i.data) for i in images)
    stats.observe("images_per_row", len(images))
    return {"images": [{"bytes": i.data, "path": None} for i in images], **clean}


def convert_unit(unit: RowGroup | TextChunk, config: HfBytesParams, inputs: tuple[Input, ...] | None = None,
                 shape: ShapeCheck | None = None) -> tuple[pa.Table, StageStats]:
    """One raw unit (a parquet row group, a chunk of CSV/JSON rows) -> hf_bytes rows: the unit the
    executor schedules (and Ray could map). With `inputs` (list-form inputs.<split>), each row first goes
    through its entry's mapping; without, rows are in the reference schema (a plain string spec).
    `shape`: the model's size limits (image_limits; the stage always passes them)."""
    inp = inputs[unit.entry] if inputs else None
    root = image_root(inp, config.image_root, unit.path)

    if inp is None:
        def row_fn(row: dict, index: int, stats: StageStats) -> dict:
            return convert_row(row, config, root, stats, shape)

        return map_rows(read_rows(unit, RAW_COLUMNS), row_fn, HF_BYTES_SCHEMA, unit.path, unit.first_row)

    def mapped_row_fn(row: dict, index: int, stats: StageStats) -> dict:
        return convert_row(apply_mapping(row, inp), config, root, stats, shape)

    return map_rows(read_rows(unit, inp.mapping.columns()), mapped_row_fn, HF_BYTES_SCHEMA, unit.path, unit.first_row)


class DuplicateIndexCounter:
    """Counts rows whose (dataset_name, dataset_index) was already seen in this split: kept, but
    duplicates inflate a source's weight, so the count is reported. Memory: one key per row (small).
    An observer of the output (parts.Observer): counted per part, wherever the part ran, then merged;
    duplicates = keyed rows - distinct keys, whatever order the parts merge in."""

    def __init__(self):
        self.seen: set = set()
        self.keyed = 0

    @property
    def duplicates(self) -> int:
        return self.keyed - len(self.seen)

    def update(self, table: pa.Table) -> None:
        for key in zip(table.column("dataset_name").to_pylist(), table.column("dataset_index").to_pylist()):
            if key[1] is not None:
                self.keyed += 1
                self.seen.add(key)

    def merge(self, other: "DuplicateIndexCounter") -> None:
        self.keyed += other.keyed
        self.seen |= other.seen

    def record(self, stats: StageStats) -> None:
        stats.counts["duplicate_dataset_index"] = self.duplicates
