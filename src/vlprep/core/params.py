"""params.yaml, read and validated: a stage checks its own section at start (core/sections.py holds the
models) and stops with a line naming the key; `inputs` and `targets`, which other sections refer to, are
read here too."""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from vlprep.core.sections import SECTIONS, InputEntry, Section

PARAMS_FILE = Path("params.yaml")


class ParamsError(Exception):
    """params.yaml is missing, unreadable or has a bad key; the message names the key."""


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
        raise ParamsError(f"{path}: " + "; ".join(_problems(section, e))) from None


def _problems(prefix: str, e: ValidationError) -> list[str]:
    problems = []
    for err in e.errors():
        key = ".".join([prefix, *map(str, err["loc"])])
        got = "" if err["type"] == "missing" else f" (got {err['input']!r})"
        problems.append(f"{key}: {err['msg']}{got}")
    return problems


def load_section(section: str, path: Path | str = PARAMS_FILE):
    params = load_params(path)
    if section not in params:
        raise ParamsError(f"{path}: section {section!r} missing")
    return validate(section, params[section], path)


def load_input(split: str, path: Path | str = PARAMS_FILE) -> str | list[InputEntry]:
    """inputs.<split>: the raw input spec of one split (a glob, dir, file or comma list of reference-schema
    parquet), or a list of InputEntry (each its own files and mapping), concatenated in order."""
    inputs = load_params(path).get("inputs")
    if not isinstance(inputs, dict) or split not in inputs:
        raise ParamsError(f"{path}: inputs.{split} missing (splits: {sorted(inputs or {})})")
    spec = inputs[split]
    if isinstance(spec, list) and spec:
        entries = []
        for i, entry in enumerate(spec):
            try:
                entries.append(InputEntry.model_validate(entry))
            except ValidationError as e:
                raise ParamsError(f"{path}: " + "; ".join(_problems(f"inputs.{split}[{i}]", e))) from None
        return entries
    if not isinstance(spec, str) or not spec.strip():
        raise ParamsError(f"{path}: inputs.{split}: expected a non-empty path spec or a list of "
                          f"{{path, preset | columns}} entries (got {spec!r})")
    return spec


def load_input_data(split: str, path: Path | str = PARAMS_FILE) -> str | None:
    """input_data.<split>: the file or directory dvc.yaml tracks as hf_bytes@<split>'s data dependency
    (None when params.yaml has no input_data section, e.g. a stage run by hand)."""
    value = (load_params(path).get("input_data") or {}).get(split)
    if value is not None and not isinstance(value, str):
        raise ParamsError(f"{path}: input_data.{split}: expected a path (got {value!r})")
    return value


def input_splits(path: Path | str = PARAMS_FILE) -> list[str]:
    """The splits params.yaml builds: the keys of `inputs` whose value is not null, in order. A split
    absent from `inputs` is not built (no test split is a supported configuration)."""
    params = load_params(path)
    inputs = params.get("inputs")
    if not isinstance(inputs, dict) or not any(v is not None for v in inputs.values()):
        raise ParamsError(f"{path}: inputs: expected at least one split (e.g. inputs.train: <path>)")
    splits = [split for split, spec in inputs.items() if spec is not None]
    tracked = params.get("input_data")
    untracked = [s for s in splits if isinstance(tracked, dict) and s not in tracked]
    if untracked:  # dvc.yaml makes one hf_bytes stage per input_data split: these would never be built
        raise ParamsError(f"{path}: input_data.{untracked[0]} missing: give the file or directory holding "
                          f"inputs.{untracked[0]}'s data (DVC tracks it), e.g. input_data.{untracked[0]}: mydata")
    return splits


def load_targets(path: Path | str = PARAMS_FILE) -> dict[str, list[str]]:
    """targets: target -> the splits it builds (core/targets.py lists them all), each one of `inputs`."""
    targets = load_section("targets", path).model_dump()
    splits = input_splits(path)
    for target, wanted in targets.items():
        missing = [s for s in wanted if s not in splits]
        if missing:
            raise ParamsError(f"{path}: targets.{target} lists {missing}, which inputs does not build "
                              f"(inputs: {splits}): remove them from targets.{target}, or add them to inputs")
    return targets
