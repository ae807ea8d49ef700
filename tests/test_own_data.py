"""A user's own data, as the README's walkthrough says: a train-only PMC-VQA-format CSV with no reasoning
column reaches a green `dvc repro` that builds every default target (SFT rows teach the answer); and any
selection of targets builds, with cards, preview and summary naming exactly what is built."""
import csv
import json
import re

import pyarrow.parquet as pq
import pytest
import yaml

from builders import jpeg
from conftest import REPO, copy_project, md5_tree, run, set_params


def walkthrough_blocks() -> list[tuple[str, str]]:
    """(language, text) of the fenced blocks of the README's walkthrough section."""
    text = (REPO / "README.md").read_text()
    start = text.index("## Your own data")
    section = text[start:text.index("\n## ", start + 3)]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.S)


def pmc_vqa_csv(folder, rows: int) -> None:
    """PMC-VQA's public train.csv columns (no reasoning), with its figures in images/."""
    (folder / "images").mkdir(parents=True)
    with open(folder / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Figure_path", "Question", "Answer", "Choice A", "Choice B", "Choice C", "Choice D", "Answer_label"])
        for i in range(rows):
            name = f"PMC{i}_Fig1.jpg"
            (folder / "images" / name).write_bytes(jpeg(40 + i, 30 + i, color=(i * 9 % 256, 80, 120)))
            label = "ABCD"[i % 4]
            choices = [f" {k}:finding {i}-{k}" for k in "ABCD"]
            w.writerow([name, f"What does figure {i} show?", f"finding {i}-{label}", *choices, label])


def test_the_walkthrough_builds_every_default_target_from_a_train_only_csv(tmp_path):
    repo = copy_project(tmp_path / "project")
    pmc_vqa_csv(repo / "mydata", 20)
    blocks = walkthrough_blocks()
    assert [lang for lang, _ in blocks][:2] == ["yaml", "bash"], blocks
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params.update(yaml.safe_load(blocks[0][1]))  # "replace these sections of params.yaml"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run(blocks[1][1], repo)  # dvc repro, vlprep show: as written
    assert "audit: no test split" in proc.stderr
    kept = json.loads((repo / "summary.json").read_text())["kept"]
    assert kept == {"train.hf_bytes": 20, "train.verl": 20, "train.trl": 20}
    sft = pq.read_table(repo / "data/trl/train").to_pylist()
    assert all(r["messages"][1]["content"][0]["text"] == f"<think> </think>\n<answer> {r['answer_label']} </answer>"
               for r in sft)
    assert json.loads((repo / "metrics/trl/train.json").read_text())["response_answer"] == 20
    assert not (repo / "data/hf_bytes/test").exists() and not (repo / "data/verl/test").exists()
    assert sorted(p.name for p in (repo / "data/cards").iterdir()) == ["trl", "verl"]
    page = (repo / "data/preview/index.html").read_text()
    assert "verl · train" in page and "trl · train" in page and "· test" not in page


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
