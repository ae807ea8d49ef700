"""A user's own choice of targets: any selection builds, with cards, preview and summary naming exactly what
is built, and products are byte-identical across forced reruns and workspaces. (A user's own data, as the
README's walkthrough runs it: tests/test_walkthrough.py.)"""
import json
import re

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import copy_project, md5_tree, run, set_params


@pytest.mark.parametrize("targets", [
    {"verl": ["train"], "trl": []},
    {"verl": [], "trl": ["train"]},
    {"verl": ["train", "test"], "trl": ["train", "test"], "llamafactory": ["train", "test"], "swift": ["train"],
     "swift_grpo": ["train", "test"]},
    {"verl": [], "trl": []},
], ids=["verl_only", "trl_only", "all_on", "none"])
def test_any_selection_of_targets_builds_and_the_products_name_exactly_it(scratch_repo, targets):
    set_params(scratch_repo, **{f"targets.{t}": splits for t, splits in targets.items()})
    run(["dvc", "repro"], scratch_repo)
    built = {t: s for t, s in yaml.safe_load((scratch_repo / "params.yaml").read_text())["targets"].items() if s}
    assert sorted(p.name for p in (scratch_repo / "data/cards").iterdir()) == sorted(built)
    kept = json.loads((scratch_repo / "summary.json").read_text())["kept"]
    assert {k for k in kept if not k.endswith(".hf_bytes")} == {f"{s}.{t}" for t, splits in built.items() for s in splits}
    page = (scratch_repo / "data/preview/index.html").read_text()
    assert set(re.findall(r'data-target="(\w+)"', page)) == set(built)
    info = json.loads((scratch_repo / "data/dataset_info.json").read_text())
    assert sorted(info) == sorted(f"vlprep_{s}" for s in built.get("llamafactory", []))
    for target, splits in built.items():
        for split in splits:
            card = (scratch_repo / "data/cards" / target / "README.md").read_text()
            rows = pq.read_table(scratch_repo / "data" / target / split, columns=[]).num_rows
            assert f"- name: {split}\n    num_examples: {rows}\n" in card


def test_forced_reruns_and_another_workspace_give_byte_identical_products(scratch_repo, tmp_path):
    before = {**md5_tree(scratch_repo / "data"), **{f"metrics/{k}": v for k, v in md5_tree(scratch_repo / "metrics").items()}}
    run(["dvc", "repro", "-f", "card", "preview", "summary"], scratch_repo)
    after = {**md5_tree(scratch_repo / "data"), **{f"metrics/{k}": v for k, v in md5_tree(scratch_repo / "metrics").items()}}
    assert after == before
    other = copy_project(tmp_path / "elsewhere" / "deeper" / "project")
    run(["dvc", "repro"], other)
    theirs = md5_tree(other / "data")
    assert {k: v for k, v in theirs.items() if not k.startswith("tokenizer")} == \
        {k: v for k, v in before.items() if k in theirs and not k.startswith("tokenizer")}
    assert set(theirs) == {k for k in before if not k.startswith("metrics/")}
