"""The pipeline's outputs load and train in the real trainers (verl 0.9.1, TRL 1.16).

These run tests/compat/check_verl.py and check_trl.py with the python of a trainer
virtualenv (built from tests/compat/requirements-trainers.txt in the background when the run
starts, with uv, and cached, see tests/compat/conftest_helpers.py and docs/testing.md) on the files
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
    files = [repro_repo / "data" / "verl" / "train", repro_repo / "data" / "verl" / "test"]  # split directories
    for f in files:
        assert list(f.glob("part-*.parquet")), f"{f} missing after dvc repro"
    rc, output = run(
        [trainer_py, COMPAT / "check_verl.py", "--processor-dir", tiny_qwen_dir, *files], trainer_env, timeout=1800
    )
    print(output)
    assert rc == 0, output[-OUTPUT_TAIL:]
    # One summary line per split, each OK.
    assert output.count("verl check OK:") == len(files), output[-OUTPUT_TAIL:]


@pytest.mark.parametrize("split", ["train", "test"])
def test_trl_sft_trains_on_output(split, repro_repo, trainer_py, trainer_env, tiny_qwen_dir):
    f = repro_repo / "data" / "trl" / split
    if not f.is_dir():
        if split == "train":
            pytest.fail(f"{f} missing after dvc repro")
        pytest.skip("no trl test split configured")
    # As TRL users load it: datasets' parquet builder with a glob of the split's parts.
    rc, output = run([trainer_py, COMPAT / "check_trl.py", "--model-dir", tiny_qwen_dir, f / "part-*.parquet"],
                     trainer_env, timeout=1800)
    print(output)
    assert rc == 0, output[-OUTPUT_TAIL:]
    assert "trl check OK:" in output, output[-OUTPUT_TAIL:]


@pytest.fixture(scope="session")
def open_ended_outputs(repro_repo, tmp_path_factory):
    """A train split mixing multiple-choice (reference parquet) and open / yes-no rows (JSON Lines with
    reasoning, images by path) through hf_bytes, verl and trl, as a user's mixed inputs would be."""
    import json

    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from builders import jpeg, png, row, write_raw
    from conftest import REPO, run as run_cmd, stage_argv

    work = tmp_path_factory.mktemp("open_ended")
    write_raw(work / "in/mc/a.parquet", [row(hash=f"mc{i}", dataset_index=i) for i in range(3)])
    (work / "in/imgs").mkdir(parents=True)
    (work / "in/imgs/a.png").write_bytes(png(64, 48))
    (work / "in/imgs/b.jpg").write_bytes(jpeg(56, 56))
    items = [("What is seen in the left lung?", "a nodule", ["a.png"]), ("Is this study normal?", "no", ["b.jpg"]),
             ("Is there an effusion?", "Yes", ["a.png", "b.jpg"]), ("Which organ is shown?", "liver", ["b.jpg"])]
    (work / "in/open.jsonl").write_text("\n".join(json.dumps(
        {"q": q, "a": a, "imgs": imgs, "why": f"Looking at the image, {a}."}) for q, a, imgs in items) + "\n")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["inputs"] = {"train": [
        {"path": "in/mc", "preset": "reference"},
        {"path": "in/open.jsonl", "image_root": "in/imgs", "name": "open_set",
         "columns": {"images": "imgs", "question": "q", "answer": "a", "reasoning": "why"}}]}
    params["input_data"] = {"train": "in"}
    params["model"]["tokenizer"] = str(repro_repo / "data/tokenizer/qwen2_5_vl")
    # One input unit per part: every output here has several parts, as a large dataset's would.
    params["hf_bytes"]["part_rows"] = params["verl"]["part_rows"] = params["trl"]["part_rows"] = 1
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("hf_bytes", "select", "verl", "trl"):
        run_cmd(stage_argv(stage, "train"), work)
    import datasets
    import pyarrow.parquet as pq

    types = [e["question_type"] for e in pq.read_table(work / "data/verl/train").column("extra_info").to_pylist()]
    assert types == ["mcq"] * 3 + ["open", "yesno", "yesno", "open"]
    for product in ("verl", "trl"):
        assert len(list((work / "data" / product / "train").glob("part-*.parquet"))) == 2
    assert len(datasets.load_from_disk(str(work / "data/hf_bytes/train"))) == 7  # its two shards
    return work


