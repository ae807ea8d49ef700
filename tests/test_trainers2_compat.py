"""LLaMA-Factory 0.9.5 and ms-swift 4.6.0 load, encode and train on the pipeline's outputs.

These run tests/compat/check_llamafactory.py and check_swift.py, each with the python of
its own trainer virtualenv (built on first use from tests/compat/requirements-llamafactory.txt
and requirements-swift.txt and cached, see tests/compat/conftest_helpers.py; the two cannot
share one: LLaMA-Factory pins datasets<=4.0.0, ms-swift needs a newer one), against a tiny
random Qwen2.5-VL built offline by tests/compat/tiny_qwen.py, on the files `dvc repro` wrote
in the `repro_repo` fixture (data/llamafactory, data/swift, data/swift_grpo).
"""

import pytest

from conftest import run as run_project, set_params
from test_trainer_compat import COMPAT, OUTPUT_TAIL, padded_zoo, run, trainer_env  # noqa: F401  (fixtures)

pytestmark = pytest.mark.trainers

from conftest_helpers import trainer_python  # noqa: E402  (test_trainer_compat put COMPAT on sys.path)


@pytest.fixture(scope="session")
def llamafactory_py():
    return trainer_python("llamafactory")


@pytest.fixture(scope="session")
def swift_py():
    return trainer_python("swift")


@pytest.fixture(scope="session")
def tiny_qwen_lf_dir(llamafactory_py, trainer_env, tmp_path_factory):
    """The tiny model, built with the llamafactory venv (so the tests need neither the verl/TRL venv
    nor a second build; ms-swift's newer transformers loads it too)."""
    out = tmp_path_factory.mktemp("tiny-qwen-lf")
    rc, output = run([llamafactory_py, COMPAT / "tiny_qwen.py", out], trainer_env, timeout=600)
    assert rc == 0, output[-OUTPUT_TAIL:]
    return out


def test_llamafactory_loads_encodes_and_trains(scratch_repo, llamafactory_py, trainer_env, tiny_qwen_lf_dir):
    """Through data/dataset_info.json, as a user's `dataset_dir: data` reads it, each dataset a directory
    of parts, with the test split switched on too (two datasets in one dataset_info.json, built by DVC)."""
    set_params(scratch_repo, **{"targets.llamafactory": ["train", "test"]})
    run_project(["dvc", "repro"], scratch_repo)
    data = scratch_repo / "data"
    cmd = [llamafactory_py, COMPAT / "check_llamafactory.py", "--model-dir", tiny_qwen_lf_dir, "--dataset-dir", data,
           "--tokenizer", scratch_repo / "data" / "tokenizer" / "qwen2_5_vl"]  # total_tokens as LLaMA-Factory encodes
    rc, output = run(cmd, trainer_env, timeout=1800)
    print(output)
    assert rc == 0, output[-OUTPUT_TAIL:]
    assert "llamafactory check OK:" in output, output[-OUTPUT_TAIL:]
    assert "vlprep_train: " in output and "vlprep_test: " in output, output[-OUTPUT_TAIL:]  # both encoded
    assert output.count("token counts of") == 2, output[-OUTPUT_TAIL:]


def test_llamafactory_loads_the_image_zoo_with_the_token_counts_in_the_data(padded_zoo, llamafactory_py, trainer_env,
                                                                            tiny_qwen_lf_dir):
    """LLaMA-Factory's own image path (its image_max_pixels / image_min_pixels resize, the Qwen2-VL plugin's
    fixes, then the processor) on every zoo image as hf_bytes left it: each row's image pad tokens add up to
    the image_tokens vlprep wrote, and 2 SFT steps train on them."""
    cmd = [llamafactory_py, COMPAT / "check_llamafactory.py", "--model-dir", tiny_qwen_lf_dir,
           "--dataset-dir", padded_zoo / "data", "--dataset", "vlprep_train", "--image-tokens"]
    rc, output = run(cmd, trainer_env, timeout=1800)
    print(output)
    assert rc == 0 and "llamafactory check OK:" in output, output[-OUTPUT_TAIL:]
    assert "vlprep_train: 13 rows encoded" in output, output[-OUTPUT_TAIL:]


def test_swift_loads_encodes_and_trains(all_targets_repo, swift_py, trainer_env, tiny_qwen_lf_dir):
    """`swift sft` on data/swift/train, `swift rlhf --rlhf_type grpo` on data/swift_grpo/train (directories
    of parts, as `--dataset` takes them) with the shipped reward plugin (src/vlprep/scoring/swift_reward.py,
    loaded by ms-swift's --external_plugins)."""
    data = all_targets_repo / "data"
    cmd = [swift_py, COMPAT / "check_swift.py", "--model-dir", tiny_qwen_lf_dir,
           "--sft", data / "swift" / "train", "--grpo", data / "swift_grpo" / "train",
           "--reward-plugin", all_targets_repo / "src" / "vlprep" / "scoring" / "swift_reward.py"]
    rc, output = run(cmd, trainer_env, timeout=1800)
    print(output)
    assert rc == 0, output[-OUTPUT_TAIL:]
    assert "swift check OK:" in output, output[-OUTPUT_TAIL:]
    assert output.count("GRPO rows loaded and encoded") == 1, output[-OUTPUT_TAIL:]
