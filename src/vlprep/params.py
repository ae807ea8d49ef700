"""params.yaml access for the stage scripts: one section per stage, as DVC tracks them."""
from __future__ import annotations

from pathlib import Path

import yaml


def load_params(path: Path | str = "params.yaml") -> dict:
    with open(path) as f:
        return yaml.safe_load(f)
