"""The verl stage's rows (docs/formats.md#3-verl), on the output of the real `dvc repro`."""
import json

import pyarrow as pa
import pyarrow.parquet as pq

from conftest import run, set_params
from vlprep.prompting.prompts import IMAGE_MARKER
from vlprep.core.schema import HF_BYTES_SCHEMA


def test_rows_follow_the_spec(repro_repo):
    for split in ["train", "test"]:
        rows = pq.read_table(repro_repo / f"data/verl/{split}").to_pylist()
        assert rows
        for i, r in enumerate(rows):
            content = r["prompt"][0]["content"]
            assert r["prompt"][0]["role"] == "user" and len(r["prompt"]) == 1
            assert content.count(IMAGE_MARKER) == len(r["images"]) >= 1
            info = r["extra_info"]
            assert content.startswith(IMAGE_MARKER * len(r["images"]) + "You will solve a problem/request.")
            assert f"Question: {info['question']}\n\nOptions:" in content
            assert r["reward_model"] == {"style": "rule", "ground_truth": info["answer"]} and info["answer"]
            assert info["answer_label"] in json.loads(info["options"])
            assert info["split"] == split and isinstance(info["index"], int)
            assert info["prompt_tokens"] > 0 and info["image_tokens"] >= 4 * len(r["images"])
            assert all(img["path"] is None and img["bytes"] for img in r["images"])
            assert r["ability"] == "medical_mcqa"
        assert len({r["extra_info"]["index"] for r in rows}) == len(rows)


# Written out by hand from docs/formats.md (the worked example, train dataset_index 47): three JPEGs of
# 56x133, 131x100 and 150x90 px -> Qwen2.5-VL's 28-px grid 2x5, 5x4 and 5x3 = 45 image tokens.
GOLDEN_CONTENT = (
    "<image><image><image>You will solve a problem/request. You should provide your thoughts within <think> "
    "</think> tags before providing the answer.\nWrite your final answer within <answer> </answer> tags.\n\n"
    "Question: Welche Modalität wurde für diese Aufnahme verwendet?\n\nOptions:\n\n"
    "A. CT with contrast\n\nB. MRI T2\n\nC. 肺炎\n\nD. Normal study"
)


def test_golden_row(repro_repo):
    rows = pq.read_table(repro_repo / "data/verl/train").to_pylist()
    (row,) = [r for r in rows if r["extra_info"]["dataset_index"] == 47]
    assert [len(i["bytes"]) for i in row.pop("images")] == [2963, 4966, 4952]
    assert row == {
        "data_source": "vlprep_medical_mcqa",
        "prompt": [{"role": "user", "content": GOLDEN_CONTENT}],
        "ability": "medical_mcqa",
        "reward_model": {"style": "rule", "ground_truth": "CT with contrast"},
        "extra_info": {
            "split": "train", "index": 43, "question": "Welche Modalität wurde für diese Aufnahme verwendet?",
            "options": '{"A": "CT with contrast", "B": "MRI T2", "C": "肺炎", "D": "Normal study"}',
            "answer_label": "A", "answer": "CT with contrast", "dataset_name": "sample_train_c",
            "dataset_index": 47, "prompt_tokens": 101, "image_tokens": 45, "question_type": "mcq",
        },
    }


def test_shuffle_and_max_rows(scratch_repo):
    before = pq.read_table(scratch_repo / "data/verl/train").column("extra_info").to_pylist()
    set_params(scratch_repo, **{"verl.shuffle": True, "verl.max_rows": 25})
    out = run(["dvc", "repro"], scratch_repo).stdout
    assert "Running stage 'verl@train'" in out and "Running stage 'hf_bytes@train'" not in out
    after = pq.read_table(scratch_repo / "data/verl/train").column("extra_info").to_pylist()
    indexes = [e["index"] for e in after]
    assert len(after) == 25 and indexes != sorted(indexes)
    assert set(indexes) <= {e["index"] for e in before}
    m = json.loads((scratch_repo / "metrics/verl/train.json").read_text())
    assert m["dropped"]["beyond_max_rows"] == len(before) - 25
    assert m["rows_in"] == m["rows_out"] + sum(m["dropped"].values())


def test_resize_to_max_pixels_reencodes_only_large_images(repro_repo):
    import io

    from PIL import Image

    from builders import jpeg, png
    from conftest import target_config
    from vlprep.targets.verl import TARGET as VERL
    from vlprep.prompting.profiles import image_tokens, smart_resize

    small, large = png(60, 40), jpeg(400, 300)
    row = {"images": [{"bytes": small, "path": None}, {"bytes": large, "path": None}], "question": "q",
           "options": '{"A": "a", "B": "b"}', "answer_label": "A", "answer": "a", "reasoning": None,
           "dataset_name": "d", "dataset_index": 1, "hash": None, "misc": None}
    max_pixels = 100 * 28 * 28  # 78,400: the 400x300 image is above, the 60x40 one below
    params = target_config("verl", tokenizer=str(repro_repo / "data/tokenizer/qwen2_5_vl"), max_pixels=max_pixels,
                           resize_to_max_pixels=True)
    table, stats = VERL.convert_batch(pa.Table.from_pylist([row], schema=HF_BYTES_SCHEMA), params, "train")
    out = table.to_pylist()[0]
    assert out["images"][0]["bytes"] == small  # untouched
    with Image.open(io.BytesIO(out["images"][1]["bytes"])) as im:
        assert im.format == "JPEG" and im.size[::-1] == smart_resize(300, 400, max_pixels=max_pixels)
        assert im.size[0] * im.size[1] <= max_pixels
    assert stats.counts["images_resized"] == 1
    # the token count is what the processor gives for the original image (it is already that size now)
    assert out["extra_info"]["image_tokens"] == image_tokens(60, 40) + image_tokens(400, 300, max_pixels=max_pixels)
