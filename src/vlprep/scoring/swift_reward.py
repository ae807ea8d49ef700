"""ms-swift GRPO reward plugin: vlprep's multiple-choice reward (vlprep.scoring.reward.compute_score, the one
verl uses) for the rows of data/swift_grpo (docs/trainers.md#grpo).

    swift rlhf --rlhf_type grpo ... --dataset data/swift_grpo/train.parquet \
        --external_plugins src/vlprep/scoring/swift_reward.py --reward_funcs vlprep

ms-swift imports this file by its path and passes every dataset column to a reward function as a
keyword argument (one value per completion); these read `answer` (the correct option's text),
`answer_label` (its letter; ms-swift's `solution` holds the same) and `options` (JSON). Reward functions:

- `vlprep`: compute_score's `score`: 1 when the <answer> names the correct option and the response is a
  <think>...</think> then one <answer>...</answer> block, else 0;
- `vlprep_acc` / `vlprep_format`: its `acc` and `format` parts, to weigh with `--reward_weights`
  (e.g. `--reward_funcs vlprep_acc vlprep_format --reward_weights 0.9 0.1`).

Standard library only, and reward.py is loaded by path from beside this file: it works where ms-swift
runs without vlprep installed. Imported without ms-swift, it registers nothing (for tests).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _load_reward():
    name = "_vlprep_reward"  # one module per process, however often this plugin is imported
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().with_name("reward.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


compute_score = _load_reward().compute_score


class VlprepReward:
    """ms-swift's ORM interface: instantiated with the trainer's args, called with the completions and
    the dataset columns; returns one float per completion."""

    part = "score"

    def __init__(self, args=None, **kwargs):
        self.args = args

    def __call__(self, completions, answer=None, answer_label=None, options=None, solution=None, **kwargs) -> list[float]:
        n = len(completions)
        answer, options = answer or [None] * n, options or [None] * n
        labels = answer_label or solution or [None] * n
        return [
            float(compute_score("vlprep", text, truth, {"answer_label": label, "options": opts})[self.part])
            for text, truth, label, opts in zip(completions, answer, labels, options)
        ]


class VlprepAcc(VlprepReward):
    part = "acc"


class VlprepFormat(VlprepReward):
    part = "format"


REWARD_FUNCS = {"vlprep": VlprepReward, "vlprep_acc": VlprepAcc, "vlprep_format": VlprepFormat}


def register() -> bool:
    """Add the reward functions to ms-swift's registry (`--reward_funcs vlprep`); False without ms-swift."""
    try:
        from swift.rewards import orms
    except ImportError:
        return False
    orms.update(REWARD_FUNCS)
    return True


register()
