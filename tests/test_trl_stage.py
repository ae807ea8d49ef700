"""The trl stage: golden chat text, token budget, and the parquet as TRL loads it."""
import json
from collections import Counter

import datasets
import pyarrow as pa
import pytest
from PIL import Image

from builders import png
from conftest import target_config
from vlprep.core.schema import HF_BYTES_SCHEMA
from vlprep.targets.trl import TARGET as TRL
from vlprep.prompting.tokens import load_tokenizer

GOLDEN = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|>"
    "You will solve a problem/request. You should provide your thoughts within <think> </think> tags "
    "before providing the answer.\nWrite your final answer within <answer> </answer> tags.\n\n"
    "Question: Is the lesion benign?\n\nOptions:\n\nA. yes\n\nB. no"
    "<|im_end|>\n"
    "<|im_start|>assistant\n"
    "<think> Smooth margins. </think>\n<answer> A </answer>"
    "<|im_end|>\n"
)


@pytest.fixture(scope="module")
def config(repro_repo):
    return target_config("trl", tokenizer=str(repro_repo / "data/tokenizer/qwen2_5_vl"))


def hf_row(**overrides):
    row = {
        "images": [{"bytes": png(56, 56), "path": None}, {"bytes": png(112, 56), "path": None}],
        "question": "Is the lesion benign?",
        "options": json.dumps({"B": "no", "A": "yes"}),
        "answer_label": "A",
        "answer": "yes",
        "reasoning": " Smooth margins.\n",
        "dataset_name": "d",
        "dataset_index": 7,
        "hash": None,
        "misc": None,
    }
    row.update(overrides)
    return row


def convert_one(row, config):
    table, stats = TRL.convert_batch(pa.Table.from_pylist([row], schema=HF_BYTES_SCHEMA), config, "train")
    return (table.to_pylist() or [None])[0], stats


def test_golden_text_and_token_budget(config):
    out, _ = convert_one(hf_row(), config)
    assert out["text"] == GOLDEN
    assert [p["type"] for p in out["messages"][0]["content"]] == ["image", "image", "text"]
    assert out["image_tokens"] == 4 + 8  # (56/28)^2 and (56/28)*(112/28)
    tok = load_tokenizer(config.model.tokenizer)
    # as the model sees it: each of the 2 <|image_pad|> (id 151655) expanded to its image's tokens
    ids = tok(GOLDEN, add_special_tokens=False)["input_ids"]
    assert ids.count(151655) == 2
    assert out["total_tokens"] == len(ids) - 2 + 12
    prompt_ids = tok.apply_chat_template([out["messages"][0]], tokenize=True, add_generation_prompt=True)
    prompt_ids = prompt_ids["input_ids"] if hasattr(prompt_ids, "keys") else prompt_ids
    assert out["prompt_tokens"] == len(prompt_ids) - 2
    assert GOLDEN.startswith(tok.decode(prompt_ids))


def test_blank_reasoning_is_dropped_with_a_reason_when_reasoning_is_required(config):
    for reasoning in (None, "", "  \n"):
        out, stats = convert_one(hf_row(reasoning=reasoning), config.replace(response="reasoning"))
        assert out is None and stats.dropped == {"reasoning_missing": 1}


ANSWER_ONLY = "<|im_start|>assistant\n<think> </think>\n<answer> A </answer><|im_end|>\n"


def test_response_auto_teaches_the_answer_where_a_row_has_no_reasoning(config):
    for reasoning in (None, "", "  \n"):
        out, stats = convert_one(hf_row(reasoning=reasoning), config.replace(response="auto"))
        assert out["text"] == GOLDEN.replace("<|im_start|>assistant\n<think> Smooth margins. </think>\n<answer> A </answer><|im_end|>\n", ANSWER_ONLY)
        assert stats.counts["response_answer"] == 1 and not stats.dropped
    out, stats = convert_one(hf_row(), config.replace(response="auto"))
    assert out["text"] == GOLDEN and stats.counts["response_reasoning"] == 1
    out, stats = convert_one(hf_row(), config.replace(response="answer"))  # reasoning there, not taught
    assert out["text"].endswith(ANSWER_ONLY) and stats.counts["response_answer"] == 1


def test_budget_drops_long_rows(config):
    tight = config.replace(max_total_tokens=50)
    out, stats = convert_one(hf_row(), tight)
    assert out is None and stats.dropped == {"over_max_total_tokens": 1}
    out, stats = convert_one(hf_row(), config.replace(max_total_tokens=out_total(config)))
    assert out is not None  # the limit is inclusive


def out_total(config):
    return convert_one(hf_row(), config)[0]["total_tokens"]


def test_trl_parquet_loads_as_trl_needs(repro_repo):
    ds = datasets.load_dataset("parquet", data_files=str(repro_repo / "data/trl/train/part-*.parquet"), split="train")
    hf = datasets.load_from_disk(str(repro_repo / "data/hf_bytes/train"))
    assert set(hf.column_names) < set(ds.column_names)
    for row in ds:
        assert all(isinstance(im, Image.Image) for im in row["images"])
        parts = [p for m in row["messages"] for p in m["content"]]
        assert all(set(p) == {"type", "text"} for p in parts)  # no image/image_url field at all
        assert Counter(p["type"] for p in parts)["image"] == len(row["images"])
        assert row["text"].count("<|image_pad|>") == len(row["images"])
        assert row["total_tokens"] > row["prompt_tokens"] > 0
        assert (row["reasoning"] or "").strip() in row["text"]  # the reasoning where there is one (response: auto)
