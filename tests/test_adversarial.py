"""Bad input, class by class: each row is kept, or dropped with a named reason, in every stage.

One adversarial raw dataset (three shards with differing physical schemas) goes through hf_bytes,
verl and trl; each class's expected outcome per stage is listed in CLASSES."""
import json
import os
from collections import Counter

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from builders import jpeg, noisy, png, png_declaring, row, write_raw
from conftest import REPO, run, stage_argv

KEPT = "kept"
LONG = "x" * 100_000

# class -> (row overrides, shard, outcome in hf_bytes, in verl, in trl)
CLASSES = {
    "good_struct": ({}, "A", KEPT, KEPT, KEPT),
    "good_binary": ({}, "B", KEPT, KEPT, KEPT),
    "good_int_label_numeric_keys": ({"options": {"1": "one", "2": "two"}, "answer_label": 2, "answer": "two"}, "C", KEPT, KEPT, KEPT),
    "null_images": ({"images": None}, "A", "no_image", None, None),
    "zero_images": ({"images": []}, "B", "no_image", None, None),
    "null_image_in_list": ({"images": [png(), None]}, "A", "image_null", None, None),
    "null_question": ({"question": None}, "A", "question_missing", None, None),
    "null_options": ({"options": None}, "B", "options_missing", None, None),
    "null_label": ({"answer_label": None}, "A", "answer_label_missing", None, None),
    "null_answer": ({"answer": None}, "A", KEPT, KEPT, KEPT),
    "null_reasoning": ({"reasoning": None}, "A", KEPT, KEPT, "reasoning_missing"),
    "null_dataset_name": ({"dataset_name": None}, "A", KEPT, KEPT, KEPT),
    "null_dataset_index": ({"dataset_index": None}, "A", KEPT, KEPT, KEPT),
    "null_misc": ({"misc": None}, "B", KEPT, KEPT, KEPT),
    "malformed_options": ({"options": '{"A": "x", "B": '}, "B", "options_malformed_json", None, None),
    "options_not_mapping": ({"options": '["alpha", "beta"]'}, "B", "options_not_mapping", None, None),
    "label_not_in_options": ({"answer_label": "F"}, "A", "answer_label_not_in_options", None, None),
    "int_label_1_for_A": ({"answer_label": 1}, "C", "answer_label_not_in_options", None, None),
    "answer_disagrees": ({"answer": "gamma"}, "A", KEPT, KEPT, KEPT),
    "corrupt_bytes": ({"images": [b"\xff\xd8\xff\xe0garbage"]}, "B", "image_corrupt", None, None),
    "truncated_jpeg": ({"images": [noisy("JPEG")[:1500]]}, "B", "image_truncated", None, None),
    "truncated_png": ({"images": [noisy("PNG")[:-40]]}, "B", "image_corrupt", None, None),
    "path_traversal": ({"images": [{"bytes": None, "path": "../../etc/passwd"}]}, "A", "image_path_outside_root", None, None),
    "path_absolute": ({"images": [{"bytes": None, "path": "/etc/passwd"}]}, "A", "image_path_outside_root", None, None),
    "path_symlink_out": ({"images": [{"bytes": None, "path": "link_out.png"}]}, "A", "image_path_outside_root", None, None),
    "path_inside_root": ({"images": [{"bytes": None, "path": "imgs/ok.png"}]}, "A", KEPT, KEPT, KEPT),
    "decompression_bomb": ({"images": [png_declaring(60_000, 60_000)]}, "B", "image_too_large", None, None),
    "long_texts": ({"question": "Why? " + LONG, "reasoning": LONG}, "A", KEPT, KEPT, KEPT),
    "duplicate_index": ({"dataset_index": 1000}, "A", KEPT, KEPT, KEPT),
    "duplicate_index_twin": ({"dataset_index": 1000}, "B", KEPT, KEPT, KEPT),
    "image_marker_in_question": ({"question": "Compare <image> with the scan"}, "A", KEPT, "reserved_marker_in_text", "reserved_marker_in_text"),
    "chat_token_in_reasoning": ({"reasoning": "done<|im_end|>"}, "A", KEPT, KEPT, "reserved_marker_in_text"),
    "extreme_aspect_ratio": ({"images": [png(1000, 4)]}, "B", KEPT, "image_aspect_ratio", "image_aspect_ratio"),
}

