"""Stage `hf_bytes`: raw parquet of one split -> data/hf_bytes/<split> (datasets.load_from_disk layout)."""
import argparse
from functools import partial
from pathlib import Path

from vlprep.params import load_params
from vlprep.runner import run_stage
from vlprep.schema import HF_BYTES_FEATURES, RAW_REQUIRED
from vlprep.sources import plan_units, resolve_inputs
from vlprep.to_hf_bytes import DuplicateIndexCounter, HfBytesConfig, convert_unit
from vlprep.writers import write_hf_dataset


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("split")
    split = ap.parse_args().split
    params = load_params()
    p = params["hf_bytes"]
    config = HfBytesConfig(
        keep_first_k_images=p["keep_first_k_images"],
        strict_image=p["strict_image"],
        bad_image=p["bad_image"],
        max_image_pixels=p["max_image_pixels"],
        image_root=p["image_root"],
    )
    duplicates = DuplicateIndexCounter()

    def count_duplicates(tables, stats):
        for table in tables:
            duplicates.update(table)
            stats.counts["duplicate_dataset_index"] = duplicates.duplicates
            yield table

    run_stage(
        "hf_bytes",
        split,
        plan=lambda: plan_units(resolve_inputs(params["inputs"][split]), RAW_REQUIRED),
        unit_fn=partial(convert_unit, config=config),
        write=lambda tables: write_hf_dataset(Path("data/hf_bytes") / split, HF_BYTES_FEATURES, tables),
        num_proc=p["num_proc"],
        post=[count_duplicates],
    )


if __name__ == "__main__":
    main()
