"""Check that verl 0.9.1 loads and calls vlprep's reward (src/vlprep/scoring/reward.py) as main_ppo would.

Usage (inside the trainer virtualenv, where vlprep is not installed):
    python check_verl_reward.py --tokenizer-dir DIR --reward-file REWARD.py --src SRC_DIR FILE.parquet

DIR is the tokenizer the rows' responses are encoded with (data/tokenizer/qwen2_5_vl); SRC_DIR is the
project's src/ (put on sys.path only for the pkg://vlprep.scoring.reward form, as if vlprep were installed).

What main_ppo does with the reward config: its TaskRunner hands the Hydra config, unchanged, to the
trainer, whose RewardLoopWorker calls `load_reward_manager(config, tokenizer, ...)`, which calls
`get_custom_reward_fn(config)` (reading `config.reward.custom_reward_function`) and builds the reward
manager (`naive`: NaiveRewardManager); each sample is then scored by `RewardLoopWorker.compute_score` ->
`NaiveRewardManager.run_single`, which decodes the response and calls the function with keywords.
This script composes verl's own `ppo_trainer` config with a user's overrides and runs exactly those
objects (RewardLoopWorker constructed in-process instead of as a Ray actor) on every row of FILE with
correct, wrong and malformed responses, then shows that the legacy top-level
`custom_reward_function.path` never reaches them: main_ppo does not migrate it (only
fully_async_main calls `migrate_legacy_reward_impl`), so verl's default reward is used and raises
NotImplementedError for data_source `vlprep_medical_mcqa`.

Prints "verl reward check OK: ..." and exits 0, or lists failures and exits 1.
"""

import argparse
import asyncio
import inspect
import json
import os
import sys
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VERL_LOGGING_LEVEL", "WARN")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

RESPONSE_LENGTH = 96  # padded response width, as the rollout produces it


def respond(answer):
    return f"<think> The image shows the finding. </think>\n<answer> {answer} </answer>"


def wrong_label(options, label):
    return next(k for k in options if k != label)


# kind -> (response for a row, expected (score, acc, format) with default kwargs)
def responses_for(extra):
    options = json.loads(extra["options"])
    label = extra["answer_label"]
    other = wrong_label(options, label)
    return {
        "letter": (respond(label), (1.0, 1.0, 1.0)),
        "letter_and_text": (respond(f"{label}. {options[label]}"), (1.0, 1.0, 1.0)),
        "text": (respond(extra["answer"]), (1.0, 1.0, 1.0)),
        "wrong_letter": (respond(other), (0.0, 0.0, 1.0)),
        "right_letter_other_text": (respond(f"{label}. {options[other]}"), (0.0, 0.0, 1.0)),
        "two_letters": (respond(f"{label} or {other}"), (0.0, 0.0, 1.0)),
        "no_think": (f"<answer>{label}</answer>", (0.0, 1.0, 0.0)),
        "text_after_answer": (respond(label) + " I hope this helps.", (0.0, 1.0, 0.0)),
        "empty": ("", (0.0, 0.0, 0.0)),
    }


def compose(overrides):
    """verl's packaged ppo_trainer config with a user's command-line overrides, as main_ppo gets it."""
    import verl
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    config_dir = str(Path(verl.__file__).parent / "trainer" / "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return hydra_compose("ppo_trainer", overrides=overrides)


def read_rows(path):
    columns = ["data_source", "reward_model", "extra_info"]
    table = pq.read_table(path, columns=columns)
    return [dict(zip(columns, values)) for values in zip(*(table.column(c).to_pylist() for c in columns))]


def sample(tokenizer, row, response):
    """One rollout sample as the agent loop hands it to the reward worker: prompt + right-padded
    response ids (ending in EOS, a special token verl's decode skips) and the row's non-tensor fields."""
    from verl import DataProto

    prompt = tokenizer.encode("<|im_start|>user\nquestion<|im_end|>\n<|im_start|>assistant\n")
    ids = (tokenizer.encode(response, add_special_tokens=False) + [tokenizer.eos_token_id])[:RESPONSE_LENGTH]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    responses = torch.tensor([ids + [pad] * (RESPONSE_LENGTH - len(ids))])
    attention = torch.tensor([[1] * len(prompt) + [1] * len(ids) + [0] * (RESPONSE_LENGTH - len(ids))])
    prompts = torch.tensor([prompt])
    return DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": responses,
            "input_ids": torch.cat([prompts, responses], dim=1),
            "attention_mask": attention,
        },
        non_tensors={
            "data_source": np.array([row["data_source"]], dtype=object),
            "reward_model": np.array([row["reward_model"]], dtype=object),
            # verl adds num_turns/rollout_reward_scores to this dict: give each sample its own copy
            "extra_info": np.array([dict(row["extra_info"])], dtype=object),
        },
    )


