"""The `vlprep` command: --help lists the stages and what they write; `show` prints rows as text."""
import json
from pathlib import Path

import pyarrow.parquet as pq

from conftest import BIN, REPO, run, set_params


def vlprep(args, cwd, check=True):
    return run([str(BIN / "vlprep"), *args], cwd, check=check)


def test_help_lists_every_stage_and_its_outputs(tmp_path):
    out = vlprep(["--help"], REPO).stdout
    for stage in ["raw", "hf_bytes@<split>", "tokenizer", "verl@<split>", "trl@<split>", "card", "preview",
                  "export@<product>"]:
        assert f"\n  {stage} " in out, stage
    for written in ["data/hf_bytes/<split>", "data/verl/<split>", "data/trl/<split>",
                    "data/preview/index.html", "data/cards", "data/rejects/<stage>/<split>.parquet", "data/hub/<product>"]:
        assert written in out, written
    assert "show" in out and "paths" in out and "clean" in out


def test_show_prints_rows_as_text(repro_repo):
    out = vlprep(["show", "train", "-n", "2"], repro_repo).stdout
    first = pq.read_table(repro_repo / "data/verl/train").slice(0, 1).to_pylist()[0]
    info = first["extra_info"]
    assert out.count("=== verl train row") == 2
    assert f"question: {info['question']}" in out
    assert first["prompt"][0]["content"] in out
    label = info["answer_label"]
    assert f"  * {label}. {json.loads(info['options'])[label]}" in out
    assert f"prompt_tokens={info['prompt_tokens']}, image_tokens={info['image_tokens']}" in out

    trl = vlprep(["show", "train", "--target", "trl", "-n", "1"], repro_repo).stdout
    row = pq.read_table(repro_repo / "data/trl/train").slice(0, 1).to_pylist()[0]
    assert trl.count("=== trl train row") == 1 and row["text"].rstrip("\n") in trl
    assert f"total_tokens={row['total_tokens']}" in trl


def test_show_names_a_split_the_params_do_not_build(repro_repo):
    proc = vlprep(["show", "test", "--target", "trl"], repro_repo, check=False)
    assert proc.returncode == 1 and "does not build trl[test]: add test to targets.trl" in proc.stderr


def test_paths_prints_the_files_trainer_configs_name(repro_repo):
    out = dict(line.split(": ", 1) for line in vlprep(["paths"], repro_repo).stdout.splitlines())
    assert out["reward"].endswith("src/vlprep/scoring/reward.py") and Path(out["reward"]).is_file()
    assert Path(out["swift_reward"]).is_file() and Path(out["tokenizer"], "tokenizer.json").is_file()


def test_clean_removes_only_what_the_params_no_longer_build(scratch_repo):
    set_params(scratch_repo, **{"targets.verl": ["train"]})
    assert vlprep(["clean", "--dry-run"], scratch_repo).stdout.split("\n")[0] == "would remove data/verl/test"
    removed = vlprep(["clean"], scratch_repo).stdout.splitlines()
    assert removed == ["removed data/verl/test", "removed data/rejects/verl/test.parquet",
                       "removed metrics/verl/test.json", "removed plots/verl/test"]
    assert (scratch_repo / "data/verl/train").is_dir() and not (scratch_repo / "data/verl/test").exists()
