"""params.yaml is validated per section at stage start: a wrong type, a value outside the allowed set, an
unknown key (a typo) or a missing key stops the stage with one line naming the key."""
import pytest
import yaml

from conftest import REPO, run, stage_argv
from vlprep.core.params import ParamsError, load_section, validate
from vlprep.core.sections import SECTIONS

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_the_shipped_params_are_valid(section):
    load_section(section, REPO / "params.yaml")


# One bad value per key family: (section, key, value, words the message must contain)
BAD = [
    ("hf_bytes", "bad_image", "drop_images", ["hf_bytes.bad_image", "'drop_row' or 'drop_image'", "drop_images"]),
    ("hf_bytes", "strict_image", "yes", ["hf_bytes.strict_image", "boolean"]),
    ("hf_bytes", "keep_first_k_images", -1, ["hf_bytes.keep_first_k_images", "greater than or equal to 0"]),
    ("hf_bytes", "num_proc", 0, ["hf_bytes.num_proc", "greater than 0"]),
    ("hf_bytes", "image_root", 5, ["hf_bytes.image_root", "string"]),
    ("raw", "image_size", [32], ["raw.image_size", "at least 2"]),
    ("raw", "rows", {"train": "many"}, ["raw.rows.train", "integer"]),
    ("verl", "max_prompt_tokens", "4k", ["verl.max_prompt_tokens", "integer"]),
    ("verl", "shuffle", 1, ["verl.shuffle", "boolean"]),
    ("verl", "row_group_size", 0, ["verl.row_group_size", "greater than 0"]),
    ("targets", "trl", "train", ["targets.trl", "list"]),
    ("targets", "verl", ["train", "a/b"], ["targets.verl.1", "pattern"]),
    ("model", "tokenizer", None, ["model.tokenizer", "string"]),
    ("trl", "response", "think", ["trl.response", "'auto', 'reasoning' or 'answer'"]),
    ("tokenizer", "out", ["a"], ["tokenizer.out", "string"]),
]


@pytest.mark.parametrize("section, key, value, words", BAD, ids=[f"{s}.{k}" for s, k, *_ in BAD])
def test_a_bad_value_names_the_key_and_what_it_accepts(section, key, value, words):
    with pytest.raises(ParamsError) as e:
        validate(section, {**PARAMS[section], key: value})
    for word in words:
        assert word in str(e.value)


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_unknown_and_missing_keys_are_errors(section):
    values = dict(PARAMS[section])
    dropped_key = sorted(values)[0]
    del values[dropped_key]
    values["num_porc"] = 2
    with pytest.raises(ParamsError) as e:
        validate(section, values)
    assert f"{section}.num_porc: Extra inputs are not permitted" in str(e.value)
    assert f"{section}.{dropped_key}: Field required" in str(e.value)


def test_a_stage_stops_with_one_line_naming_the_key(tmp_path):
    params = {**PARAMS, "hf_bytes": {**PARAMS["hf_bytes"], "bad_image": "drop_images"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = run(stage_argv("hf_bytes", "train"), tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "hf_bytes[train]: params.yaml: hf_bytes.bad_image: Input should be 'drop_row' or 'drop_image' (got 'drop_images')"
    ]
    assert not (tmp_path / "data").exists()


def test_targets_and_export_name_exactly_the_registered_targets():
    from typing import get_args

    from vlprep.core.sections import ExportParams, TargetsParams
    from vlprep.core.targets import TARGETS

    assert list(TargetsParams.model_fields) == list(TARGETS)
    assert get_args(get_args(ExportParams.model_fields["products"].annotation)[0]) == ("hf_bytes", *TARGETS)
