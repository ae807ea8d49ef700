"""The pipeline's outputs load and train in the real trainers (verl 0.9.1, TRL 1.16).

These run tests/compat/check_verl.py and check_trl.py with the python of a trainer
virtualenv (built on first use from tests/compat/requirements-trainers.txt and cached,
see tests/compat/conftest_helpers.py; ~2-3 min and ~6.6 GB the first time) on the files
`dvc repro` produced in the `repro_repo` fixture, against a tiny random Qwen2.5-VL
built offline by tests/compat/tiny_qwen.py.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMPAT = Path(__file__).resolve().parent / "compat"
sys.path.insert(0, str(COMPAT))
from conftest_helpers import trainer_python  # noqa: E402

pytestmark = pytest.mark.trainers

# Show at most this much of a failing check's output in the assertion message.
OUTPUT_TAIL = 20_000


@pytest.fixture(scope="session")
def trainer_env(tmp_path_factory):
    """Environment for the trainer subprocesses: offline, caches in a temp dir (never in
    the repo or the data directories)."""
    home = tmp_path_factory.mktemp("trainer-home")
    env = dict(os.environ)
    env.update(
        HF_HOME=str(home / "hf"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        WANDB_MODE="disabled",
        PYTHONNOUSERSITE="1",
    )
    env.pop("PYTHONPATH", None)  # nothing from the project's own environment
    return env


@pytest.fixture(scope="session")
def trainer_py():
    return trainer_python("trainers")


def run(cmd, env, timeout):
    proc = subprocess.run(
        [str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    output = f"$ {' '.join(map(str, cmd))}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    return proc.returncode, output


@pytest.fixture(scope="session")
def tiny_qwen_dir(trainer_py, trainer_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-qwen")
    rc, output = run([trainer_py, COMPAT / "tiny_qwen.py", out], trainer_env, timeout=600)
    assert rc == 0, output[-OUTPUT_TAIL:]
    return out


def test_verl_loads_and_rolls_out_every_row(repro_repo, trainer_py, trainer_env, tiny_qwen_dir):
    files = [repro_repo / "data" / "verl" / "train.parquet", repro_repo / "data" / "verl" / "test.parquet"]
    for f in files:
        assert f.is_file(), f"{f} missing after dvc repro"
    rc, output = run(
        [trainer_py, COMPAT / "check_verl.py", "--processor-dir", tiny_qwen_dir, *files], trainer_env, timeout=1800
    )
    print(output)
    assert rc == 0, output[-OUTPUT_TAIL:]
    # One summary line per file, each OK.
    assert output.count("verl check OK:") == len(files), output[-OUTPUT_TAIL:]


@pytest.mark.parametrize("split", ["train", "test"])
def test_trl_sft_trains_on_output(split, repro_repo, trainer_py, trainer_env, tiny_qwen_dir):
    f = repro_repo / "data" / "trl" / f"{split}.parquet"
    if not f.is_file():
        if split == "train":
            pytest.fail(f"{f} missing after dvc repro")
        pytest.skip("no trl test split configured")
    rc, output = run([trainer_py, COMPAT / "check_trl.py", "--model-dir", tiny_qwen_dir, f], trainer_env, timeout=1800)
    print(output)
    assert rc == 0, output[-OUTPUT_TAIL:]
    assert "trl check OK:" in output, output[-OUTPUT_TAIL:]
