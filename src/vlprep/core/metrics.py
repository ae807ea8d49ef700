"""Drop accounting and summaries shared by every stage: each row is kept or dropped with a named reason.

The one way to drop a row: raise `Rejected(reason, detail)` from a row function (or call
`stats.drop(Rejected(...), ...)` where rows leave a stream); the reason must be one of DROP_REASONS,
which docs/failures.md#what-happens-to-bad-input lists too (a test keeps the two equal). Every drop is counted in
the stage's metrics and recorded, with the row's identity and the detail, for its rejects file."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

# reason -> what it means. A reason not listed here is a bug in the code that raises it.
DROP_REASONS = {
    # text fields (hf_bytes)
    "question_missing": "null or blank question",
    "options_missing": "null options",
    "options_malformed_json": "options string is not valid JSON",
    "options_not_mapping": "options are not a letter -> text mapping",
    "options_empty": "options mapping has no non-null entry",
    "answer_label_missing": "null or blank answer_label",
    "answer_label_not_in_options": "answer_label is not a key of options (no guessing a mapping)",
    "dataset_index_not_integer": "dataset_index is not an integer",
    "answer_missing": "no answer text where it is the truth (open question, or label taken from the answer)",
    # mapped inputs (hf_bytes, inputs.<split> entries with a preset or columns)
    "row_malformed": "a CSV row with another field count than its header, or a JSON row that is not an object",
    "options_unparseable": "options embedded in the question text without one unambiguous A, B, C... sequence",
    "answer_not_in_options": "the answer text (standing in for a label) is the text of no option, or of several",
    "answer_conflicts_with_label": "the answer text is another option's text than the label's (answer_conflict: drop)",
    "question_type_excluded": "question type (mcq / open / yesno) not in hf_bytes.question_types",
    # images (hf_bytes; with bad_image: drop_image only the image goes, counted images_dropped_<reason>)
    "no_image": "no images (null or empty list), with strict_image",
    "no_valid_image": "every image was bad (bad_image: drop_image), with strict_image",
    "image_null": "a null image in the list",
    "image_empty": "an image with zero bytes",
    "image_corrupt": "image bytes that are not a decodable image",
    "image_truncated": "an image cut short (JPEG without its end marker)",
    "image_unreadable": "an image value of an unsupported form",
    "image_too_large": "declared pixel count above max_image_pixels (decompression bomb guard)",
    "image_path_not_allowed": "an image path that is not a plain relative file name",
    "image_path_outside_root": "an image path leading outside the allowed root",
    "image_file_missing": "an image path naming no file",
    "image_file_unreadable": "an image file that cannot be read",
    # image pre-flight (hf_bytes; src/vlprep/io/preflight.py)
    "image_mode_unsupported": "an image mode Pillow cannot convert to RGB / L for the processors",
    "image_blank": "every pixel of the image has one value, with hf_bytes.blank_image: drop",
    "image_aspect_ratio": "aspect ratio above the model profile's limit (200): the Qwen-VL processors refuse it",
    "image_side_below_patch": "a side below one patch after the model profile's resize: the trainers' resizes disagree on it, or fail",
    # trainer targets (verl, trl)
    "reserved_marker_in_text": "<image> or a chat special token inside the text",
    "reasoning_missing": "no reasoning, with the SFT target's response: reasoning",
    "over_max_prompt_tokens": "prompt (text + image tokens) longer than the target's max_prompt_tokens",
    "over_max_total_tokens": "prompt + images + response longer than the target's max_total_tokens",
    "beyond_max_rows": "past verl.max_rows",
    # row selection (stage select, applied by verl and trl): contamination, then the seeded subset
    "contaminated_exact_image": "train row sharing an image's exact bytes with a test row (audit), with audit.drop_train_contaminated",
    "contaminated_near_image": "train row with a near copy of a test row's image (hash candidate, confirmed on thumbnails; audit), with audit.drop_train_contaminated",
    "contaminated_near_item": "train row repeating a test item: the same or a near image and a near question, options and answer agreeing where both rows have them (audit), with audit.drop_train_contaminated",
    "outside_subset": "not among the subset.rows rows the seeded subset selected",
    # benchmark references (stage reference@<name>, applied by select with audit.drop_train_referenced)
    "reference_exact_image": "train row sharing an image's exact bytes with a row of a reference (audit.references), with audit.drop_train_referenced",
    "reference_near_image": "train row with a near copy of a reference row's image (hash candidate, confirmed on thumbnails), with audit.drop_train_referenced",
    "reference_near_item": "train row repeating a reference item: the same or a near image and a near question, options and answer agreeing where both rows have them, with audit.drop_train_referenced",
    # curation from rollouts (stage select, after the subset; docs/curation.md)
    "not_rolled_out": "no rollout for the row in curation.rollouts, with a pass-rate band, order or control set",
    "too_easy": "pass rate above curation.pass_rate's upper bound",
    "too_hard": "pass rate below curation.pass_rate's lower bound",
    "outside_control_subset": "not among the rows the random control (curation.control) drew in the band's number",
    # weighted mixtures (stage select, last)
    "not_in_mixture": "dataset_name not listed in mixture.weights",
    "outside_mixture": "not among the rows the seeded mixture drew for its source's share",
}


# reason -> what changes it ({stage}: the stage's params section), for "zero rows kept" and the docs.
DROP_FIXES = {
    "reasoning_missing": "set {stage}.response: auto (teach the answer where a row has no reasoning) or answer",
    "over_max_prompt_tokens": "raise or null {stage}.max_prompt_tokens",
    "over_max_total_tokens": "raise or null {stage}.max_total_tokens",
    "beyond_max_rows": "raise or null {stage}.max_rows",
    "question_type_excluded": "add the rows' type (mcq, open, yesno) to hf_bytes.question_types",
    "image_aspect_ratio": "set hf_bytes.unfit_image: pad (background added to the short side), or crop them at the source",
    "image_side_below_patch": "set hf_bytes.unfit_image: pad (background added up to one patch), or raise model.max_pixels",
    "no_image": "map an image column (inputs.<split>[i].columns), or set hf_bytes.strict_image: false",
    "outside_subset": "raise or null subset.rows",
    "contaminated_exact_image": "set audit.drop_train_contaminated: false to keep them (see data/audit/pairs.parquet)",
    "contaminated_near_image": "set audit.drop_train_contaminated: false to keep them (see data/audit/pairs.parquet)",
    "contaminated_near_item": "set audit.drop_train_contaminated: false to keep them (see data/audit/pairs.parquet)",
    "reference_exact_image": "set audit.drop_train_referenced: false to keep them (see data/references/<name>/pairs.parquet)",
    "reference_near_image": "set audit.drop_train_referenced: false to keep them (see data/references/<name>/pairs.parquet)",
    "reference_near_item": "set audit.drop_train_referenced: false to keep them (see data/references/<name>/pairs.parquet)",
    "not_rolled_out": "roll out every row of the split (data/curation/<split>.parquet lists n per row), or unset curation.pass_rate, order and control",
    "too_easy": "raise curation.pass_rate's upper bound",
    "too_hard": "lower curation.pass_rate's lower bound",
    "outside_control_subset": "widen curation.pass_rate (the control has the band's size)",
    "not_in_mixture": "add the rows' dataset_name to mixture.weights",
    "outside_mixture": "raise or null mixture.rows, or set mixture.upsample: true",
}


def what_to_do(stage: str, dropped: dict[str, int]) -> str:
    """The fix for the most frequent drop reason that has one, or ''."""
    for reason, _ in sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0])):
        if reason in DROP_FIXES:
            return f"{reason}: {DROP_FIXES[reason].format(stage=stage)}"
    return ""


class Rejected(Exception):
    """A row (or, in hf_bytes, one image) that cannot be used, with a registered reason and a
    free-text detail for the rejects file."""

    def __init__(self, reason: str, detail: str = ""):
        if reason not in DROP_REASONS:
            raise ValueError(f"unregistered drop reason {reason!r}: add it to metrics.DROP_REASONS and docs/failures.md")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class RowRef:
    """Where a row came from, for the rejects file: the input file (or hf_bytes split) and the row's
    position in it, plus the row's own ids when it has them."""

    source: str
    row: int
    dataset_name: str | None = None
    dataset_index: int | None = None

    @classmethod
    def of(cls, source: str, row: int, values: dict) -> "RowRef":
        index = values.get("dataset_index")
        name = values.get("dataset_name")
        return cls(source, row, name if isinstance(name, str) else None,
                   index if isinstance(index, int) and not isinstance(index, bool) else None)


