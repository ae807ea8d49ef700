"""Stage `llamafactory_info`: data/llamafactory/dataset_info.json naming every llamafactory split file
(vlprep.targets.llamafactory_info).  usage: llamafactory_info.py OUT.json"""
import argparse
from pathlib import Path

from vlprep.core.failures import stage_main
from vlprep.targets.llamafactory_info import dataset_info
from vlprep.core.metrics import write_json
from vlprep.core.params import load_section


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    write_json(args.output, dataset_info(load_section("llamafactory").splits))


if __name__ == "__main__":
    stage_main(main)
