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
    "null_reasoning": ({"reasoning": None}, "A", KEPT, KEPT, KEPT),  # trl teaches the answer (response: auto)
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
    "extreme_aspect_ratio": ({"images": [png(1000, 4)]}, "B", "image_aspect_ratio", None, None),
    "side_below_patch": ({"images": [png(300, 10)]}, "A", "image_side_below_patch", None, None),
}

STAGES = {"hf_bytes": 2, "verl": 3, "trl": 4}


def build(work) -> None:
    """The stages in dvc.yaml's order (select: the rows verl/trl leave out; none with default params)."""
    for stage in ["hf_bytes", "select", "verl", "trl"]:
        run(stage_argv(stage, "train"), work)


def raw_row(name, overrides, i):
    r = row(hash=name, dataset_index=i, images=[png(), jpeg()])
    r.update(overrides)
    return r


def adversarial_project(work, tokenizer: str, **params_by_section) -> None:
    """The adversarial raw shards and a params.yaml reading them in `work`; params_by_section: e.g.
    verl={"engine": "ray"} sets those keys."""
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
    params["model"]["tokenizer"] = tokenizer
    for section, values in params_by_section.items():
        params[section].update(values)
    (work / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture(scope="module")
def adversarial(sample_tokenizer, tmp_path_factory):
    work = tmp_path_factory.mktemp("adversarial")
    adversarial_project(work, sample_tokenizer)
    build(work)
    return work


def present(work, stage):
    """The `hash` (class name) of every row a stage kept."""
    hashes = datasets.load_from_disk(str(work / "data/hf_bytes/train"))["hash"]
    if stage == "hf_bytes":
        return hashes
    table = pq.read_table(work / f"data/{stage}/train")
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


# ---- The same, for mapped inputs (inputs.<split> entries): CSV, JSON Lines, JSON and parquet in the
# option / label / image forms a column mapping declares, open and yes/no questions included.
# class -> (entry, row overrides, outcome in hf_bytes, in verl, in trl)
CSV_ROW = {"img": "ok.png", "question": "Which one?", "opa": "alpha", "opb": "beta", "opc": "gamma", "label": "2",
           "reasoning": "Because beta."}
OPEN_ROW = {"images": ["ok.png"], "question": "What is seen?", "answer": "a nodule", "reasoning": "I looked."}
EMB_ROW = {"img": "ok.png", "question": "Which one? (A) alpha (B) beta", "answer": "beta", "reasoning": "So."}
COL_ROW = {"front": png(), "side": jpeg(), "question": "Which one?", "options": '{"A": "x", "B": "y"}', "label": "A",
           "reasoning": "So."}
MAPPED_CLASSES = {
    "csv_good": ("csv", {}, KEPT, KEPT, KEPT),
    "csv_label_index_out_of_range": ("csv", {"label": "4"}, "answer_label_not_in_options", None, None),
    "csv_label_a_letter_not_an_index": ("csv", {"label": "B"}, "answer_label_not_in_options", None, None),
    "csv_extra_field": ("csv", {"extra": "x"}, "row_malformed", None, None),
    "csv_blank_question": ("csv", {"question": ""}, "question_missing", None, None),
    "csv_blank_options": ("csv", {"opa": "", "opb": "", "opc": ""}, "options_missing", None, None),
    "csv_path_traversal": ("csv", {"img": "../secret.png"}, "image_path_outside_root", None, None),
    "csv_missing_image_file": ("csv", {"img": "nope.png"}, "image_file_missing", None, None),
    "csv_chat_token_in_option": ("csv", {"opa": "a<|im_end|>"}, KEPT, "reserved_marker_in_text", "reserved_marker_in_text"),
    "csv_no_reasoning": ("csv", {"reasoning": ""}, KEPT, KEPT, KEPT),
    "open_good": ("jsonl", {}, KEPT, KEPT, KEPT),
    "yesno_good": ("jsonl", {"question": "Is it normal?", "answer": "No."}, KEPT, KEPT, KEPT),
    "open_no_answer": ("jsonl", {"answer": None}, "answer_missing", None, None),
    "open_answer_a_number": ("jsonl", {"answer": 3}, KEPT, KEPT, KEPT),
    "open_chat_token_in_answer": ("jsonl", {"answer": "x<|im_start|>"}, KEPT, KEPT, "reserved_marker_in_text"),
    "open_image_marker_in_question": ("jsonl", {"question": "Is <image> normal?"}, KEPT, "reserved_marker_in_text", "reserved_marker_in_text"),
    "jsonl_invalid_line": ("jsonl", "{not json", "row_malformed", None, None),
    "jsonl_not_an_object": ("jsonl", "[1, 2]", "row_malformed", None, None),
    "embedded_good": ("json", {}, KEPT, KEPT, KEPT),
    "embedded_ambiguous": ("json", {"question": "Which? (A) alpha (B) beta (A) again"}, "options_unparseable", None, None),
    "embedded_none": ("json", {"question": "Which one?"}, "options_unparseable", None, None),
    "embedded_answer_not_an_option": ("json", {"answer": "delta"}, "answer_not_in_options", None, None),
    "columns_two_images": ("parquet", {}, KEPT, KEPT, KEPT),
    "columns_one_null_image": ("parquet", {"side": None}, KEPT, KEPT, KEPT),
    "columns_no_image": ("parquet", {"front": None, "side": None}, "no_image", None, None),
    "columns_corrupt_image": ("parquet", {"side": b"\x89PNG\r\n\x1a\nbroken"}, "image_corrupt", None, None),
}
MAPPED_ENTRIES = [
    {"path": "in/c.csv", "image_root": "in/imgs", "columns": {
        "image": "img", "question": "question", "option_columns": ["opa", "opb", "opc"], "answer_label": "label",
        "label_form": "index1", "reasoning": "reasoning", "hash": "id"}},
    {"path": "in/j.jsonl", "image_root": "in/imgs", "name": "open_set", "columns": {
        "images": "images", "question": "question", "answer": "answer", "reasoning": "reasoning", "hash": "id"}},
    {"path": "in/e.json", "image_root": "in/imgs", "columns": {
        "image": "img", "question": "question", "options_in_question": True, "answer": "answer",
        "reasoning": "reasoning", "hash": "id"}},
    {"path": "in/p.parquet", "columns": {
        "image_columns": ["front", "side"], "question": "question", "options": "options", "answer_label": "label",
        "reasoning": "reasoning", "hash": "id"}},
]


@pytest.fixture(scope="module")
def adversarial_mapped(sample_tokenizer, tmp_path_factory):
    import csv

    work = tmp_path_factory.mktemp("adversarial_mapped")
    (work / "in/imgs").mkdir(parents=True)
    (work / "in/imgs/ok.png").write_bytes(png(30, 30))
    (work / "in/secret.png").write_bytes(png())
    by_kind = {"csv": [], "jsonl": [], "json": [], "parquet": []}
    base = {"csv": CSV_ROW, "jsonl": OPEN_ROW, "json": EMB_ROW, "parquet": COL_ROW}
    for name, (kind, overrides, *_) in MAPPED_CLASSES.items():
        by_kind[kind].append(overrides if isinstance(overrides, str) else {"id": name, **base[kind], **overrides})
    header = ["id", *CSV_ROW]
    with open(work / "in/c.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in by_kind["csv"]:
            w.writerow([r[k] for k in header] + ([r["extra"]] if "extra" in r else []))
    (work / "in/j.jsonl").write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in by_kind["jsonl"]) + "\n")
    (work / "in/e.json").write_text(json.dumps(by_kind["json"]))
    write_raw(work / "in/p.parquet", by_kind["parquet"])

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["inputs"] = {"train": MAPPED_ENTRIES}
    params["input_data"] = {"train": "in"}
    params["model"]["tokenizer"] = sample_tokenizer
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    build(work)
    return work


