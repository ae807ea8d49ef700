"""Stage `hf_bytes`: raw parquet of one split -> data/hf_bytes/<split> (datasets.load_from_disk layout)."""
import argparse
import sys
from functools import partial
from pathlib import Path

from vlprep.executor import run_units
from vlprep.metrics import StageStats, write_json
from vlprep.params import load_params
from vlprep.schema import HF_BYTES_FEATURES, RAW_REQUIRED
from vlprep.sources import InputError, plan_units, resolve_inputs
from vlprep.to_hf_bytes import DuplicateIndexCounter, HfBytesConfig, convert_unit
from vlprep.writers import EmptyOutput, write_hf_dataset


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
    stats, duplicates = StageStats(), DuplicateIndexCounter()

    def tables(units):
        for table in run_units(partial(convert_unit, config=config), units, p["num_proc"], stats):
            duplicates.update(table)
            yield table

    try:
        units = plan_units(resolve_inputs(params["inputs"][split]), RAW_REQUIRED)
        write_hf_dataset(Path("data/hf_bytes") / split, HF_BYTES_FEATURES, tables(units))
    except InputError as e:
        sys.exit(f"hf_bytes[{split}]: {e}")
    except EmptyOutput:
        # An empty training set is never what the user wanted: fail, and say what was dropped.
        sys.exit(f"hf_bytes[{split}]: zero rows kept of {stats.rows_in}; dropped: {dict(stats.dropped)}")
    finally:
        stats.counts["duplicate_dataset_index"] = duplicates.duplicates
        write_json(Path("metrics/hf_bytes") / f"{split}.json", stats.as_dict())
    stats.check_balance()
    print(f"hf_bytes[{split}]: kept {stats.rows_out}/{stats.rows_in} rows; dropped {dict(stats.dropped)}", file=sys.stderr)


if __name__ == "__main__":
    main()
