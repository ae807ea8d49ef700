"""Stage `preview`: data/preview/index.html, a self-contained page showing a seeded sample of verl and trl
rows per split (images, question, options, answer, the exact prompt/text, token counts) and of dropped
rows per stage, split and reason.  usage: preview.py OUT.html"""
import argparse
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from vlprep.core.failures import InputError, stage_main
from vlprep.core.metrics import DROP_REASONS
from vlprep.core.params import load_params, load_section
from vlprep.io.sources import split_files
from vlprep.products.preview import (Preview, RejectSample, TargetSample, render_preview, sample_positions,
                            trl_preview_row, verl_preview_row)
from vlprep.core.writers import atomic_path

ROW_FNS = {"verl": verl_preview_row, "trl": trl_preview_row}


def read_rows(files: list[Path], positions: list[int]) -> list[dict]:
    """The rows at these positions (counted across the files in order), reading only the row groups
    that hold them."""
    rows, start, wanted = [], 0, iter(positions)
    nxt = next(wanted, None)
    for pf in map(pq.ParquetFile, files):
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if nxt is not None and nxt < start + n:
                table = pf.read_row_group(g)
                while nxt is not None and nxt < start + n:
                    rows.append(table.slice(nxt - start, 1).to_pylist()[0])
                    nxt = next(wanted, None)
            start += n
    return rows


def target_sample(target: str, split: str, k: int, seed: int) -> TargetSample:
    path = Path("data") / target / split
    files = split_files(path)
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    positions = sample_positions(total, k, seed, target, split)
    rows = [ROW_FNS[target](pos, row) for pos, row in zip(positions, read_rows(files, positions))]
    return TargetSample(split, target, path.as_posix(), total, rows)


def reject_samples(stage: str, split: str, k: int, seed: int) -> list[RejectSample]:
    path = Path("data/rejects") / stage / f"{split}.parquet"
    if not path.is_file():
        raise InputError(f"{path}: missing (run its stage first)")
    records = pq.read_table(path).to_pylist()  # no image bytes: small
    by_reason = Counter(r["reason"] for r in records)
    groups = []
    for reason in sorted(by_reason):
        rows = [r for r in records if r["reason"] == reason]
        picked = sample_positions(len(rows), k, seed, "rejects", stage, split, reason)
        groups.append(RejectSample(stage, split, reason, DROP_REASONS.get(reason, ""), by_reason[reason],
                                   [rows[i] for i in picked]))
    return groups


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    p = load_section("preview")
    splits = list(load_params().get("inputs") or {})
    trl_splits = load_section("trl").splits
    samples, rejects = [], []
    for split in splits:
        samples.append(target_sample("verl", split, p.rows_per_split, p.seed))
        if split in trl_splits:
            samples.append(target_sample("trl", split, p.rows_per_split, p.seed))
        for stage in ("hf_bytes", "verl", *(["trl"] if split in trl_splits else [])):
            rejects += reject_samples(stage, split, p.rejects_per_reason, p.seed)
    notes = [f"A sample of {p.rows_per_split} rows per split and target (seed {p.seed}) and up to "
             f"{p.rejects_per_reason} dropped rows per stage, split and reason; correct options are highlighted. "
             "Written by `dvc repro` (stage preview); self-contained, no network."]
    page = render_preview(Preview("vlprep preview", samples, rejects, notes))
    with atomic_path(args.output) as tmp:
        tmp.write_text(page, encoding="utf-8")


if __name__ == "__main__":
    stage_main(main)
