"""Stage `hf_bytes`: the raw input of one split -> a datasets.load_from_disk directory.
usage: hf_bytes.py SPLIT OUT_DIR (the input spec is params.yaml inputs.SPLIT: a path spec of reference
parquet, or a list of entries each with its own preset or column mapping)"""
import argparse
import sys
from functools import partial
from pathlib import Path

from vlprep.card import Card, StageDrops, description_text, loading_hf_bytes, render_card
from vlprep.mapping import compile_inputs, containment_warnings, plan_inputs
from vlprep.params import load_input, load_input_data, load_section
from vlprep.failures import stage_main
from vlprep.runner import run_stage
from vlprep.schema import HF_BYTES_FEATURES, RAW_REQUIRED
from vlprep.sources import plan_units, resolve_inputs
from vlprep.to_hf_bytes import DuplicateIndexCounter, convert_unit
from vlprep.writers import write_hf_dataset


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("split")
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    p = load_section("hf_bytes")
    c = load_section("card")
    spec = load_input(args.split)
    for warning in containment_warnings(args.split, spec, load_input_data(args.split)):
        print(f"hf_bytes[{args.split}]: {warning}", file=sys.stderr)
    if isinstance(spec, str):  # reference-schema parquet, as before entries existed
        plan, unit_fn = (lambda: plan_units(resolve_inputs(spec), RAW_REQUIRED)), partial(convert_unit, config=p)
    else:
        inputs = compile_inputs(args.split, spec)
        plan, unit_fn = (lambda: plan_inputs(spec, inputs)), partial(convert_unit, config=p, inputs=tuple(inputs))
    duplicates = DuplicateIndexCounter()
    seen = {}

    def count_duplicates(tables, stats):
        seen["stats"] = stats  # complete once the writer has taken every table: the card's drop table
        for table in tables:
            duplicates.update(table)
            stats.counts["duplicate_dataset_index"] = duplicates.duplicates
            yield table

    def card(rows: int) -> dict:
        stats = seen["stats"]
        entries = spec if isinstance(spec, str) else [e.model_dump(exclude_defaults=True) for e in spec]
        built_by = {"inputs": {args.split: entries}, "hf_bytes": p.model_dump(exclude={"num_proc"})}
        drops = [StageDrops("hf_bytes", args.split, stats.rows_in, rows, dict(sorted(stats.dropped.items())))]
        text = render_card(Card("hf_bytes", c.pretty_name, c.description, c.license, c.homepage, c.citation,
                                HF_BYTES_FEATURES, {args.split: rows}, {args.split: ""}, built_by, drops,
                                loading_hf_bytes(args.split)))
        return {"README.md": text}

    info = {"description": description_text(c.pretty_name, c.description, "hf_bytes"),
            "license": c.license, "homepage": c.homepage, "citation": c.citation}

    run_stage(
        "hf_bytes",
        args.split,
        plan=plan,
        unit_fn=unit_fn,
        write=lambda tables: write_hf_dataset(args.output, HF_BYTES_FEATURES, tables, info=info, extra_files=card),
        num_proc=p.num_proc,
        post=[count_duplicates],
    )


if __name__ == "__main__":
    stage_main(main)
