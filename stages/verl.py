"""Stage `verl`: data/hf_bytes/<split> -> data/verl/<split>.parquet (verl RLHFDataset format)."""
import argparse
from functools import partial
from pathlib import Path

from vlprep.params import load_params
from vlprep.runner import limit_rows, run_stage
from vlprep.schema import VERL_SCHEMA
from vlprep.shuffle import shuffled
from vlprep.sources import hf_dataset_files, plan_hf_bytes_units
from vlprep.to_verl import VerlConfig, convert_unit
from vlprep.tokens import load_tokenizer
from vlprep.trainer_rows import BudgetConfig, attach_images
from vlprep.writers import write_parquet


def shuffle_stage(p: dict, split: str):
    source = Path("data/hf_bytes") / split
    size = sum(f.stat().st_size for f in hf_dataset_files(source))
    work = Path("data/verl") / f".shuffle-{split}"  # next to the output: same disk, removed afterwards
    return lambda tables, stats: shuffled(tables, p["seed"], work, size)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("split")
    split = ap.parse_args().split
    p = load_params()["verl"]
    config = VerlConfig(
        split=split,
        data_source=p["data_source"],
        ability=p["ability"],
        budget=BudgetConfig.from_params(p),
        max_prompt_tokens=p["max_prompt_tokens"],
    )
    # Loaded before the workers fork, so each inherits it instead of importing transformers and loading
    # its own (~1.7 s each: the benchmark's tokenizer_load).
    load_tokenizer(config.budget.tokenizer)
    run_stage(
        "verl",
        split,
        plan=lambda: plan_hf_bytes_units(split),
        unit_fn=partial(convert_unit, config=config),
        write=lambda tables: write_parquet(Path("data/verl") / f"{split}.parquet", VERL_SCHEMA, tables, p["row_group_size"]),
        num_proc=p["num_proc"],
        attach=partial(attach_images, schema=VERL_SCHEMA),
        post=[shuffle_stage(p, split), limit_rows(p["max_rows"])] if p["shuffle"] else [limit_rows(p["max_rows"])],
    )


if __name__ == "__main__":
    main()