def score_rows(config, tokenizer, rows, expected_of, failures, label):
    """Every row x every response kind through RewardLoopWorker.compute_score; compares with
    expected_of(kind, (score, acc, format)). Returns the number of samples scored."""
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    worker = RewardLoopWorker(config)  # as main_ppo's trainer builds it (there: a Ray actor)
    loop = asyncio.get_event_loop()
    n = 0
    for row in rows:
        for kind, (response, expected) in responses_for(row["extra_info"]).items():
            want = expected_of(kind, expected)
            out = loop.run_until_complete(worker.compute_score(sample(tokenizer, row, response)))
            info = out["reward_extra_info"]
            got = (out["reward_score"], info.get("acc"), info.get("format"))
            n += 1
            if set(info) != {"score", "acc", "format"} or any(abs(g - w) > 1e-9 for g, w in zip(got, want)):
                failures.append(
                    f"{label}: row index {row['extra_info']['index']} {kind} {response!r}: got {out}, want {want}"
                )
    return worker, n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer-dir", required=True)
    ap.add_argument("--reward-file", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--max-rows", type=int, default=24)
    ap.add_argument("file")
    args = ap.parse_args(argv)

    import verl
    from omegaconf import OmegaConf
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker, migrate_legacy_reward_impl
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.utils import hf_tokenizer
    from verl.utils.reward_score import default_compute_score

    asyncio.set_event_loop(asyncio.new_event_loop())
    failures = []
    reward_file = str(Path(args.reward_file).resolve())
    tokenizer_dir = str(Path(args.tokenizer_dir).resolve())
    base = [f"actor_rollout_ref.model.path={tokenizer_dir}", "actor_rollout_ref.rollout.name=vllm"]
    tokenizer = hf_tokenizer(tokenizer_dir)  # what RewardLoopWorker loads from the same path
    rows = read_rows(args.file)[: args.max_rows]
    if "vlprep" in sys.modules or any((Path(p) / "vlprep").exists() for p in sys.path if p):
        failures.append("vlprep is importable in the trainer venv: loading by file path proves nothing")

    # 1. The command of docs/trainers.md#verl: reward.custom_reward_function.path=<file> (+ name), default kwargs.
    config = compose(base + [
        f"reward.custom_reward_function.path={reward_file}",
        "reward.custom_reward_function.name=compute_score",
    ])
    fn = get_custom_reward_fn(config)
    if fn is None or Path(inspect.getfile(fn.args[0])).resolve() != Path(reward_file):
        failures.append(f"get_custom_reward_fn did not load {reward_file}: {fn!r}")
    worker, n_default = score_rows(config, tokenizer, rows, lambda kind, want: want, failures, "default kwargs")
    manager = worker.reward_manager
    if type(manager) is not NaiveRewardManager:
        failures.append(f"main_ppo's default reward manager is {type(manager).__name__}, not NaiveRewardManager")
    elif Path(inspect.getfile(manager.compute_score.args[0])).resolve() != Path(reward_file):
        failures.append(f"the reward manager calls {manager.compute_score!r}, not {reward_file}")
    if "vlprep" in sys.modules:
        failures.append("loading the reward file imported vlprep")

    # 2. reward_kwargs from the command line: +reward.custom_reward_function.reward_kwargs.<k>=<v>.
    weighted = compose(base + [
        f"reward.custom_reward_function.path=file://{reward_file}",
        "reward.custom_reward_function.name=compute_score",
        "+reward.custom_reward_function.reward_kwargs.format_weight=0.1",
        "+reward.custom_reward_function.reward_kwargs.require_format=false",
    ])

    def weighted_expected(kind, want):
        _, acc, fmt = want
        return (0.9 * acc + 0.1 * fmt, acc, fmt)

    _, n_weighted = score_rows(weighted, tokenizer, rows, weighted_expected, failures, "format_weight=0.1")

    # 3. The pkg:// form, where vlprep is installed (here: its src/ on sys.path).
    sys.path.insert(0, str(Path(args.src).resolve()))
    try:
        pkg = compose(base + ["reward.custom_reward_function.path=pkg://vlprep.scoring.reward",
                              "reward.custom_reward_function.name=compute_score"])
        _, n_pkg = score_rows(pkg, tokenizer, rows[:2], lambda kind, want: want, failures, "pkg://vlprep.scoring.reward")
    finally:
        sys.path.pop(0)

    # 4. The legacy top-level key: accepted by Hydra, never seen by the reward loader under main_ppo.
    legacy = compose(base + [f"custom_reward_function.path={reward_file}", "custom_reward_function.name=compute_score"])
    callers = sorted(
        str(p.relative_to(Path(verl.__file__).parent))
        for p in Path(verl.__file__).parent.rglob("*.py")
        if "migrate_legacy_reward_impl(" in p.read_text(encoding="utf-8", errors="replace")
        and p.name != "reward_loop.py"  # where it is defined
    )
    if callers != ["experimental/fully_async_policy/fully_async_main.py"]:
        failures.append(f"migrate_legacy_reward_impl is called from {callers}: the legacy key may now work")
    if get_custom_reward_fn(legacy) is not None:
        failures.append("get_custom_reward_fn found a reward function through the legacy top-level key")
    legacy_worker = RewardLoopWorker(legacy)
    if legacy_worker.reward_manager.compute_score is not default_compute_score:
        failures.append(f"legacy key: reward manager uses {legacy_worker.reward_manager.compute_score!r}")
    try:
        loop = asyncio.get_event_loop()
        loop.run_until_complete(legacy_worker.compute_score(sample(tokenizer, rows[0], respond("A"))))
        failures.append("legacy key: verl's default reward scored a vlprep row instead of raising")
    except NotImplementedError as e:
        if "vlprep_medical_mcqa" not in str(e):
            failures.append(f"legacy key: unexpected NotImplementedError {e}")
    # Only fully_async_main's migration moves it where the loader looks.
    migrated = migrate_legacy_reward_impl(OmegaConf.create(OmegaConf.to_container(legacy)))
    if get_custom_reward_fn(migrated) is None:
        failures.append("after migrate_legacy_reward_impl the legacy key still loads nothing")

    if failures:
        print(f"verl reward check FAIL ({len(failures)} problems)")
        for f in failures[:50]:
            print("  -", f)
        return 1
    print(
        f"verl reward check OK: {len(rows)} rows of {args.file}; {n_default} samples with default kwargs, "
        f"{n_weighted} with format_weight=0.1, {n_pkg} via pkg://; legacy custom_reward_function.path ignored"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        sys.exit(1)