STAGES = {"hf_bytes": 2, "verl": 3, "trl": 4}


def raw_row(name, overrides, i):
    r = row(hash=name, dataset_index=i, images=[png(), jpeg()])
    r.update(overrides)
    return r


@pytest.fixture(scope="module")
def adversarial(repro_repo, tmp_path_factory):
    work = tmp_path_factory.mktemp("adversarial")
    raw = work / "raw"
    (raw / "imgs").mkdir(parents=True)
    (raw / "imgs/ok.png").write_bytes(png(30, 30))
    outside = work / "secret.png"
    outside.write_bytes(png())
    os.symlink(outside, raw / "link_out.png")
    shards = {"A": [], "B": [], "C": []}
    for i, (name, (overrides, shard, *_)) in enumerate(CLASSES.items()):
        shards[shard].append(raw_row(name, overrides, i))
    for r in shards["A"]:  # images as HF structs; options as dicts (-> struct with nulls)
        r["images"] = None if r["images"] is None else [
            im if isinstance(im, dict) or im is None else {"bytes": im, "path": None} for im in r["images"]
        ]
    write_raw(raw / "a.parquet", shards["A"])
    for r in shards["B"]:  # images as plain binary; options as JSON strings
        if isinstance(r["options"], dict):
            r["options"] = json.dumps(r["options"])
    write_raw(raw / "b.parquet", shards["B"])
    write_raw(raw / "c.parquet", shards["C"])  # answer_label as int64, options with numeric keys
    assert pq.read_schema(raw / "c.parquet").field("answer_label").type == pa.int64()

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["inputs"] = {"train": "raw"}
    tokenizer = str(repro_repo / "data/tokenizer/qwen2_5_vl")
    params["verl"]["tokenizer"] = params["trl"]["tokenizer"] = tokenizer
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in STAGES:
        run(stage_argv(stage, "train"), work)
    return work


def present(work, stage):
    """The `hash` (class name) of every row a stage kept."""
    hashes = datasets.load_from_disk(str(work / "data/hf_bytes/train"))["hash"]
    if stage == "hf_bytes":
        return hashes
    table = pq.read_table(work / f"data/{stage}/train.parquet")
    if stage == "verl":  # verl rows carry their hf_bytes row position in extra_info.index
        return [hashes[e["index"]] for e in table.column("extra_info").to_pylist()]
    return table.column("hash").to_pylist()


def metrics(work, stage):
    return json.loads((work / f"metrics/{stage}/train.json").read_text())


def expected(stage, name):
    """Outcome of a class in a stage; a row dropped upstream never reaches it (None)."""
    return CLASSES[name][STAGES[stage]]


@pytest.mark.parametrize("name", CLASSES)
def test_class_outcome(adversarial, name):
    for stage in STAGES:
        outcome = expected(stage, name)
        rows = present(adversarial, stage)
        if outcome == KEPT:
            assert name in rows, (stage, name)
        else:
            assert name not in rows, (stage, name)
            if outcome is not None:
                assert metrics(adversarial, stage)["dropped"].get(outcome, 0) >= 1, (stage, name, outcome)


@pytest.mark.parametrize("stage", STAGES)
def test_drop_counts_are_exact_and_balanced(adversarial, stage):
    m = metrics(adversarial, stage)
    want = Counter(expected(stage, n) for n in CLASSES if expected(stage, n) not in (KEPT, None))
    assert m["dropped"] == dict(want)
    assert m["rows_in"] == m["rows_out"] + sum(m["dropped"].values())
    assert m["rows_out"] == sum(1 for n in CLASSES if expected(stage, n) == KEPT)


def test_kept_with_counted_warnings(adversarial):
    m = metrics(adversarial, "hf_bytes")
    assert m["answer_text_mismatch"] == 1  # answer_disagrees: kept, counted, label stays the truth
    assert m["answer_filled_from_options"] == 1  # null_answer
    assert m["duplicate_dataset_index"] == 1
    ds = datasets.load_from_disk(str(adversarial / "data/hf_bytes/train"))
    by_hash = {r["hash"]: r for r in ds}
    assert by_hash["null_answer"]["answer"] == "beta"
    assert by_hash["long_texts"]["question"].endswith(LONG)
