"""The README's walkthrough, as a new user runs it: a train-only CSV with no reasoning column, mapped in
params.yaml, through `dvc repro` to verl's parquet. Every command block of the section runs verbatim in a
fresh copy of the project; the one block marked as needing verl and a GPU is checked, not run."""
import csv
import io
import json
import re
import shlex
from glob import glob

import pyarrow.parquet as pq
import yaml

from builders import noisy
from conftest import REPO, copy_project, run

NEEDS_VERL = "<!-- walkthrough: needs verl"


def walkthrough() -> list[tuple[str, str, bool]]:
    """(language, text, needs verl) of the fenced blocks of the README's walkthrough section, in order."""
    text = (REPO / "README.md").read_text()
    start = text.index("## Your own data to a verl run")
    section = text[start:text.index("\n## ", start + 3)]
    return [(lang, body, marker.strip().startswith(NEEDS_VERL))
            for marker, lang, body in re.findall(r"(<!--[^\n]*-->\n)?```(\w+)\n(.*?)```", section, re.S)]


def test_the_walkthrough_runs_verbatim_to_verl_parquet(tmp_path):
    blocks = walkthrough()
    assert [lang for lang, _, _ in blocks] == ["csv", "yaml", "bash", "bash"], blocks
    (_, table, _), (_, sections, _), (_, commands, _), (_, verl_command, needs_verl) = blocks
    assert needs_verl and not any(needs for *_, needs in blocks[:3])
    repo = copy_project(tmp_path / "project")

    # The user's data: the CSV as the README shows it, and an image for each path it names.
    rows = list(csv.DictReader(io.StringIO(table)))
    assert "reasoning" not in rows[0] and len(rows) >= 3
    (repo / "mydata/images").mkdir(parents=True)
    (repo / "mydata/train.csv").write_text(table)
    for i, r in enumerate(rows):
        (repo / "mydata/images" / r["image"]).write_bytes(noisy("PNG", 48 + 8 * i))

    # "In params.yaml, replace the sections ... with these"
    params = yaml.safe_load((repo / "params.yaml").read_text())
    replaced = yaml.safe_load(sections)
    assert set(replaced) == {"inputs", "input_data", "targets"} and set(replaced["inputs"]) == {"train"}
    params.update(replaced)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    proc = run(commands, repo)  # dvc repro, vlprep show, ls, vlprep paths: as written
    assert "audit: no test split" in proc.stderr
    assert "part-00000.parquet" in proc.stdout and f"reward: {REPO}/src/vlprep/scoring/reward.py" in proc.stdout

    verl = pq.read_table(repo / "data/verl/train").to_pylist()
    assert [r["extra_info"]["answer_label"] for r in verl] == [r["answer"] for r in rows]
    assert [r["reward_model"]["ground_truth"] for r in verl] == [r[r["answer"]] for r in rows]
    assert all(len(r["images"]) == 1 and r["data_source"] == "vlprep_medical_mcqa" for r in verl)
    kept = json.loads((repo / "summary.json").read_text())["kept"]
    assert kept == {"train.hf_bytes": len(rows), "train.verl": len(rows), "train.trl": len(rows)}
    sft = pq.read_table(repo / "data/trl/train").to_pylist()  # no reasoning: SFT rows teach the answer alone
    assert [r["messages"][1]["content"][0]["text"] for r in sft] == \
        [f"<think> </think>\n<answer> {r['answer']} </answer>" for r in rows]
    assert not (repo / "data/hf_bytes/test").exists() and not (repo / "data/verl/test").exists()
    assert sorted(p.name for p in (repo / "data/cards").iterdir()) == ["trl", "verl"]

    # verl itself is not installed here: its command names files that exist and the reward's function.
    argv = shlex.split(verl_command.replace("\\\n", " "))
    assert argv[:3] == ["python", "-m", "verl.trainer.main_ppo"] and argv[-1] == "..."
    keys = dict(a.split("=", 1) for a in argv[3:-1])
    for key in ("data.train_files", "data.val_files"):
        assert glob(str(repo / keys[key])), key
    reward = (repo / keys["reward.custom_reward_function.path"]).read_text()
    assert f"def {keys['reward.custom_reward_function.name']}(" in reward
    assert verl_command in (REPO / "docs/trainers.md").read_text()  # the same as docs/trainers.md#train-split-only
