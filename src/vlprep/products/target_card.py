"""A target's dataset card: its rows and drops per split (from the stages' metrics), the params that
built it, and how its trainer loads it (products/card.py renders it)."""
from __future__ import annotations

from vlprep.core.metrics import read_metrics
from vlprep.core.params import load_section
from vlprep.core.sections import HF_BYTES_MODEL_KEYS, SCHEDULING_KEYS
from vlprep.core.targets import TARGETS
from vlprep.products.card import HF_BYTES_WHAT, StageDrops, card_text


def describe(product: str) -> tuple[str, list[str]]:
    """What a product's row holds, and its Hub task ids."""
    if product == "hf_bytes":
        return HF_BYTES_WHAT, ["visual-question-answering"]
    return TARGETS[product].what, list(TARGETS[product].task_categories)


def product_card(product: str, meta, features: dict, rows: dict[str, int], files: dict[str, str], built_by: dict,
                 drops: list[StageDrops], loading: str, configs: list | None = None) -> str:
    what, tasks = describe(product)
    return card_text(product, what, tasks, meta, features, rows, files, built_by, drops, loading, configs)


def split_drops(product: str, splits: list[str]) -> tuple[dict[str, int], list[StageDrops]]:
    """Rows kept per split and the drop table from hf_bytes to the product, from the stages' metrics."""
    rows, drops = {}, []
    for split in splits:
        for stage in dict.fromkeys(["hf_bytes", product]):
            m = read_metrics(stage, split)
            drops.append(StageDrops.from_metrics(stage, split, m))
        rows[split] = m["rows_out"]
    return rows, drops


def built_by(product: str) -> dict:
    """The params.yaml values that built a product (scheduling keys left out: they do not change the
    bytes): hf_bytes, and for a target the row selection, the model and the target's own section."""
    keep = lambda name: load_section(name).model_dump(exclude=SCHEDULING_KEYS)  # noqa: E731
    out = {"hf_bytes": keep("hf_bytes")}
    if product == "hf_bytes":  # its image pre-flight checks sizes against these model keys
        out["model"] = load_section("model").model_dump(include=set(HF_BYTES_MODEL_KEYS))
    else:
        out["subset"] = keep("subset")
        audit = load_section("audit")
        out["audit"] = {"drop_train_contaminated": audit.drop_train_contaminated}
        if audit.references:  # the selection's other steps are shown only when they act (docs/curation.md)
            out["audit"] |= {"references": sorted(audit.references), "drop_train_referenced": audit.drop_train_referenced}
        curation = load_section("curation")
        if curation.rollouts:
            out["curation"] = curation.model_dump(include={"rollouts", "pass_rate", "order", "control", "seed"})
        mixture = load_section("mixture")
        if mixture.weights:
            out["mixture"] = mixture.model_dump()
        out["model"] = keep("model")
        out[product] = keep(product)
    return out


VERL_CMD = """python -m verl.trainer.main_ppo \\
  'data.train_files={train}' 'data.val_files={val}' \\
  data.prompt_key=prompt data.image_key=images data.filter_overlong_prompts=False \\
  data.max_prompt_length=<max of extra_info.prompt_tokens + extra_info.image_tokens> \\
  reward.custom_reward_function.path=<vlprep paths: reward> reward.custom_reward_function.name=compute_score ..."""

TRL_CODE = """trainer = trl.SFTTrainer(model=model, processing_class=processor, train_dataset=ds["train"],
                         args=trl.SFTConfig(max_length=<at least the max total_tokens>, ...))"""


def _trainer_snippet(product: str, paths: dict[str, str], dirs: dict[str, str], fetch: str) -> str:
    """How the product's own trainer reads it. `paths`: split -> its files (a glob, or a [list] for the Hub);
    `dirs`: split -> its directory (LLaMA-Factory and ms-swift take directories)."""
    train = paths.get("train", next(iter(paths.values())))
    val = paths.get("test", paths.get("validation", train))
    first = dirs.get("train", next(iter(dirs.values())))
    if product == "verl":
        return f"""### verl

{fetch}```bash
{VERL_CMD.format(train=train, val=val)}
```

Install `verl[verl-core]` (with `qwen-vl-utils`). verl has no built-in scorer for this `data_source`: pass the
shipped reward (`vlprep paths` prints its path) or your own `compute_score`."""
    if product == "trl":
        return f"""### TRL

```python
{TRL_CODE}
```

TRL reads `messages` and `images`; keep `remove_unused_columns=True` (the default) unless a collator
needs the other columns."""
    if product == "llamafactory":
        names = ", ".join(f"`vlprep_{s}`" for s in dirs)
        return f"""### LLaMA-Factory

`data/dataset_info.json` names each split directory ({names}); in the training YAML:

```yaml
dataset_dir: data
dataset: vlprep_{next(iter(dirs))}
```"""
    if product == "swift":
        return f"""### ms-swift

```bash
swift sft --model <Qwen2.5-VL> --dataset {first} ...
```"""
    return f"""### ms-swift (GRPO)

```bash
swift rlhf --rlhf_type grpo --model <Qwen2.5-VL> --dataset {first} \\
  --external_plugins <vlprep paths: swift_reward> --reward_funcs vlprep ...
```"""


def loading_files(product: str, files: dict[str, str], hub: bool, shards: dict[str, list[str]] | None = None) -> str:
    """Loading snippets for a target's parquet parts, from the project or, with `hub`, from a Hub repo
    made of them (`shards`: split -> its parquet files there, for verl, which takes file lists, not globs)."""
    data_files = "{" + ", ".join(f'"{s}": "{f}"' for s, f in files.items()) + "}"
    paths = {s: (",".join(f"hub/{f}" for f in shards[s]) if shards else f) for s, f in files.items()}
    paths = {s: f"[{p}]" if "," in p else p for s, p in paths.items()}
    dirs = {s: f.rsplit("/", 1)[0] if not hub else "hub/data" for s, f in files.items()}
    where = ('datasets.load_dataset("<user>/<repo>")  # or the folder: datasets.load_dataset("path/to/folder")'
             if hub else f'datasets.load_dataset("parquet", data_files={data_files})')
    images = ("`images` come back as `{bytes, path}` dicts, as verl expects" if product == "verl" else
              "`images` come back as PIL images (the file's feature metadata)")
    fetch = ("Download the files first (`hf download <user>/<repo> --repo-type dataset --local-dir hub`), "
             "then point the trainer at them.\n\n" if hub else "From the project directory:\n\n")
    other = ("These are RL prompts without the assistant turn; the SFT targets (trl, llamafactory, swift) add it."
             if TARGETS[product].kind == "rl" else
             "These are whole conversations for SFT; the RL targets (verl, swift_grpo) hold the prompt alone.")
    return f"""### `datasets`

```python
import datasets
ds = {where}
```

{images}.

{_trainer_snippet(product, paths, dirs, fetch)}

{other}"""
