"""Every preset on a small file in its source's exact schema and file type, known quirks included; a
mixed-input split (two public schemas into one train split); determinism across runs and num_proc."""
import json
from collections import Counter

import datasets
import pytest
import yaml

from byo_builders import BUILDERS, KEPT, ROW_KEY
from conftest import REPO, md5_tree, run, set_params, stage_argv
from vlprep.core.sections import PRESET_NAMES, ColumnMapping
from vlprep.ingest.presets import PRESETS


def write_params(work, inputs, **hf_bytes):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["inputs"] = {"train": inputs}
    params["input_data"] = {"train": str(work)}
    params["hf_bytes"].update(hf_bytes)
    (work / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))


def hf_bytes(work, check=True):
    return run(stage_argv("hf_bytes", "train"), work, check=check)


def load(work):
    return list(datasets.load_from_disk(str(work / "data/hf_bytes/train")))


def metrics(work, stage="hf_bytes"):
    return json.loads((work / f"metrics/{stage}/train.json").read_text())


def test_presets_match_their_names_and_validate():
    assert tuple(PRESETS) == PRESET_NAMES
    for name, preset in PRESETS.items():
        ColumnMapping.model_validate(preset["columns"])
        assert preset["format"] in ("parquet", "csv", "json", "jsonl")
        assert preset["source"] and preset["licence"], name
    page = (REPO / "docs/inputs.md").read_text()
    table = page[page.index("## Presets"):page.index("## Column mapping")]
    assert all(f"| `{name}` |" in table for name in PRESETS)


@pytest.mark.parametrize("preset", list(BUILDERS))
def test_preset_on_its_own_schema(tmp_path, preset):
    entry, expected = BUILDERS[preset](tmp_path / "src")
    write_params(tmp_path, [entry])
    proc = hf_bytes(tmp_path)
    assert "warning" not in proc.stderr
    rows = load(tmp_path)
    kept = {ROW_KEY[preset](r) for r in rows}
    assert kept == {k for k, e in expected.items() if e == KEPT}
    m = metrics(tmp_path)
    assert m["dropped"] == dict(Counter(e for e in expected.values() if e != KEPT))
    assert m["rows_in"] == m["rows_out"] + m["rows_dropped"]
    for r in rows:
        assert r["images"] and all(img["bytes"] for img in r["images"])
        if r["question_type"] == "mcq":
            assert r["answer_label"] in json.loads(r["options"])
        else:
            assert r["options"] is None and r["answer_label"] is None and r["answer"]
        if entry.get("name") and preset != "reference":
            assert r["dataset_name"] == entry["name"]
    CHECKS[preset](rows)


def check_reference(rows):
    by_hash = {r["hash"]: r for r in rows}
    assert by_hash["ref-good"]["dataset_name"] == "my_reference"  # `name` fills a null dataset_name
    assert by_hash["ref-other"]["dataset_name"] == "unit"  # and leaves a present one alone


def check_pmc_vqa(rows):
    by_q = {r["question"]: r for r in rows}
    good = by_q["What is the modality?"]
    assert json.loads(good["options"]) == {"A": "CT", "B": "MRI", "C": "X-ray", "D": "PET"}  # own prefixes gone
    assert (good["answer_label"], good["answer"], good["question_type"]) == ("B", "MRI", "mcq")
    assert json.loads(by_q["How many lesions?"]["options"]) == {"A": "One", "B": "Two", "C": "Three"}
    assert 'Which "region",\nin the image?' in by_q  # CSV quoting, newline inside a field


def check_slake(rows):
    types = {r["question"]: r["question_type"] for r in rows}
    assert types == {"What modality is used?": "open", "Is the lung healthy?": "yesno",
                     "Does the picture contain liver?": "yesno", "Which side is the lesion on?": "open",
                     "这张图片是什么模态?": "open"}
    zh = next(r for r in rows if r["question"].startswith("这"))
    assert zh["answer"] == "核磁共振" and json.loads(zh["misc"])["q_lang"] == "zh"
    assert all(r["dataset_index"] >= 1000 for r in rows)


def check_vqa_rad(rows):
    assert Counter(r["question_type"] for r in rows) == {"yesno": 3, "open": 1}


def check_path_vqa(rows):
    assert Counter(r["question_type"] for r in rows) == {"yesno": 2, "open": 1}
    assert all(r["dataset_name"] is None for r in rows)  # no name given, none in the data


def check_omnimedvqa(rows):
    by_q = {r["question"][:3]: r for r in rows}
    assert by_q["Q0:"]["answer_label"] == "C" and len(json.loads(by_q["Q0:"]["options"])) == 4
    assert json.loads(by_q["Q1:"]["options"]) == {"A": "Yes", "B": "No"} and by_q["Q1:"]["answer_label"] == "B"
    assert by_q["Q1:"]["question_type"] == "mcq"  # options given: multiple choice, even with a yes/no answer
    assert all(r["dataset_name"] == "ACRIMA" and r["hash"].startswith("ACRIMA_") for r in rows)


