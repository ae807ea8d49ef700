"""End to end: the real `dvc repro` on the built-in sample, in a fresh git repo."""
import json
from collections import Counter

import datasets
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, run
from vlprep.core.schema import HF_BYTES_FEATURES

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


def rows_of(repo, stage, split):
    if stage == "hf_bytes":
        return len(datasets.load_from_disk(str(repo / "data/hf_bytes" / split)))
    return pq.read_table(repo / f"data/{stage}/{split}", columns=[]).num_rows  # its parts


@pytest.mark.parametrize("name", STAGE_METRICS)
def test_every_input_row_is_in_the_output_or_in_the_rejects_file(repro_repo, name):
    """Counted from the files themselves, not from the stage's own arithmetic: the rows read, the rows
    written, and the rejects file's rows (one per drop, with the metrics' reasons)."""
    stage, split = name.split("/")
    if stage == "hf_bytes":
        read = sum(pq.ParquetFile(p).metadata.num_rows for p in (repro_repo / "data/raw" / split).glob("*.parquet"))
    else:
        read = rows_of(repro_repo, "hf_bytes", split)
    rejects = pq.read_table(repro_repo / f"data/rejects/{stage}/{split}.parquet").to_pylist()
    assert read == rows_of(repro_repo, stage, split) + len(rejects) and read > 0
    m = load_metrics(repro_repo, name)
    assert m["dropped"] == dict(Counter(r["reason"] for r in rejects))
    assert {(r["stage"], r["split"]) for r in rejects} <= {(stage, split)}
    assert all(r["row"] >= 0 and r["source"] for r in rejects)


def test_sample_drops_are_visible_by_reason(repro_repo):
    raw_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in (repro_repo / "data/raw/train").glob("*.parquet"))
    m = load_metrics(repro_repo, "hf_bytes/train")
    assert m["rows_in"] == raw_rows
    for reason in ["no_image", "image_corrupt", "answer_label_not_in_options", "options_malformed_json", "image_path_outside_root"]:
        assert m["dropped"].get(reason, 0) > 0, reason
    assert m["images_truncated_by_k"] > 0
    assert m["duplicate_dataset_index"] == 1
    trl = load_metrics(repro_repo, "trl/train")  # rows without reasoning teach the answer (trl.response: auto)
    assert trl["response_answer"] > 0 and trl["response_reasoning"] > 0 and "reasoning_missing" not in trl["dropped"]


def test_dvc_metrics_show_lists_every_stage(repro_repo):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repro_repo).stdout)
    files = next(iter(shown.values()))["data"]
    for name in STAGE_METRICS:
        assert f"metrics/{name}.json" in files, files.keys()


# The column types docs/formats.md promises, written out by hand (not taken from vlprep.core.schema, which
# the writers cast to).
IMAGES = "list<element: struct<bytes: binary, path: string>>"
VERL_COLUMNS = {
    "data_source": "string",
    "prompt": "list<element: struct<role: string, content: string>>",
    "images": IMAGES,
    "ability": "string",
    "reward_model": "struct<style: string, ground_truth: string>",
    "extra_info": "struct<split: string, index: int64, question: string, options: string, answer_label: string, "
                  "answer: string, dataset_name: string, dataset_index: int64, prompt_tokens: int64, image_tokens: int64, "
                  "question_type: string>",
}
TRL_COLUMNS = {
    **{c: "string" for c in ["question", "options", "answer_label", "answer", "reasoning", "dataset_name"]},
    "dataset_index": "int64", "hash": "string", "misc": "string", "question_type": "string", "images": IMAGES,
    "messages": "list<element: struct<role: string, content: list<element: struct<type: string, text: string>>>>",
    "text": "string", "prompt_tokens": "int64", "image_tokens": "int64", "total_tokens": "int64",
}


def test_output_schemas(repro_repo):
    def columns(path):
        return {f.name: str(f.type) for f in pq.read_schema(path)}

    for split in ["train", "test"]:
        assert columns(repro_repo / f"data/verl/{split}/part-00000.parquet") == VERL_COLUMNS
    assert columns(repro_repo / "data/trl/train/part-00000.parquet") == TRL_COLUMNS
    features = json.loads(pq.read_schema(repro_repo / "data/trl/train/part-00000.parquet").metadata[b"huggingface"])["info"]["features"]
    assert features["images"] == {"feature": {"_type": "Image"}, "_type": "List"}  # decodable in TRL


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
