"""Answer-letter rebalancing (`rebalance: permute` in verl/trl): sources often put the correct option at
one letter far more than the others, and a model then learns the letter instead of the answer.

Each row's option *texts* are permuted over its own option letters, deterministically from the seed and
the row's identity (dataset_name, dataset_index, position in the hf_bytes split): the correct text goes
to a position chosen uniformly among the row's options, the other texts fill the other positions in a
seeded random order. The letters themselves (the option keys and their order) and the answer text never
change; only which text stands at which letter, and so the answer label.

A row keeps its order (counted, not dropped) when its text refers to options by letter or by position,
since permuting would make it contradict itself: see LETTER_REFERENCE and POSITION_REFERENCE, searched
in the question, the option texts and (for SFT targets, whose output teaches it) the reasoning.
"""
from __future__ import annotations

import hashlib
import json
import random
import re

from vlprep.prompting.prompts import ordered_options

# A reference to option <L>, where <L> must be one of the row's own option letters (capital A-Z):
LETTER_REFERENCE = [
    # "option B", "answer: C", "the answer is (D)", "choices A and B", "letter E"
    re.compile(r"\b(?i:option|answer|choice|letter)s?\s*(?i:is|was|are|:|=|-)?\s*\(?(?P<l>[A-Z])\)?(?![A-Za-z0-9])"),
    # "(B)"
    re.compile(r"\((?P<l>[A-Z])\)"),
    # a line starting "B." / "B)" / "B:"
    re.compile(r"(?m)^\s*(?P<l>[A-Z])\s*[.):]"),
    # "B." / "B)" as a word of its own, then a space or the end: "so it is B." (also "vitamin D." : a false
    # positive only keeps that row's order)
    re.compile(r"(?<![\w.])(?P<l>[A-Z])[.)](?=\s|$)"),
    # "A and B", "A or C", "A, B": two letters joined, each a word of its own ("both A and B")
    re.compile(r"(?<![\w'])(?P<l>[A-Z])\s*(?:,|&|(?i:and|or))\s*[A-Z](?![\w'])"),
]
# "all of the above", "none of the below", "both of the above"...: meaningful only in the original order.
POSITION_REFERENCE = re.compile(r"\b(?i:all|none|both|neither|any|either)\s+(?i:of\s+the\s+)(?i:above|below)\b")

KEPT_LETTER = "rebalance_kept_order_letter_reference"
KEPT_POSITION = "rebalance_kept_order_position_reference"
PERMUTED = "rebalance_permuted"


def row_rng(seed: int, dataset_name: str | None, dataset_index: int | None, row: int) -> random.Random:
    """A generator that depends only on the seed and the row's identity (not on batches or processes)."""
    key = json.dumps([seed, dataset_name, dataset_index, row]).encode()
    return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big"))


def permute_options(options: dict[str, str], label: str, rng: random.Random) -> tuple[dict[str, str], str]:
    """Options with the correct text at a uniformly chosen position and the others shuffled; the keys in
    their display order (prompts.ordered_options). Returns (options, new label)."""
    keys = [k for k, _ in ordered_options(options)]
    correct = options[label]
    others = [options[k] for k in keys if k != label]
    target = rng.randrange(len(keys))
    rng.shuffle(others)
    texts = others[:target] + [correct] + others[target:]
    return dict(zip(keys, texts)), keys[target]


def order_reference(texts: list[str | None], letters: set[str]) -> str | None:
    """KEPT_LETTER or KEPT_POSITION when a text refers to one of `letters` or to a position, else None."""
    for text in texts:
        if not text:
            continue
        for pattern in LETTER_REFERENCE:
            if any(m.group("l") in letters for m in pattern.finditer(text)):
                return KEPT_LETTER
        if POSITION_REFERENCE.search(text):
            return KEPT_POSITION
    return None


def rebalance_row(row: dict, index: int, seed: int, with_reasoning: bool) -> tuple[dict, str]:
    """An hf_bytes row (options a JSON string) with its options permuted, and what happened: PERMUTED,
    KEPT_LETTER or KEPT_POSITION (then the row is returned as it is)."""
    options = json.loads(row["options"])
    texts = [row["question"], *options.values()]
    if with_reasoning:
        texts.append(row.get("reasoning"))
    kept = order_reference(texts, set(options))
    if kept:
        return row, kept
    rng = row_rng(seed, row.get("dataset_name"), row.get("dataset_index"), index)
    permuted, label = permute_options(options, row["answer_label"], rng)
    # serialised as hf_bytes does (records.py)
    return {**row, "options": json.dumps(permuted, ensure_ascii=False), "answer_label": label}, PERMUTED
