"""docs/dvc.md's rerun table is what `dvc repro` does: each documented change, made in a copy of the
repro'd project, reruns exactly the stages the table names (its own module: 20-odd real `dvc repro` runs,
so pytest-xdist can give them a worker of their own)."""
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import run, set_params
# The trainer targets built from hf_bytes@train by default.
TARGETS_TRAIN = {"verl@train", "trl@train"}
# The products read every stage's metrics (with each output's fingerprint): they follow any output change.
REPORTS = {"summary", "card", "preview"}
DOC = Path(__file__).resolve().parents[1] / "docs/dvc.md"


def repro_ran(repo) -> set[str]:
    """Stages `dvc repro` actually executed (not the ones it skipped)."""
    out = run(["dvc", "repro"], repo).stdout
    return set(re.findall(r"Running stage '([^']+)'", out))


def rerun_table() -> list[tuple[str, dict, set[str]]]:
    """docs/dvc.md's table: (row text, change, stages it reruns). A change is `key=value` settings (values
    in YAML) joined by "and", or "edit <file>"."""
    text = DOC.read_text()
    body = text[text.index("<!-- rerun-table"):text.index("<!-- end rerun-table -->")]
    rows = []
    for line in body.splitlines()[3:]:
        change, reruns = [c.strip() for c in line.strip("|").split("|")]
        settings = {}
        for code in re.findall(r"`([^`]+)`", change):
            if "=" in code:
                key, value = code.split("=", 1)
                settings[key] = yaml.safe_load(value)
            elif change.startswith("edit"):
                settings["edit"] = code
        rows.append((change, settings, {s.strip() for s in reruns.split(",")}))
    return rows


@pytest.mark.parametrize("change,settings,expected", rerun_table(), ids=[r[0][:40] for r in rerun_table()])
def test_the_documented_rerun_table_is_what_dvc_does(scratch_repo, change, settings, expected):
    assert "up to date" in run(["dvc", "status"], scratch_repo).stdout
    if settings.get("model.tokenizer") == "my_tokenizer":  # a user's own tokenizer directory
        shutil.copytree(scratch_repo / "data/tokenizer/qwen2_5_vl", scratch_repo / "my_tokenizer")
    if "edit" in settings:
        with open(scratch_repo / settings.pop("edit"), "a") as f:
            f.write("# edited\n")
    set_params(scratch_repo, **settings)
    assert repro_ran(scratch_repo) == expected, change
    assert repro_ran(scratch_repo) == set()  # and then nothing is left to do
    assert "up to date" in run(["dvc", "status"], scratch_repo).stdout
