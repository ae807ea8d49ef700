"""LLaMA-Factory 0.9.5 and ms-swift 4.6.0 load, encode and train on vlprep's formats.

These run tests/compat/check_llamafactory.py and check_swift.py, each with the python of
its own trainer virtualenv (built on first use from tests/compat/requirements-llamafactory.txt
and requirements-swift.txt and cached, see tests/compat/conftest_helpers.py; the two cannot
share one: LLaMA-Factory pins datasets<=4.0.0, ms-swift needs a newer one), against a tiny
random Qwen2.5-VL built offline by tests/compat/tiny_qwen.py.

The data are small hand-made files in the formats the llamafactory / swift / swift_grpo
stages are to write (tests/compat/make_trainer_sample.py), with the images both as plain
{bytes, path} structs and with the `huggingface` Image() schema metadata the hf_bytes/trl
stages write. Once those stages exist, the same checks apply to their `dvc repro` output.
"""

import pytest

from test_trainer_compat import COMPAT, OUTPUT_TAIL, run, trainer_env  # noqa: F401  (trainer_env: fixture)

pytestmark = pytest.mark.trainers

from conftest_helpers import trainer_python  # noqa: E402  (test_trainer_compat put COMPAT on sys.path)

IMAGE_FEATURES = ["none", "decode"]


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


@pytest.fixture(scope="session", params=IMAGE_FEATURES)
def trainer_sample(request, llamafactory_py, trainer_env, tmp_path_factory):
    """OUT/{llamafactory,swift,swift_grpo}/{train,test}.parquet (+ dataset_info.json)."""
    out = tmp_path_factory.mktemp(f"trainer-sample-{request.param}")
    rc, output = run(
        [llamafactory_py, COMPAT / "make_trainer_sample.py", out, "--image-feature", request.param],
        trainer_env,
        timeout=300,
    )
    assert rc == 0, output[-OUTPUT_TAIL:]
    return out


def test_llamafactory_loads_encodes_and_trains(trainer_sample, llamafactory_py, trainer_env, tiny_qwen_lf_dir):
    data = trainer_sample / "llamafactory"
    cmd = [llamafactory_py, COMPAT / "check_llamafactory.py", "--model-dir", tiny_qwen_lf_dir, "--dataset-dir", data]
    rc, output = run(cmd, trainer_env, timeout=1800)
    print(output)
    assert rc == 0, output[-OUTPUT_TAIL:]
    assert "llamafactory check OK:" in output, output[-OUTPUT_TAIL:]
    assert "vlprep_train" in output and "vlprep_test" in output, output[-OUTPUT_TAIL:]


def test_swift_loads_encodes_and_trains(trainer_sample, swift_py, trainer_env, tiny_qwen_lf_dir):
    cmd = [swift_py, COMPAT / "check_swift.py", "--model-dir", tiny_qwen_lf_dir]
    for split in ("train", "test"):
        cmd += ["--sft", trainer_sample / "swift" / f"{split}.parquet"]
        cmd += ["--grpo", trainer_sample / "swift_grpo" / f"{split}.parquet"]
    rc, output = run(cmd, trainer_env, timeout=1800)
    print(output)
    assert rc == 0, output[-OUTPUT_TAIL:]
    assert "swift check OK:" in output, output[-OUTPUT_TAIL:]
    assert output.count("GRPO rows loaded and encoded") == 2, output[-OUTPUT_TAIL:]
