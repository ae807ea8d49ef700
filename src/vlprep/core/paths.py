"""Every path a stage writes or reads by convention, relative to the project directory: the one place
that knows the layout (dvc.yaml is generated from it, see vlprep.pipeline)."""
from __future__ import annotations

from pathlib import Path

DATA = Path("data")
METRICS = Path("metrics")
PLOTS = Path("plots")
REJECTS = DATA / "rejects"


def hf_bytes_dir(split: str) -> Path:
    return DATA / "hf_bytes" / split


def output_dir(stage: str, split: str) -> Path:
    """A data stage's output for one split: hf_bytes' save_to_disk directory, a target's parts."""
    return DATA / stage / split


def product_dir(stage: str) -> Path:
    """Where a product's splits sit, with its card (README.md) and, for LLaMA-Factory, dataset_info.json."""
    return DATA / stage


def selection_file(split: str) -> Path:
    """The rows stage select leaves out of a split (read by every target)."""
    return DATA / "select" / f"{split}.parquet"


def rejects_file(stage: str, split: str) -> Path:
    return REJECTS / stage / f"{split}.parquet"


def metrics_file(stage: str, split: str) -> Path:
    return METRICS / stage / f"{split}.json"


def plots_dir(stage: str, split: str) -> Path:
    return PLOTS / stage / split


AUDIT_DIR = DATA / "audit"
AUDIT_METRICS = METRICS / "audit" / "contamination.json"
SELECT_DIR = DATA / "select"
SELECT_METRICS = METRICS / "select.json"
CARDS_STAGE_OUT = DATA / "cards"
PREVIEW_PAGE = DATA / "preview" / "index.html"
SUMMARY = Path("summary.json")  # outside metrics/: the products depend on all of metrics/