@dataclass
class StageStats:
    """Counters one batch function returns; the executor adds them up across batches and processes."""

    rows_in: int = 0
    rows_out: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> rows
    counts: Counter = field(default_factory=Counter)  # other totals: images_in, bytes_out, warnings...
    # Histograms (value -> rows) of per-row quantities such as images per row. Merging histograms is
    # exact and order-independent, so min/mean/p95/max and plots do not depend on num_proc, and memory
    # grows with the number of distinct values, not with rows.
    series: dict = field(default_factory=lambda: defaultdict(Counter))
    # Categorical histograms (category -> rows), e.g. the correct answer's letter: in the metrics as
    # {name: {category: rows}}, in the plots as rows {name: category, rows: n}. Merged like `series`.
    categories: dict = field(default_factory=lambda: defaultdict(Counter))
    # One record per dropped row (RowRef fields + reason + detail; no image bytes), in drop order. The
    # runner moves them to the rejects file after every unit, so this holds one unit's worth at most.
    rejects: list = field(default_factory=list)
    output: dict | None = None  # the published output's fingerprint (engine.parts.Parted.publish)

    def drop(self, rejected: Rejected, ref: RowRef) -> None:
        self.dropped[rejected.reason] += 1
        self.rejects.append({**ref.__dict__, "reason": rejected.reason, "detail": rejected.detail[:1000]})

    def observe(self, name: str, value: int) -> None:
        self.series[name][int(value)] += 1

    def tally(self, name: str, category: str) -> None:
        self.categories[name][str(category)] += 1

    def merge(self, other: "StageStats") -> None:
        self.rows_in += other.rows_in
        self.rows_out += other.rows_out
        self.dropped.update(other.dropped)
        self.counts.update(other.counts)
        for name, hist in other.series.items():
            self.series[name].update(hist)
        for name, hist in other.categories.items():
            self.categories[name].update(hist)
        self.rejects.extend(other.rejects)

    def take_rejects(self) -> list[dict]:
        taken, self.rejects = self.rejects, []
        return taken

    def check_balance(self) -> None:
        # The invariant every stage promises: no row vanishes without a reason.
        total = self.rows_out + sum(self.dropped.values())
        if total != self.rows_in:
            raise AssertionError(f"row accounting broken: rows_in={self.rows_in} != rows_out+dropped={total}")

    def as_dict(self) -> dict:
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_dropped": sum(self.dropped.values()),
            "dropped": dict(sorted(self.dropped.items())),
            **dict(sorted(self.counts.items())),
            **{name: summarize(hist) for name, hist in sorted(self.series.items())},
            **{name: dict(sorted(hist.items())) for name, hist in sorted(self.categories.items())},
            **({"output": self.output} if self.output else {}),
        }


