"""Stage `trl`: data/hf_bytes/<split> -> data/trl/<split>.parquet (TRL vision SFT format)."""
import argparse
from functools import partial
from pathlib import Path

from vlprep.params import load_params
from vlprep.runner import run_stage
from vlprep.schema import TRL_SCHEMA
from vlprep.sources import plan_hf_bytes_units
from vlprep.to_trl import TrlConfig, convert_unit
from vlprep.tokens import load_tokenizer
from vlprep.trainer_rows import BudgetConfig, attach_images
from vlprep.writers import write_parquet


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("split")
    split = ap.parse_args().split
    p = load_params()["trl"]
    config = TrlConfig(
        budget=BudgetConfig.from_params(p),
        max_total_tokens=p["max_total_tokens"],
    )
    # Loaded before the workers fork, so each inherits it instead of importing transformers and loading
    # its own (~1.7 s each: the benchmark's tokenizer_load).
    load_tokenizer(config.budget.tokenizer)
    run_stage(
        "trl",
        split,
        plan=lambda: plan_hf_bytes_units(split),
        unit_fn=partial(convert_unit, config=config),
        write=lambda tables: write_parquet(Path("data/trl") / f"{split}.parquet", TRL_SCHEMA, tables, p["row_group_size"]),
        num_proc=p["num_proc"],
        attach=partial(attach_images, schema=TRL_SCHEMA),
    )


if __name__ == "__main__":
    main()
