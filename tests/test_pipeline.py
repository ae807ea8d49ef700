"""End to end: the real `dvc repro` on the built-in sample, in a fresh git repo."""
import json

import datasets
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, run
from vlprep.schema import HF_BYTES_FEATURES, TRL_SCHEMA, VERL_SCHEMA

STAGE_METRICS = ["hf_bytes/train", "hf_bytes/test", "verl/train", "verl/test", "trl/train"]


def load_metrics(repo, name):
    return json.loads((repo / "metrics" / f"{name}.json").read_text())


def test_repro_leaves_a_clean_status(repro_repo):
    out = run(["dvc", "status"], repro_repo).stdout
    assert "up to date" in out, out


@pytest.mark.parametrize("split", ["train", "test"])
def test_hf_bytes_loads_with_datasets(repro_repo, split):
    ds = datasets.load_from_disk(str(repro_repo / "data/hf_bytes" / split))
    assert ds.features == datasets.Features.from_dict(HF_BYTES_FEATURES)
    assert ds.features["images"].feature.decode is False
    metrics = load_metrics(repro_repo, f"hf_bytes/{split}")
    assert len(ds) == metrics["rows_out"] > 0
    images = [img for row in ds.with_format("arrow")["images"].to_pylist() for img in row]
    assert len(images) == metrics["images_out"]
    assert all(img["path"] is None and img["bytes"] for img in images)
    assert sum(len(img["bytes"]) for img in images) == metrics["bytes_out"]
    assert max(len(row) for row in ds["images"]) <= 6  # keep_first_k_images
    assert all('": null' not in o for o in ds["options"])


@pytest.mark.parametrize("name", STAGE_METRICS)
def test_every_row_is_kept_or_dropped_with_a_reason(repro_repo, name):
    m = load_metrics(repro_repo, name)
    assert m["rows_in"] == m["rows_out"] + sum(m["dropped"].values())
    assert m["rows_out"] > 0


def test_sample_drops_are_visible_by_reason(repro_repo):
    raw_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in (repro_repo / "data/raw/train").glob("*.parquet"))
    m = load_metrics(repro_repo, "hf_bytes/train")
    assert m["rows_in"] == raw_rows
    for reason in ["no_image", "image_corrupt", "answer_label_not_in_options", "options_malformed_json", "image_path_outside_root"]:
        assert m["dropped"].get(reason, 0) > 0, reason
    assert m["images_truncated_by_k"] > 0
    assert m["duplicate_dataset_index"] == 1
    assert load_metrics(repro_repo, "trl/train")["dropped"]["reasoning_missing"] > 0


def test_dvc_metrics_show_lists_every_stage(repro_repo):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repro_repo).stdout)
    files = next(iter(shown.values()))["data"]
    for name in STAGE_METRICS:
        assert f"metrics/{name}.json" in files, files.keys()


def test_output_schemas(repro_repo):
    for split in ["train", "test"]:
        assert pq.read_schema(repro_repo / f"data/verl/{split}.parquet").remove_metadata() == VERL_SCHEMA
    trl = pq.read_schema(repro_repo / "data/trl/train.parquet")
    assert trl.remove_metadata() == TRL_SCHEMA
    assert b"huggingface" in trl.metadata


def test_outputs_match_the_committed_lock(repro_repo):
    """Same inputs + params => the same bytes on any machine: the output hashes recorded in the
    committed dvc.lock are reproduced by a fresh run."""
    def outs(lock):
        return {
            (stage, o["path"]): o["md5"]
            for stage, s in yaml.safe_load(lock).get("stages", {}).items()
            for o in s.get("outs", [])
        }

    committed = outs((REPO / "dvc.lock").read_text())
    fresh = outs((repro_repo / "dvc.lock").read_text())
    assert fresh == committed
