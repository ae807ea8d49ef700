"""Stage `curation@<split>`: a rollouts file of the split's verl rows -> pass rates per row
(vlprep.curation.rollouts; docs/curation.md). One stage per split in curation.rollouts (none by default).
usage: curation.py SPLIT ROLLOUTS_FILE
-> data/curation/SPLIT.parquet (per hf_bytes row), data/curation/SPLIT.problems.parquet (records not
counted), metrics/curation/SPLIT.json, plots/curation/SPLIT/"""
import argparse
import sys
from pathlib import Path

import pyarrow.parquet as pq

from vlprep.core import paths
from vlprep.core.failures import InputError, stage_main
from vlprep.core.metrics import write_json
from vlprep.core.params import ParamsError, load_section
from vlprep.core.writers import atomic_path, parquet_sink
from vlprep.curation.rollouts import (
    CURATION_SCHEMA,
    PROBLEMS_SCHEMA,
    curation_metrics,
    curation_table,
    pass_count_plots,
    pass_rates,
    problems_table,
    read_rollouts,
    scoring_rows,
)

FLUSH = 4096  # problem records held before they are written


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("split")
    ap.add_argument("rollouts", type=Path)
    args = ap.parse_args()
    p = load_section("curation")
    configured = p.rollouts.get(args.split)
    if configured is None or Path(configured) != args.rollouts:
        raise ParamsError(f"params.yaml: curation.rollouts.{args.split} is {configured!r}, not {str(args.rollouts)!r}")
    verl = load_section("verl")
    # The options as verl's prompt showed them: verl permutes the train split's options with rebalance: permute.
    seed = verl.rebalance_seed if verl.rebalance == "permute" and args.split == "train" else None
    source = paths.hf_bytes_dir(args.split)
    if not source.is_dir():
        raise InputError(f"{source}: missing: curation.rollouts.{args.split} names a split hf_bytes does not build")
    rows = scoring_rows(source, seed)
    with parquet_sink(paths.curation_problems_file(args.split), PROBLEMS_SCHEMA) as write_problems:
        pending: list = []

        def problem(rollout, kind, detail):
            pending.append((rollout, kind, detail))
            if len(pending) >= FLUSH:
                write_problems(problems_table(pending))
                pending.clear()

        rates = pass_rates(read_rollouts(args.rollouts), rows, p.pass_score, p.format_weight, p.require_format, problem)
        write_problems(problems_table(pending))
    with atomic_path(paths.curation_file(args.split)) as tmp:
        pq.write_table(curation_table(rates, rows).cast(CURATION_SCHEMA), tmp, compression="zstd", write_statistics=False)
    metrics = curation_metrics(rates, rows)
    write_json(paths.metrics_file("curation", args.split), metrics)
    for name, plot in pass_count_plots(metrics).items():
        write_json(paths.plots_dir("curation", args.split) / f"{name}.json", plot)
    problems = {k: v["count"] for k, v in metrics["problems"].items() if v["count"]}
    print(f"curation[{args.split}]: {metrics['rollouts_counted']} rollouts of {metrics['records']} counted for "
          f"{metrics['items_rolled_out']}/{metrics['rows']} rows (mean pass rate {metrics['mean_pass_rate']}); "
          f"not rolled out {metrics['not_rolled_out']['count']}"
          + (f"; not counted {problems} (see {paths.curation_problems_file(args.split)})" if problems else ""),
          file=sys.stderr)


if __name__ == "__main__":
    stage_main(main)
