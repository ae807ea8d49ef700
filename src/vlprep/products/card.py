"""Hugging Face dataset cards (README.md with YAML metadata) for the data products, as a pure function of
what describes them: features, splits and row counts, the params that built them, the drop table and
how to load them. No clock, no paths of this machine: the same inputs give the same bytes.

The YAML follows the Hub's dataset-card metadata (https://huggingface.co/docs/hub/datasets-cards):
`dataset_info.features` in the form `datasets.Features._to_yaml_list()` gives (tests check both
converters here against `datasets`), and `configs` when the card heads a Hub-ready folder. It is
written with PyYAML, not huggingface_hub, so that hf_bytes (which writes a card into each split) does
not import it; tests parse every card with huggingface_hub's `DatasetCard`."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pyarrow as pa
import yaml

from vlprep.core.metrics import DROP_REASONS

# hf_bytes' line (the targets' lines are in core/targets.py).
HF_BYTES_WHAT = ("the cleaned rows with their encoded image bytes, one `datasets` split per directory "
                 "(`save_to_disk` layout)")


def features_from_arrow(schema: pa.Schema) -> dict:
    """The feature dict `datasets` infers for a parquet file with this schema: its `huggingface`
    metadata if present, else Value/List/struct from the Arrow types (as Features.from_arrow_schema)."""
    meta = (schema.metadata or {}).get(b"huggingface")
    if meta:
        return json.loads(meta)["info"]["features"]

    def of(t: pa.DataType):
        if pa.types.is_struct(t):
            return {f.name: of(f.type) for f in t}
        if pa.types.is_list(t):
            return {"feature": of(t.value_type), "_type": "List"}
        return {"dtype": str(t), "_type": "Value"}

    return {f.name: of(f.type) for f in schema}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def features_yaml(features: dict) -> list:
    """Features in the card's YAML form (what `datasets.Features._to_yaml_list()` gives)."""

    def inner(obj: dict) -> dict:
        obj = dict(obj)
        kind = obj.pop("_type", None)
        if kind == "List":
            value = inner(obj.pop("feature"))
            # {"list": {"dtype": "string"}} is written {"list": "string"}, {"list": {"struct": [...]}} {"list": [...]}
            if list(value) == ["dtype"]:
                value = value["dtype"]
            elif list(value) == ["struct"]:
                value = value["struct"]
            return {"list": value, **obj}
        if kind == "Value":
            return obj
        if kind and not obj:
            return {"dtype": _snake(kind)}
        if kind:
            return {"dtype": {_snake(kind): obj}}
        return {"struct": [{"name": name, **inner(f)} for name, f in obj.items()]}

    return inner(features)["struct"]


def feature_type(feature: dict) -> str:
    """A short human-readable type: string, int64, list<image>, list<struct{role: string, ...}>."""
    kind = feature.get("_type")
    if kind == "Value":
        return feature["dtype"]
    if kind == "List":
        return f"list<{feature_type(feature['feature'])}>"
    if kind == "Image":
        return "image (bytes kept encoded)" if feature.get("decode") is False else "image"
    return "struct{" + ", ".join(f"{k}: {feature_type(v)}" for k, v in feature.items()) + "}"


