"""Stage `card`: a dataset card per built target, data/cards/<target>/README.md, from the stages' metrics
(rows and drops per split) and params; and LLaMA-Factory's data/dataset_info.json. The cards directory
is rewritten whole: a target switched off has no card. (Each hf_bytes split directory gets its card from
the hf_bytes stage itself.)  usage: card.py CARDS_DIR DATASET_INFO.json"""
import argparse
from pathlib import Path

from vlprep.core.failures import stage_main
from vlprep.core.metrics import write_json
from vlprep.core.params import load_section, load_targets
from vlprep.core.schema import TARGET_SCHEMAS
from vlprep.core.writers import atomic_path
from vlprep.products.card import features_from_arrow
from vlprep.products.target_card import built_by, loading_files, product_card, split_drops
from vlprep.products.llamafactory_info import dataset_info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cards", type=Path)
    ap.add_argument("dataset_info", type=Path)
    args = ap.parse_args()
    targets = load_targets()
    meta = load_section("card")
    with atomic_path(args.cards) as tmp:
        tmp.mkdir()
        for target, splits in targets.items():
            if not splits:
                continue
            rows, drops = split_drops(target, splits)
            files = {s: f"data/{target}/{s}/part-*.parquet" for s in splits}  # from the project directory
            (tmp / target).mkdir()
            (tmp / target / "README.md").write_text(product_card(
                target, meta, features_from_arrow(TARGET_SCHEMAS[target]), rows, files, built_by(target),
                drops, loading_files(target, files, hub=False)))
    write_json(args.dataset_info, dataset_info(targets["llamafactory"]))


if __name__ == "__main__":
    stage_main(main)
