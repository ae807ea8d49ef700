"""The summary stage's headline (metrics/summary.json) counts only what params.yaml builds now."""
import json
import shutil
import sys

import yaml

from conftest import REPO, run


def test_a_target_switched_off_leaves_the_summary(tmp_path):
    shutil.copytree(REPO / "metrics", tmp_path / "metrics")  # every target's last metrics, as in git
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["llamafactory"]["splits"] = []  # switched off: metrics/llamafactory/train.json stays behind
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run([sys.executable, str(REPO / "stages/summary.py"), "metrics", "out.json"], tmp_path)
    kept = json.loads((tmp_path / "out.json").read_text())["kept"]
    assert (tmp_path / "metrics/llamafactory/train.json").is_file()
    assert "train.llamafactory" not in kept
    assert {"train.hf_bytes", "test.hf_bytes", "train.verl", "test.verl", "train.trl", "train.swift",
            "train.swift_grpo"} == set(kept)
