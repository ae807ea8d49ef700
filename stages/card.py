"""Stage `card`: the dataset cards next to the verl and trl split directories, data/{verl,trl}/README.md, from the
stages' metrics (rows and drops per split) and params. (Each hf_bytes split directory gets its card from
the hf_bytes stage itself: DVC outputs cannot overlap, and that directory is hf_bytes' output.)
usage: card.py"""
import json
from pathlib import Path

from vlprep.products.card import Card, StageDrops, features_from_arrow, loading_files, render_card
from vlprep.core.failures import InputError, stage_main
from vlprep.core.params import SCHEDULING_KEYS, load_params, load_section
from vlprep.core.schema import TRL_FEATURES, VERL_SCHEMA
from vlprep.core.writers import atomic_path


def read_metrics(stage: str, split: str) -> dict:
    path = Path("metrics") / stage / f"{split}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read the {stage} metrics ({e})") from e


def product_card(product: str, splits: list[str], built_by: dict) -> str:
    c = load_section("card")
    drops, rows = [], {}
    for split in splits:
        for stage in ("hf_bytes", product):
            m = read_metrics(stage, split)
            drops.append(StageDrops.from_metrics(stage, split, m))
        rows[split] = m["rows_out"]
    files = {s: f"{s}/part-*.parquet" for s in splits}  # the split's parts (README, "Output parts")
    features = features_from_arrow(VERL_SCHEMA) if product == "verl" else TRL_FEATURES
    return render_card(Card(product, c.pretty_name, c.description, c.license, c.homepage, c.citation, features,
                            rows, files, built_by, drops, loading_files(product, files, hub=False)))


def main() -> None:
    params = load_params()
    inputs = list(params.get("inputs") or {})
    hf_bytes = load_section("hf_bytes").model_dump(exclude=SCHEDULING_KEYS)
    verl = load_section("verl").model_dump(exclude=SCHEDULING_KEYS)
    trl = load_section("trl")
    # the row selection (stage select) both products are built from
    select = {"subset": load_section("subset").model_dump(),
              "audit": {"drop_train_contaminated": load_section("audit").drop_train_contaminated}}
    cards = {
        "verl": product_card("verl", inputs, {"hf_bytes": hf_bytes, **select, "verl": verl}),
        "trl": product_card("trl", trl.splits, {"hf_bytes": hf_bytes, **select, "trl": trl.model_dump(exclude=SCHEDULING_KEYS)}),
    }
    for product, text in cards.items():
        with atomic_path(Path("data") / product / "README.md") as tmp:
            tmp.write_text(text)


if __name__ == "__main__":
    stage_main(main)
