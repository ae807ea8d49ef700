"""The llamafactory, swift and swift_grpo stages: one golden row of each format, the token budget,
dataset_info.json, and the ms-swift reward plugin. (The trainers' own loaders run
on the `dvc repro` output in test_trainers2_compat.py.)"""
import importlib.util
import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import REPO, target_config
from test_trl_stage import hf_row
from vlprep.core.schema import HF_BYTES_SCHEMA
from vlprep.products.llamafactory_info import dataset_info
from vlprep.targets.llamafactory import TARGET as LLAMAFACTORY
from vlprep.targets.swift import TARGET as SWIFT
from vlprep.targets.swift_grpo import TARGET as SWIFT_GRPO
from vlprep.targets.trl import TARGET as TRL

USER = (
    "<image><image>"
    "You will solve a problem/request. You should provide your thoughts within <think> </think> tags "
    "before providing the answer.\nWrite your final answer within <answer> </answer> tags.\n\n"
    "Question: Is the lesion benign?\n\nOptions:\n\nA. yes\n\nB. no"
)
# LLaMA-Factory sharegpt and ms-swift `swift sft`: the same row (hf_row(), images aside).
GOLDEN_SFT = {
    "messages": [
        {"role": "user", "content": USER},
        {"role": "assistant", "content": "<think> Smooth margins. </think>\n<answer> A </answer>"},
    ],
    "question": "Is the lesion benign?",
    "options": '{"B": "no", "A": "yes"}',
    "answer_label": "A",
    "answer": "yes",
    "dataset_name": "d",
    "dataset_index": 7,
    "prompt_tokens": 77,
    "image_tokens": 12,  # (56/28)^2 + (56/28)*(112/28)
    "total_tokens": 107,  # as trl's for the same row: the rendered conversation, each pad -> its image's tokens
}
# ms-swift GRPO: the user turn only, plus the reference the reward functions receive.
GOLDEN_GRPO = {
    "messages": [{"role": "user", "content": USER}],
    "solution": "A",
    "question": "Is the lesion benign?",
    "options": '{"B": "no", "A": "yes"}',
    "answer_label": "A",
    "answer": "yes",
    "dataset_name": "d",
    "dataset_index": 7,
    "prompt_tokens": 77,
    "image_tokens": 12,
}
SFT_TARGETS = {"llamafactory": LLAMAFACTORY, "swift": SWIFT}


@pytest.fixture(scope="module")
def tokenizer_dir(sample_tokenizer):
    return sample_tokenizer


def convert_one(target, row, params):
    table, stats = target.convert_batch(pa.Table.from_pylist([row], schema=HF_BYTES_SCHEMA), params, "train")
    return (table.to_pylist() or [None])[0], stats


def params_of(name, tokenizer_dir, **update):
    return target_config(name, tokenizer=tokenizer_dir, **update)


@pytest.mark.parametrize("name", sorted(SFT_TARGETS))
def test_golden_sft_row(name, tokenizer_dir):
    row = hf_row()
    out, _ = convert_one(SFT_TARGETS[name], row, params_of(name, tokenizer_dir))
    images = out.pop("images")
    assert out == GOLDEN_SFT
    assert images == row["images"]  # byte-identical, in order, path null
    trl, _ = convert_one(TRL, row, params_of("trl", tokenizer_dir))
    assert out["messages"][1]["content"] == trl["messages"][1]["content"][0]["text"]  # trl's response text
    assert (out["prompt_tokens"], out["image_tokens"], out["total_tokens"]) == (
        trl["prompt_tokens"], trl["image_tokens"], trl["total_tokens"])


def test_golden_grpo_row(tokenizer_dir):
    row = hf_row(reasoning=None)  # GRPO needs no reasoning: the row is kept
    out, _ = convert_one(SWIFT_GRPO, row, params_of("swift_grpo", tokenizer_dir))
    assert out.pop("images") == row["images"]
    assert out == GOLDEN_GRPO


