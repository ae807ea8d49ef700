"""Stage `export` (off by default: it exists only for the products listed in export.products): one data
product as a Hub-ready folder (vlprep.products.export).  usage: export.py PRODUCT OUT_DIR"""
import argparse
from pathlib import Path

from vlprep.core.failures import stage_main
from vlprep.core.params import ParamsError, input_splits, load_section, load_targets
from vlprep.core.writers import atomic_path
from vlprep.products.export import export


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("product")
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    product = args.product
    splits = input_splits() if product == "hf_bytes" else load_targets().get(product)
    if not splits:
        raise ParamsError(f"params.yaml: export.products lists {product}, which the params do not build: "
                          f"add splits to targets.{product}, or remove it from export.products")
    with atomic_path(args.output) as tmp:
        export(tmp, product, splits, load_section("export").rows_per_shard, load_section("card"))


if __name__ == "__main__":
    stage_main(main)
