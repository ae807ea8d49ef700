"""Stage `preview`: data/preview/index.html, a self-contained page showing a seeded sample of every built
target's rows per split (images, question, options, answer, the exact model input, token counts) and of
dropped rows per stage, split and reason (vlprep.products.preview).  usage: preview.py OUT.html"""
import argparse
from pathlib import Path

import pyarrow.parquet as pq

from vlprep.core import paths
from vlprep.core.failures import InputError, stage_main
from vlprep.core.metrics import DROP_REASONS
from vlprep.core.params import input_splits, load_section, load_targets
from vlprep.core.targets import TARGETS
from vlprep.core.writers import atomic_path
from vlprep.io.sources import split_files
from vlprep.products.preview import Preview, reject_samples, render_preview, target_sample


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    p = load_section("preview")
    targets = load_targets()
    samples, rejects = [], []
    for split in input_splits():
        built = [t for t, splits in targets.items() if split in splits]
        for target in built:
            where = paths.output_dir(target, split)
            samples.append(target_sample(target, TARGETS[target].shown_as, split, where.as_posix(),
                                         split_files(where), p.rows_per_split, p.seed))
        for stage in ["hf_bytes", *built]:
            path = paths.rejects_file(stage, split)
            if not path.is_file():
                raise InputError(f"{path}: missing (run its stage first: dvc repro)")
            rejects += reject_samples(stage, split, pq.read_table(path).to_pylist(), p.rejects_per_reason, p.seed,
                                      DROP_REASONS)
    notes = [f"A sample of {p.rows_per_split} rows per split and target (seed {p.seed}) and up to "
             f"{p.rejects_per_reason} dropped rows per stage, split and reason; correct options are highlighted. "
             "Written by `dvc repro` (stage preview); self-contained, no network."]
    page = render_preview(Preview("vlprep preview", samples, rejects, notes))
    with atomic_path(args.output) as tmp:
        tmp.write_text(page, encoding="utf-8")


if __name__ == "__main__":
    stage_main(main)
