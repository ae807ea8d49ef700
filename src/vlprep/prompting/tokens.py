"""Token budget: text tokens under a tokenizer, and the budget check. Image tokens are counted by the model
profiles (prompting/profiles.py), which know no tokenizer: code that only sizes images (hf_bytes' image
pre-flight) does not depend on this module."""
from __future__ import annotations

import functools
from pathlib import Path

from vlprep.core.failures import InputError
from vlprep.core.metrics import Rejected

def _is_local_path(name: str) -> bool:
    # A hub id is exactly "org/name" (or "name"); anything else is meant as a directory.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).exists()


@functools.lru_cache(maxsize=4)
def load_tokenizer(name: str):
    """A local directory or a hub id; loaded once per process. Offline unless the user's environment
    allows hub access (the default is a local directory built by the `tokenizer` stage)."""
    if _is_local_path(name) and not Path(name).expanduser().is_dir():
        raise InputError(f"tokenizer directory {name} does not exist: run `dvc repro tokenizer` "
                         "(the default), or set the stage's `tokenizer` param to a local dir or a hub id")
    from vlprep.prompting.qwen_tokenizer import quiet_third_party

    quiet_third_party()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:  # no network, offline mode, unknown repo, not a tokenizer dir
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot load tokenizer {name!r}: {reason[:300]}. Without hub access, point the "
                         "`tokenizer` param at a local directory (the `tokenizer` stage builds Qwen2.5-VL's)") from None


def count_tokens(tokenizer, texts: list[str]) -> list[int]:
    """Token counts as apply_chat_template(tokenize=True) gives them (no extra special tokens added);
    one batched call for fast tokenizers."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # encode_batch_fast (tokenizers >= 0.20) skips character offsets, which counting does not need.
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [len(e.ids) for e in encode(texts, add_special_tokens=False)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def check_budget(tokens: int, limit: int | None, reason: str) -> None:
    if limit is not None and tokens > limit:
        raise Rejected(reason, f"{tokens} tokens > {limit}")
