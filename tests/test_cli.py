"""The `vlprep` command: --help lists the stages and what they write; `show` prints rows as text."""
import json

import pyarrow.parquet as pq

from conftest import BIN, REPO, run


def vlprep(args, cwd, check=True):
    return run([str(BIN / "vlprep"), *args], cwd, check=check)


def test_help_lists_every_stage_and_its_outputs(tmp_path):
    out = vlprep(["--help"], REPO).stdout
    for stage in ["raw", "hf_bytes@<split>", "tokenizer", "verl@<split>", "trl@<split>", "card", "preview",
                  "export@<product>"]:
        assert f"\n  {stage} " in out, stage
    for written in ["data/hf_bytes/<split>", "data/verl/<split>", "data/trl/<split>",
                    "data/preview/index.html", "data/verl/README.md", "data/rejects/<stage>/<split>.parquet", "data/hub/<product>"]:
        assert written in out, written
    assert "show" in out


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


def test_show_names_a_missing_output(repro_repo):
    proc = vlprep(["show", "test", "--target", "trl"], repro_repo, check=False)
    assert proc.returncode == 1 and "data/trl/test does not exist" in proc.stderr
