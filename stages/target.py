"""Stage `<target>@<split>` for every trainer target (core/targets.py): hf_bytes split -> the target's
parquet parts, data/<target>/<split>/part-*.parquet, leaving out the rows stage select lists.
usage: target.py TARGET SPLIT  (reads params.yaml sections `model` and TARGET)"""
import argparse
import importlib

from vlprep.core.failures import stage_main
from vlprep.core.params import load_section
from vlprep.core.targets import TARGETS
from vlprep.targets.base import Config


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("target", choices=sorted(TARGETS))
    ap.add_argument("split")
    args = ap.parse_args()
    # Imported by name, so each target's stage depends on its own module only (vlprep deps follows this).
    target = importlib.import_module(f"vlprep.targets.{args.target}").TARGET
    target.run(args.split, Config(load_section(args.target), load_section("model")))


if __name__ == "__main__":
    stage_main(main)