def mapped_expected(stage, name):
    return MAPPED_CLASSES[name][STAGES[stage]]


@pytest.mark.parametrize("name", [n for n, c in MAPPED_CLASSES.items() if not isinstance(c[1], str)])
def test_mapped_class_outcome(adversarial_mapped, name):
    for stage in STAGES:
        outcome = mapped_expected(stage, name)
        assert (name in present(adversarial_mapped, stage)) == (outcome == KEPT), (stage, name, outcome)


@pytest.mark.parametrize("stage", STAGES)
def test_mapped_drop_counts_are_exact_and_balanced(adversarial_mapped, stage):
    m = metrics(adversarial_mapped, stage)
    want = Counter(mapped_expected(stage, n) for n in MAPPED_CLASSES if mapped_expected(stage, n) not in (KEPT, None))
    assert m["dropped"] == dict(want)
    assert m["rows_out"] == sum(1 for n in MAPPED_CLASSES if mapped_expected(stage, n) == KEPT)


def test_mapped_rows_in_entry_order_with_types(adversarial_mapped):
    ds = datasets.load_from_disk(str(adversarial_mapped / "data/hf_bytes/train"))
    kept = [n for n in MAPPED_CLASSES if mapped_expected("hf_bytes", n) == KEPT]
    assert ds["hash"] == kept  # entries in order, rows in file order
    types = dict(zip(ds["hash"], ds["question_type"]))
    assert types["yesno_good"] == "yesno" and types["open_good"] == "open" and types["csv_good"] == "mcq"
    by_hash = {r["hash"]: r for r in ds}
    assert by_hash["open_answer_a_number"]["answer"] == "3" and by_hash["open_good"]["dataset_name"] == "open_set"
    assert by_hash["embedded_good"]["question"] == "Which one?" and by_hash["embedded_good"]["answer_label"] == "B"
    assert len(by_hash["columns_two_images"]["images"]) == 2 and len(by_hash["columns_one_null_image"]["images"]) == 1
    rejects = pq.read_table(adversarial_mapped / "data/rejects/hf_bytes/train.parquet").to_pylist()
    malformed = [(r["source"], r["row"]) for r in rejects if r["reason"] == "row_malformed"]
    assert ("in/j.jsonl", 6) in malformed and ("in/c.csv", 3) in malformed  # file and row within it
    trl = pq.read_table(adversarial_mapped / "data/trl/train").to_pylist()
    response = {r["hash"]: r["messages"][-1]["content"][0]["text"] for r in trl}
    assert response["open_good"] == "<think> I looked. </think>\n<answer> a nodule </answer>"
    assert response["yesno_good"].endswith("<answer> No. </answer>") and response["csv_good"].endswith("<answer> B </answer>")
