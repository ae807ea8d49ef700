"""The trainer targets vlprep can build, as a light table: what the products (cards, preview, export,
summary), the CLI and the dvc.yaml generator need to know about a target without importing its code.

A target's name is its DVC stage, its params section, its folder under data/ and its module
`vlprep.targets.<name>` (which defines TARGET, imported lazily by stages/target.py). Adding a target is
one module, one entry here, its params model (core/sections.py) and its docs page section.

Which splits each target builds is data too: params.yaml's `targets` section (target -> splits)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TargetInfo:
    name: str
    kind: Literal["rl", "sft"]  # rl: a prompt without the answer; sft: a whole conversation
    trainer: str  # who reads it
    what: str  # one line: what a row holds (CLI, cards)
    # How the row's model input is shown (preview, `vlprep show`): the prompt string (`prompt`), the
    # rendered `text` column, or the string messages (`messages`).
    shown_as: Literal["prompt", "text", "messages"]
    task_categories: tuple[str, ...]


TARGETS: dict[str, TargetInfo] = {t.name: t for t in [
    TargetInfo("verl", "rl", "verl (GRPO/PPO, RLHFDataset)",
               "verl RL rows: a chat `prompt` with one `<image>` per image, `images`, `reward_model.ground_truth` "
               "and `extra_info` (ids, answer label, token counts)", "prompt",
               ("visual-question-answering", "reinforcement-learning")),
    TargetInfo("trl", "sft", "TRL SFTTrainer",
               "TRL vision SFT rows: the hf_bytes columns plus `messages` (user turn with image parts, assistant "
               "turn), `text` rendered with the chat template, and token counts", "text",
               ("visual-question-answering", "image-text-to-text")),
    TargetInfo("llamafactory", "sft", "LLaMA-Factory (sharegpt)",
               "LLaMA-Factory sharegpt SFT rows: string `messages` with one `<image>` per image, `images`, "
               "token counts; `dataset_info.json` names each split", "messages",
               ("visual-question-answering", "image-text-to-text")),
    TargetInfo("swift", "sft", "ms-swift `swift sft`",
               "ms-swift SFT rows: string `messages` with one `<image>` per image, `images`, token counts",
               "messages", ("visual-question-answering", "image-text-to-text")),
    TargetInfo("swift_grpo", "rl", "ms-swift `swift rlhf --rlhf_type grpo`",
               "ms-swift GRPO rows: the user turn as `messages`, `images`, `solution` and the columns its reward "
               "plugin reads", "messages", ("visual-question-answering", "reinforcement-learning")),
]}