def check_medxpertqa(rows):
    r = next(r for r in rows if r["hash"] == "MM-0")
    assert r["question"] == "A 54-year-old man (MM-0) has chest pain. What is the diagnosis?"  # choices stripped
    assert r["answer_label"] == "C" and r["answer"] == "Pulmonary embolism" and len(r["images"]) == 2
    assert json.loads(r["misc"]) == {"body_system": "Cardiovascular", "medical_task": "Diagnosis", "question_type": "Reasoning"}


CHECKS = {"reference": check_reference, "pmc_vqa": check_pmc_vqa, "slake": check_slake, "vqa_rad": check_vqa_rad,
          "path_vqa": check_path_vqa, "omnimedvqa": check_omnimedvqa, "medxpertqa": check_medxpertqa}


def test_mixed_split_concatenates_inputs_in_order_and_is_deterministic(tmp_path, sample_tokenizer):
    """PMC-VQA (CSV, MC) + SLAKE (JSON, open) into one train split, then verl and trl on it."""
    pmc, pmc_expected = BUILDERS["pmc_vqa"](tmp_path / "src")
    sl, slake_expected = BUILDERS["slake"](tmp_path / "src")
    write_params(tmp_path, [pmc, sl])
    hf_bytes(tmp_path)
    rows = load(tmp_path)
    names = [r["dataset_name"] for r in rows]
    n_pmc = sum(e == KEPT for e in pmc_expected.values())
    assert names == ["pmc_vqa"] * n_pmc + ["slake"] * sum(e == KEPT for e in slake_expected.values())
    first = md5_tree(tmp_path / "data/hf_bytes")
    # the same bytes again, and with two processes (and rows per unit small enough to make many units)
    write_params(tmp_path, [pmc, sl], num_proc=2)
    hf_bytes(tmp_path)
    assert md5_tree(tmp_path / "data/hf_bytes") == first

    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["model"]["tokenizer"] = sample_tokenizer
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    run(stage_argv("select", "train"), tmp_path)  # the rows verl/trl leave out (none here)
    run(stage_argv("verl", "train"), tmp_path)
    import pyarrow.parquet as pq

    verl = pq.read_table(tmp_path / "data/verl/train").to_pylist()
    assert [v["extra_info"]["question_type"] for v in verl] == [r["question_type"] for r in rows]
    for v, r in zip(verl, rows):
        content = v["prompt"][0]["content"]
        assert ("\n\nOptions:" in content) == (r["question_type"] == "mcq")
        assert v["reward_model"]["ground_truth"] == r["answer"]
    # no reasoning in either source: trl teaches the answer (response: auto); requiring reasoning keeps
    # nothing, and the stage says why and which param changes it
    run(stage_argv("trl", "train"), tmp_path)
    assert pq.read_metadata(next((tmp_path / "data/trl/train").glob("*.parquet"))).num_rows > 0
    set_params(tmp_path, **{"trl.response": "reasoning"})
    proc = run(stage_argv("trl", "train"), tmp_path, check=False)
    assert proc.returncode != 0 and "reasoning_missing" in proc.stderr
    assert "to keep them, reasoning_missing: set trl.response: auto" in proc.stderr


def test_keep_only_mcq_rows(tmp_path):
    pmc, _ = BUILDERS["pmc_vqa"](tmp_path / "src")
    sl, slake_expected = BUILDERS["slake"](tmp_path / "src")
    write_params(tmp_path, [pmc, sl], question_types=["mcq"])
    hf_bytes(tmp_path)
    assert {r["question_type"] for r in load(tmp_path)} == {"mcq"}
    # the type is checked before images are read: the row with a bad image path is excluded as well
    excluded = sum(e in (KEPT, "image_path_outside_root") for e in slake_expected.values())
    assert metrics(tmp_path)["dropped"]["question_type_excluded"] == excluded


def test_text_files_stream_in_chunks(tmp_path, monkeypatch):
    """CSV and JSON Lines are cut into units at exact byte offsets (quoted newlines included)."""
    from vlprep.io import sources, text_sources

    d = tmp_path
    with open(d / "a.csv", "w", newline="", encoding="utf-8-sig") as f:  # with a BOM, as Excel writes
        import csv

        w = csv.writer(f)
        w.writerow(["q", "n"])
        for i in range(10):
            w.writerow([f"line one {i}\nline \"two\", {i}", i])
            if i == 4:
                f.write("\n")  # a blank line is no row
    units, cols = text_sources.plan_text_units(d / "a.csv", "csv", rows_per_unit=3)
    assert cols == ["q", "n"] and [u.num_rows for u in units] == [3, 3, 3, 1]
    rows = [r for u in units for r in sources.read_rows(u)]
    assert [r["n"] for r in rows] == [str(i) for i in range(10)] and rows[7]["q"] == 'line one 7\nline "two", 7'
    (d / "b.jsonl").write_text("\n".join(json.dumps({"i": i, "t": "é"}) for i in range(7)) + "\n\n{broken\n")
    units, cols = text_sources.plan_text_units(d / "b.jsonl", "jsonl", rows_per_unit=4)
    rows = [r for u in units for r in sources.read_rows(u)]
    assert cols == ["i", "t"] and [r.get("i") for r in rows] == [*range(7), None] and text_sources.MALFORMED in rows[-1]