def summarize(hist: Counter) -> dict:
    """min/mean/p95/max of a value->count histogram."""
    n = sum(hist.values())
    if not n:
        return {"min": 0, "mean": 0.0, "p95": 0, "max": 0}
    values = sorted(hist)
    seen, p95 = 0, values[-1]
    for v in values:
        seen += hist[v]
        if seen >= 0.95 * n:
            p95 = v
            break
    mean = sum(v * c for v, c in hist.items()) / n
    return {"min": values[0], "mean": round(mean, 3), "p95": p95, "max": values[-1]}


def histogram_rows(hist: Counter, name: str) -> list[dict]:
    """Rows for a DVC plot file: one entry per distinct value (or category)."""
    return [{name: v, "rows": hist[v]} for v in sorted(hist)]


def plot_files(stats: StageStats) -> dict[str, list[dict]]:
    """series/category name -> its plot rows: what a stage writes under plots/<stage>/<split>/."""
    return {name: histogram_rows(hist, name) for name, hist in sorted({**stats.series, **stats.categories}.items())}


def read_metrics(stage: str, split: str) -> dict:
    """A data stage's metrics for one split (metrics/<stage>/<split>.json), or InputError naming it."""
    from vlprep.core.failures import InputError
    from vlprep.core.paths import metrics_file

    path = metrics_file(stage, split)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read the {stage} metrics ({e}); run `dvc repro` first") from e


def write_json(path: Path, data) -> None:
    """Sorted keys and a trailing newline: byte-stable, and clean in `dvc metrics diff`."""
    from vlprep.core.writers import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