def test_verl_and_trl_train_on_open_ended_rows(open_ended_outputs, trainer_py, trainer_env, tiny_qwen_dir):
    verl_file = open_ended_outputs / "data/verl/train"  # two parts
    rc, output = run([trainer_py, COMPAT / "check_verl.py", "--processor-dir", tiny_qwen_dir, verl_file], trainer_env, timeout=1800)
    print(output)
    assert rc == 0 and "verl check OK:" in output, output[-OUTPUT_TAIL:]
    trl_file = open_ended_outputs / "data/trl/train/part-*.parquet"
    rc, output = run([trainer_py, COMPAT / "check_trl.py", "--model-dir", tiny_qwen_dir, trl_file], trainer_env, timeout=1800)
    print(output)
    assert rc == 0 and "trl check OK:" in output, output[-OUTPUT_TAIL:]


@pytest.fixture(scope="session")
def padded_zoo(repro_repo, tmp_path_factory):
    """tests/test_image_zoo.py's zoo through `dvc repro` with hf_bytes.unfit_image: pad, counted for the
    tiny model's processor limits (model.min_pixels / max_pixels), so its token counts must be verl's
    (and LLaMA-Factory's, built with its pre-resize at the bounds its check trains with)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_image_zoo import build_zoo

    return build_zoo(repro_repo, tmp_path_factory.mktemp("zoo_verl") / "project",
                     **{"hf_bytes.unfit_image": "pad", "model.min_pixels": 4 * 28 * 28, "model.max_pixels": 64 * 28 * 28,
                        # LLaMA-Factory too, with the pre-resize bounds tests/compat/check_llamafactory.py trains with
                        "targets.llamafactory": ["train"], "llamafactory.image_max_pixels": 64 * 28 * 28,
                        "llamafactory.image_min_pixels": 4 * 28 * 28})


def test_verl_loads_the_image_zoo_with_the_token_counts_in_the_data(padded_zoo, trainer_py, trainer_env, tiny_qwen_dir):
    """verl's own image path (qwen_vl_utils' fetch_image, then the processor) on every zoo image as hf_bytes
    left it (16-bit rescaled, EXIF-turned, composited, converted, padded strips): each row's image pad
    tokens add up to the extra_info.image_tokens vlprep wrote."""
    rc, output = run([trainer_py, COMPAT / "check_verl.py", "--processor-dir", tiny_qwen_dir, "--image-tokens",
                      padded_zoo / "data/verl/train"], trainer_env, timeout=1800)
    print(output)
    assert rc == 0 and "verl check OK:" in output and "13 rows checked" in output, output[-OUTPUT_TAIL:]


@pytest.fixture(scope="session")
def curated_outputs(repro_repo, tmp_path_factory):
    """The sample's train split curated from synthetic rollouts (tests/test_curation.py): a pass-rate band in
    easy-to-hard order, then an up-sampled mixture (repeated rows), written in several parts."""
    import json
    import shutil

    import pyarrow.parquet as pq

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import run as run_cmd, set_params
    from test_curation import synthetic_rollouts

    work = tmp_path_factory.mktemp("curated") / "project"
    shutil.copytree(repro_repo, work, symlinks=True)
    synthetic_rollouts(work)
    set_params(work, **{"curation.rollouts": {"train": "rollouts/train.jsonl"}, "curation.pass_rate": [0.125, 0.875],
                        "curation.order": "easy_to_hard", "mixture.weights": {"sample_train_a": 1, "sample_train_b": 2},
                        "mixture.rows": 90, "mixture.upsample": True, "verl.part_rows": 32})
    run_cmd(["dvc", "repro", "verl@train"], work)
    info = pq.read_table(work / "data/verl/train").column("extra_info").to_pylist()
    rates = {r["row"]: r["pass_rate"] for r in pq.read_table(work / "data/curation/train.parquet").to_pylist()}
    got = [rates[e["index"]] for e in info]
    assert len(info) == 90 and got == sorted(got, reverse=True) and len({e["index"] for e in info}) < 90
    assert len(list((work / "data/verl/train").glob("part-*.parquet"))) > 1
    (work / "order.json").write_text(json.dumps([e["index"] for e in info]))
    return work


def test_verl_loads_a_curated_ordered_split_in_its_order(curated_outputs, trainer_py, trainer_env, tiny_qwen_dir):
    """verl's own dataset and dataloader (data.shuffle=False) over the parts in order yield the rows in the
    curriculum's order, repeats included, and roll every row out."""
    rc, output = run([trainer_py, COMPAT / "check_verl.py", "--processor-dir", tiny_qwen_dir, "--expect-order",
                      curated_outputs / "order.json", curated_outputs / "data/verl/train"], trainer_env, timeout=1800)
    print(output)
    assert rc == 0 and "verl check OK:" in output, output[-OUTPUT_TAIL:]
