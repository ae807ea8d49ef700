"""The summary stage's headline (summary.json) counts only what params.yaml builds now."""
import json
import shutil
import sys

import yaml

from conftest import REPO, run


def test_a_target_switched_off_leaves_the_summary(tmp_path):
    shutil.copytree(REPO / "metrics", tmp_path / "metrics")  # the default targets' last metrics, as in git
    leftover = tmp_path / "metrics/swift/train.json"  # a target switched off leaves its metrics behind
    leftover.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "metrics/trl/train.json", leftover)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert params["targets"]["swift"] == []
    params["targets"]["verl"] = ["train"]  # and verl@test switched off: its metrics stay too
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run([sys.executable, str(REPO / "stages/summary.py"), "out.json"], tmp_path)
    kept = json.loads((tmp_path / "out.json").read_text())["kept"]
    assert (tmp_path / "metrics/verl/test.json").is_file()
    assert {"train.hf_bytes", "test.hf_bytes", "train.verl", "train.trl"} == set(kept)
