"""verl 0.9.1 itself loads src/vlprep/scoring/reward.py from the config keys of docs/trainers.md#verl and scores real rows with it.

Runs tests/compat/check_verl_reward.py with the trainer venv's python (where vlprep is not installed),
on data/verl/train (its one part) and the tokenizer that `dvc repro` built in the `repro_repo` fixture.
"""
import pytest
from test_trainer_compat import COMPAT, OUTPUT_TAIL, run, trainer_env, trainer_py  # noqa: F401 - fixtures

pytestmark = pytest.mark.trainers


def test_verl_loads_and_calls_the_reward_as_main_ppo_does(repro_repo, trainer_py, trainer_env):  # noqa: F811
    data = repro_repo / "data" / "verl" / "train" / "part-00000.parquet"
    assert data.is_file(), f"{data} missing after dvc repro"
    rc, output = run(
        [
            trainer_py, COMPAT / "check_verl_reward.py",
            "--tokenizer-dir", repro_repo / "data" / "tokenizer" / "qwen2_5_vl",
            # the copy's own file: the one a user's command points at
            "--reward-file", repro_repo / "src" / "vlprep" / "scoring" / "reward.py",
            "--src", repro_repo / "src",
            data,
        ],
        trainer_env,
        timeout=900,
    )
    print(output)
    assert rc == 0, output[-OUTPUT_TAIL:]
    assert "verl reward check OK:" in output, output[-OUTPUT_TAIL:]
    assert "legacy custom_reward_function.path ignored" in output, output[-OUTPUT_TAIL:]
