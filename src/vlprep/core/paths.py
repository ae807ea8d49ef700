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


def order_file(split: str) -> Path:
    """The order in which the targets emit a split's selected rows (a row may come more than once); empty:
    input order, each row once (stage select)."""
    return DATA / "select" / f"{split}.order.parquet"


def curation_file(split: str) -> Path:
    """Per hf_bytes row of a split: rollouts, passes and pass rate (stage curation@<split>)."""
    return CURATION_DIR / f"{split}.parquet"


def curation_problems_file(split: str) -> Path:
    """The rollouts curation@<split> did not count (unknown index, duplicate sample, identity mismatch)."""
    return CURATION_DIR / f"{split}.problems.parquet"


def reference_dir(name: str) -> Path:
    """Stage reference@<name>: train matched against benchmark `name` (pairs, flagged train rows, rejects)."""
    return REFERENCES_DIR / name


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
# Always present (a committed .gitignore), so that stage select can depend on them when no curation or
# reference stage exists; the stages write their files inside.
CURATION_DIR = DATA / "curation"
REFERENCES_DIR = DATA / "references"
CARDS_STAGE_OUT = DATA / "cards"
PREVIEW_PAGE = DATA / "preview" / "index.html"
SUMMARY = Path("summary.json")  # outside metrics/: the products depend on all of metrics/