@pytest.mark.parametrize("name", sorted(SFT_TARGETS))
def test_sft_budget_and_missing_reasoning(name, tokenizer_dir):
    target = SFT_TARGETS[name]
    out, stats = convert_one(target, hf_row(reasoning="  "), params_of(name, tokenizer_dir, response="reasoning"))
    assert out is None and stats.dropped == {"reasoning_missing": 1}
    out, stats = convert_one(target, hf_row(reasoning="  "), params_of(name, tokenizer_dir, response="auto"))
    assert out["messages"][1]["content"] == "<think> </think>\n<answer> A </answer>" and not stats.dropped
    out, stats = convert_one(target, hf_row(), params_of(name, tokenizer_dir, max_total_tokens=106))
    assert out is None and stats.dropped == {"over_max_total_tokens": 1}
    out, _ = convert_one(target, hf_row(), params_of(name, tokenizer_dir, max_total_tokens=107))
    assert out is not None  # inclusive
    # max_pixels caps each image's tokens, as Qwen's processor resizes: the 112x56 image shrinks
    out, _ = convert_one(target, hf_row(), params_of(name, tokenizer_dir, max_pixels=56 * 56))
    assert 4 < out["image_tokens"] < 12 and out["total_tokens"] == 107 - (12 - out["image_tokens"])


def test_grpo_budget_is_the_prompt(tokenizer_dir):
    p = params_of("swift_grpo", tokenizer_dir, max_prompt_tokens=77 + 12 - 1)
    out, stats = convert_one(SWIFT_GRPO, hf_row(), p)
    assert out is None and stats.dropped == {"over_max_prompt_tokens": 1}
    out, _ = convert_one(SWIFT_GRPO, hf_row(), p.replace(max_prompt_tokens=89))
    assert out is not None


def test_dataset_info_names_every_split():
    info = dataset_info(["train", "test"])
    assert list(info) == ["vlprep_train", "vlprep_test"]
    assert info["vlprep_test"] == {
        "file_name": "llamafactory/test",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                 "assistant_tag": "assistant", "system_tag": "system"},
    }
    assert dataset_info([]) == {}


def test_repro_outputs(all_targets_repo):
    """What `dvc repro` wrote with every target on: dataset_info.json naming the split directories,
    images that `datasets` decodes (List(Image()) metadata), token counts in the metrics."""
    repo = all_targets_repo
    assert json.loads((repo / "data/dataset_info.json").read_text()) == dataset_info(["train", "test"])
    for name, counts in (("llamafactory", "total_tokens"), ("swift", "total_tokens"), ("swift_grpo", "prompt_total_tokens")):
        path = repo / "data" / name / "train"
        assert pq.read_schema(path / "part-00000.parquet").metadata[b"huggingface"]
        ds = datasets.load_dataset("parquet", data_files=str(path / "*.parquet"), split="train")
        for row in ds.select(range(5)):
            assert all(isinstance(im, Image.Image) for im in row["images"])
            assert row["messages"][0]["content"].count("<image>") == len(row["images"]) > 0
        metrics = json.loads((repo / "metrics" / name / "train.json").read_text())
        assert metrics["rows_out"] == len(ds) and metrics[counts]["max"] == max(
            ds["total_tokens"] if name != "swift_grpo" else [a + b for a, b in zip(ds["prompt_tokens"], ds["image_tokens"])])


def load_plugin():
    spec = importlib.util.spec_from_file_location("swift_reward_under_test", REPO / "src/vlprep/scoring/swift_reward.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_swift_reward_plugin_scores_like_compute_score():
    plugin = load_plugin()
    assert plugin.register() is False  # no ms-swift here: nothing to register, and no error
    options = json.dumps({"A": "Left ventricle", "B": "Pneumothorax"})
    completions = [
        "<think> x </think>\n<answer> B </answer>",
        "<think> x </think><answer>pneumothorax</answer>",
        "<think> x </think><answer>A</answer>",
        "<answer>B</answer>",  # no think: format fails
    ]
    cols = {"answer": ["Pneumothorax"] * 4, "answer_label": ["B"] * 4, "options": [options] * 4,
            "solution": ["B"] * 4, "images": [[]] * 4}  # ms-swift passes every column
    assert plugin.VlprepReward()(completions, **cols) == [1.0, 1.0, 0.0, 0.0]
    assert plugin.VlprepAcc(args=None)(completions, **cols) == [1.0, 1.0, 0.0, 1.0]
    assert plugin.VlprepFormat()(completions, **cols) == [1.0, 1.0, 1.0, 0.0]
    assert set(plugin.REWARD_FUNCS) == {"vlprep", "vlprep_acc", "vlprep_format"}
