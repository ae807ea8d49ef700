"""Stage `raw`: write the deterministic offline sample to OUT_DIR/<split>/part-*.parquet.  usage: make_sample.py OUT_DIR"""
import argparse
import sys
from pathlib import Path

from vlprep.core.params import load_section
from vlprep.core.failures import stage_main
from vlprep.ingest.sample import SampleConfig, write_split
from vlprep.core.writers import atomic_path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("output", type=Path)
    out = ap.parse_args().output
    p = load_section("raw")
    with atomic_path(out) as tmp:
        for split, rows in sorted(p.rows.items()):
            config = SampleConfig(
                rows=rows,
                shards=p.shards,
                seed=p.seed,
                max_images_per_row=p.max_images_per_row,
                min_image_size=p.image_size[0],
                max_image_size=p.image_size[1],
            )
            write_split(tmp / split, split, config)
    print(f"raw sample written to {out}", file=sys.stderr)


if __name__ == "__main__":
    stage_main(main)
