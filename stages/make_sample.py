"""Stage `raw`: write the deterministic offline sample to data/raw/<split>/part-*.parquet."""
import sys

from vlprep.params import load_params
from vlprep.sample import SampleConfig, write_split
from vlprep.writers import atomic_path
from pathlib import Path


def main() -> None:
    p = load_params()["raw"]
    out = Path("data/raw")
    with atomic_path(out) as tmp:
        for split, rows in sorted(p["rows"].items()):
            config = SampleConfig(
                rows=rows,
                shards=p["shards"],
                seed=p["seed"],
                max_images_per_row=p["max_images_per_row"],
                min_image_size=p["image_size"][0],
                max_image_size=p["image_size"][1],
            )
            write_split(tmp / split, split, config)
    print(f"raw sample written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
