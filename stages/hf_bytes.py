"""Stage `hf_bytes`: the raw input of one split -> a datasets.load_from_disk directory.
usage: hf_bytes.py SPLIT OUT_DIR (the input spec is params.yaml inputs.SPLIT: a path spec of reference
parquet, or a list of entries each with its own preset or column mapping)"""
import argparse
import sys
from functools import partial
from pathlib import Path

from vlprep.products.card import HF_BYTES_WHAT, StageDrops, card_text, description_text, loading_hf_bytes
from vlprep.ingest.mapping import compile_inputs, containment_warnings, plan_inputs
from vlprep.core.params import load_input, load_input_data, load_section
from vlprep.core.sections import SCHEDULING_KEYS
from vlprep.core.failures import stage_main
from vlprep.engine.runner import run_stage
from vlprep.engine.parts import ArrowParts, Parted, finish_hf_dataset
from vlprep.core.schema import HF_BYTES_FEATURES, HF_BYTES_SCHEMA, RAW_REQUIRED
from vlprep.io.sources import plan_units, resolve_inputs
from vlprep.ingest.hf_bytes import DuplicateIndexCounter, convert_unit, image_limits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("split")
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    p = load_section("hf_bytes")
    c = load_section("card")
    shape = image_limits(load_section("model"))  # the sizes the model's processors take (image pre-flight)
    spec = load_input(args.split)
    for warning in containment_warnings(args.split, spec, load_input_data(args.split)):
        print(f"hf_bytes[{args.split}]: {warning}", file=sys.stderr)
    if isinstance(spec, str):  # reference-schema parquet, as before entries existed
        plan, unit_fn = (lambda: plan_units(resolve_inputs(spec), RAW_REQUIRED)), partial(convert_unit, config=p, shape=shape)
    else:
        inputs = compile_inputs(args.split, spec)
        plan, unit_fn = (lambda: plan_inputs(spec, inputs)), partial(convert_unit, config=p, inputs=tuple(inputs), shape=shape)
    def card(rows: int, stats) -> str:
        entries = spec if isinstance(spec, str) else [e.model_dump(exclude_defaults=True) for e in spec]
        # (Not the model keys the size check reads: a card that named them would make every model change
        # rewrite this directory, and rerun the audit, though no row changed. The Hub card lists them.)
        built_by = {"inputs": {args.split: entries},
                    "hf_bytes": p.model_dump(exclude=SCHEDULING_KEYS)}
        drops = [StageDrops("hf_bytes", args.split, stats.rows_in, rows, dict(sorted(stats.dropped.items())))]
        return card_text("hf_bytes", HF_BYTES_WHAT, ["visual-question-answering"], c, HF_BYTES_FEATURES, {args.split: rows}, {args.split: ""}, built_by, drops,
                         loading_hf_bytes(args.split))

    info = {"description": description_text(c.pretty_name, c.description, "hf_bytes"),
            "license": c.license, "homepage": c.homepage, "citation": c.citation}

    def finish(directory: Path, parts: list, stats) -> None:
        rows = finish_hf_dataset(directory, HF_BYTES_FEATURES, parts, info)
        (directory / "README.md").write_text(card(rows, stats))

    run_stage(
        "hf_bytes",
        args.split,
        plan=plan,
        unit_fn=unit_fn,
        write=Parted(args.output, ArrowParts(HF_BYTES_SCHEMA), p.part_rows, finish, DuplicateIndexCounter),
        num_proc=p.num_proc,
        engine=p,
    )

if __name__ == "__main__":
    stage_main(main)