def size_category(rows: int) -> str:
    for limit, name in [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")]:
        if rows < limit:
            return name
    return "n>10M" if rows < 10 ** 9 else "n>1T"


@dataclass(frozen=True)
class StageDrops:
    """One stage's accounting for one split (its metrics JSON): rows in, rows kept, drops by reason."""

    stage: str
    split: str
    rows_in: int
    rows_out: int
    dropped: dict[str, int]

    @classmethod
    def from_metrics(cls, stage: str, split: str, metrics: dict) -> "StageDrops":
        return cls(stage, split, metrics["rows_in"], metrics["rows_out"], dict(metrics.get("dropped", {})))


@dataclass(frozen=True)
class Card:
    product: str  # hf_bytes or a target (core/targets.py)
    what: str  # one line: what a row holds
    task_categories: list[str]  # the Hub's task ids
    pretty_name: str
    description: str
    license: str
    homepage: str
    citation: str
    features: dict  # datasets feature dict of the rows, as a reader gets them
    splits: dict[str, int]  # split -> rows, in order
    files: dict[str, str]  # split -> where its data is, relative to the card ("" = this directory)
    params: dict  # section -> values that built it
    drops: list[StageDrops]  # every stage from raw to this product, per split
    loading: str  # markdown: how to load it with datasets and its trainer
    configs: list | None = None  # Hub `configs` (data_files per split), for a Hub-ready folder
    tags: list[str] = field(default_factory=lambda: ["medical", "multiple-choice", "vlprep"])


def card_text(product: str, what: str, task_categories: list[str], meta, features: dict, rows: dict[str, int],
              files: dict[str, str], built_by: dict, drops: list[StageDrops], loading: str,
              configs: list | None = None) -> str:
    """The README.md of a product: `meta` is params.yaml's card section (CardParams)."""
    return render_card(Card(product, what, task_categories, meta.pretty_name, meta.description, meta.license,
                            meta.homepage, meta.citation, features, rows, files, built_by, drops, loading, configs))


def metadata(card: Card) -> dict:
    meta = {
        "license": card.license,
        "pretty_name": card.pretty_name,
        "task_categories": card.task_categories,
        "tags": card.tags,
        "size_categories": [size_category(sum(card.splits.values()))],
    }
    if card.configs is not None:
        meta["configs"] = card.configs
    meta["dataset_info"] = {
        "features": features_yaml(card.features),
        "splits": [{"name": s, "num_examples": n} for s, n in card.splits.items()],
    }
    return meta


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def drop_table(drops: list[StageDrops]) -> str:
    """Markdown: one line per stage and split (rows in/out), then one per reason with its meaning."""
    lines = ["| stage | split | rows in | kept | dropped |", "|---|---|---:|---:|---:|"]
    for d in drops:
        lines.append(f"| {d.stage} | {d.split} | {d.rows_in} | {d.rows_out} | {d.rows_in - d.rows_out} |")
    reasons = sorted({(d.stage, r) for d in drops for r in d.dropped})
    if reasons:
        splits = list(dict.fromkeys(d.split for d in drops))
        lines += ["", "| stage | reason | meaning | " + " | ".join(splits) + " |",
                  "|---|---|---|" + "---:|" * len(splits)]
        for stage, reason in reasons:
            counts = {d.split: d.dropped.get(reason, 0) for d in drops if d.stage == stage}
            cells = " | ".join(str(counts.get(s, "")) for s in splits)
            lines.append(f"| {stage} | `{reason}` | {_cell(DROP_REASONS.get(reason, ''))} | {cells} |")
    return "\n".join(lines)


def render_card(card: Card) -> str:
    """The card's README.md text."""
    header = yaml.safe_dump(metadata(card), sort_keys=False, allow_unicode=True, width=100)
    rows = ["| split | rows | data |", "|---|---:|---|"]
    rows += [f"| {s} | {n} | `{card.files.get(s) or '.'}` |" for s, n in card.splits.items()]
    feats = ["| column | type |", "|---|---|"]
    feats += [f"| `{name}` | {_cell(feature_type(f))} |" for name, f in card.features.items()]
    params = yaml.safe_dump(card.params, sort_keys=False, allow_unicode=True, width=100).rstrip()
    parts = [
        f"---\n{header}---",
        f"# {card.pretty_name} ({card.product})",
        card.description.strip(),
        f"This is the `{card.product}` product: {card.what}.",
        "## Splits\n\n" + "\n".join(rows),
        "## Features\n\n" + "\n".join(feats),
        "## How it was built\n\nBy the vlprep DVC pipeline (`dvc repro`), from these "
        "`params.yaml` values (worker counts left out: they do not change the bytes):\n\n"
        f"```yaml\n{params}\n```",
        "## Dropped rows\n\nEvery input row is kept or dropped with a named reason; each stage's dropped "
        "rows, with the detail of why, are listed in `data/rejects/<stage>/<split>.parquet` of the "
        "pipeline.\n\n" + drop_table(card.drops),
        "## Loading\n\n" + card.loading.strip(),
        "## Licence\n\n" + (f"`{card.license}`" + (": the terms of the source datasets apply."
                                                 if card.license == "other" else ".")),
    ]
    if card.homepage:
        parts.append(f"Homepage: {card.homepage}")
    if card.citation.strip():
        parts.append(f"## Citation\n\n```bibtex\n{card.citation.strip()}\n```")
    return "\n\n".join(parts) + "\n"


def description_text(pretty_name: str, description: str, product: str, what: str = HF_BYTES_WHAT) -> str:
    """The plain-text description for `dataset_info.json`."""
    return f"{pretty_name} ({product}): {' '.join(description.split())} This is {what}."


# --- how to load each product ---------------------------------------------------------------------

def loading_hf_bytes(split: str) -> str:
    return f"""### `datasets`

```python
import datasets
ds = datasets.load_from_disk("data/hf_bytes/{split}")  # this directory
ds = ds.cast_column("images", datasets.List(datasets.Image()))  # images as PIL instead of encoded bytes
```

### Trainers

The pipeline's targets (params.yaml `targets`) build each trainer's rows from this split:
`data/<target>/{split}/part-*.parquet`, each with its card in `data/cards/<target>/README.md`."""


