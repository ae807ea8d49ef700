"""Dataset cards: the YAML metadata is what the Hub and `datasets` read (checked with their own parsers),
and the cards the pipeline writes describe the data next to them (splits, rows, drops, params)."""
import json

import datasets
import pyarrow.parquet as pq
import pytest
import yaml
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard

from vlprep.products.card import Card, StageDrops, features_from_arrow, features_yaml, render_card
from vlprep.products.target_card import describe, loading_files
from vlprep.core.schema import HF_BYTES_FEATURES, TRL_FEATURES, VERL_SCHEMA


@pytest.mark.parametrize("features", [HF_BYTES_FEATURES, TRL_FEATURES, features_from_arrow(VERL_SCHEMA)],
                         ids=["hf_bytes", "trl", "verl"])
def test_features_yaml_is_what_datasets_writes(features):
    assert features_yaml(features) == datasets.Features.from_dict(features)._to_yaml_list()
    # and reads back as the same features
    assert datasets.Features._from_yaml_list(features_yaml(features)) == datasets.Features.from_dict(features)


def test_verl_features_are_what_datasets_infers():
    assert datasets.Features.from_dict(features_from_arrow(VERL_SCHEMA)) == datasets.Features.from_arrow_schema(VERL_SCHEMA)


def sample_card(**kw) -> Card:
    what, tasks = describe("trl")
    base = dict(product="trl", what=what, task_categories=tasks, pretty_name="Demo <VQA>", description="A | demo.", license="cc-by-4.0", homepage="",
                citation="", features=TRL_FEATURES, splits={"train": 10, "test": 3},
                files={"train": "train.parquet", "test": "test.parquet"},
                params={"trl": {"max_total_tokens": None}},
                drops=[StageDrops("hf_bytes", "train", 12, 11, {"no_image": 1}),
                       StageDrops("trl", "train", 11, 10, {"reasoning_missing": 1}),
                       StageDrops("hf_bytes", "test", 3, 3, {}), StageDrops("trl", "test", 3, 3, {})],
                loading=loading_files("trl", {"train": "train.parquet", "test": "test.parquet"}, hub=False))
    return Card(**{**base, **kw})


def test_card_metadata_parses_with_huggingface_hub():
    text = render_card(sample_card())
    card = DatasetCard(text)
    data = card.data.to_dict()
    assert data["license"] == "cc-by-4.0"
    assert data["pretty_name"] == "Demo <VQA>"
    assert data["task_categories"] == ["visual-question-answering", "image-text-to-text"]
    assert data["size_categories"] == ["n<1K"]
    assert data["dataset_info"]["splits"] == [{"name": "train", "num_examples": 10}, {"name": "test", "num_examples": 3}]
    info = DatasetInfosDict.from_dataset_card_data(card.data)
    assert info["default"].features == datasets.Features.from_dict(TRL_FEATURES)
    for section in ["## Splits", "## Features", "## How it was built", "## Dropped rows", "### `datasets`",
                    "### TRL", "`reasoning_missing`", "`no_image`"]:
        assert section in card.text, section
    assert render_card(sample_card()) == text  # deterministic


def test_hub_card_has_configs_that_datasets_reads():
    configs = [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    card = DatasetCard(render_card(sample_card(configs=configs, splits={"train": 10}, files={"train": "data/train-*"})))
    assert card.data.to_dict()["configs"] == configs


# --- the cards `dvc repro` writes -----------------------------------------------------------------


def card_of(path):
    card = DatasetCard(path.read_text())
    return card, card.data.to_dict()


@pytest.mark.parametrize("split", ["train", "test"])
def test_each_hf_bytes_split_has_its_card_and_a_real_description(repro_repo, split):
    out = repro_repo / "data/hf_bytes" / split
    ds = datasets.load_from_disk(str(out))
    params = yaml.safe_load((repro_repo / "params.yaml").read_text())
    card, data = card_of(out / "README.md")
    assert data["license"] == params["card"]["license"]
    assert data["dataset_info"]["splits"] == [{"name": split, "num_examples": len(ds)}]
    assert datasets.Features._from_yaml_list(data["dataset_info"]["features"]) == ds.features
    metrics = json.loads((repro_repo / "metrics/hf_bytes" / f"{split}.json").read_text())
    for reason, count in metrics["dropped"].items():
        assert f"| hf_bytes | `{reason}` |" in card.text and f"| {count} |" in card.text
    assert f"keep_first_k_images: {params['hf_bytes']['keep_first_k_images']}" in card.text
    assert "num_proc" not in card.text  # the bytes must not depend on the worker count
    assert f'load_from_disk("data/hf_bytes/{split}")' in card.text
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["description"].startswith(params["card"]["pretty_name"]) and info["license"] == params["card"]["license"]
    assert ds.info.description == info["description"]


@pytest.mark.parametrize("product,splits", [("verl", ["train", "test"]), ("trl", ["train"])])
def test_each_built_target_has_a_card_describing_its_files(repro_repo, product, splits):
    card, data = card_of(repro_repo / "data/cards" / product / "README.md")
    assert data["dataset_info"]["splits"] == [
        {"name": s, "num_examples": pq.read_table(repro_repo / "data" / product / s, columns=[]).num_rows}  # its parts
        for s in splits]
    schema = pq.read_schema(repro_repo / "data" / product / splits[0] / "part-00000.parquet")
    assert datasets.Features._from_yaml_list(data["dataset_info"]["features"]) == \
        datasets.Features.from_dict(features_from_arrow(schema))
    for split in splits:
        for stage in ("hf_bytes", product):
            m = json.loads((repro_repo / "metrics" / stage / f"{split}.json").read_text())
            assert f"| {stage} | {split} | {m['rows_in']} | {m['rows_out']} |" in card.text
    assert {"verl": "### verl", "trl": "### TRL"}[product] in card.text and "### `datasets`" in card.text
    assert sorted(p.name for p in (repro_repo / "data/cards").iterdir()) == ["trl", "verl"]  # the built targets only
