"""Stage `reference@<name>`: the hf_bytes train split matched against a benchmark (audit.references.<name>)
with the audit's kinds (exact_image, near_image, near_item; same_question_text reported, never dropped), through the audit's own run (AuditRun: train
indexed in blocks, the benchmark streamed as its test side). One stage per reference (none by default).
usage: audit_reference.py NAME OUT_DIR
-> OUT_DIR/{pairs,flagged_train_rows,rejects}.parquet, metrics/references/NAME.json

The benchmark's files are read like inputs.<split> in list form (a preset or columns per entry) and go
through hf_bytes' row conversion (the same image checks and pre-flight, so an image train stores re-encoded
is compared as train stores it), keeping every row that has a question: all question types, every image,
rows whose images are all bad kept for their text. Rows that cannot be read are listed in rejects.parquet
and counted; a benchmark with no usable row stops the stage."""
import argparse
import dataclasses
import shutil
import sys
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlprep.core import paths
from vlprep.core.failures import InputError, stage_main
from vlprep.core.metrics import StageStats, write_json
from vlprep.core.params import ParamsError, load_section
from vlprep.core.schema import HF_BYTES_SCHEMA, REJECTS_SCHEMA
from vlprep.core.writers import FixedRowGroups, atomic_path, work_path
from vlprep.curation.audit.matching import KINDS
from vlprep.curation.audit.run import AuditRun
from vlprep.curation.audit.tables import FLAGGED_SCHEMA
from vlprep.engine.executor import run_units
from vlprep.ingest.hf_bytes import convert_unit
from vlprep.ingest.mapping import compile_inputs, plan_inputs
from vlprep.io.sources import hf_dataset_files, plan_arrow_units

REFERENCE_PAIRS_SCHEMA = pa.schema([
    ("train_dataset_name", pa.string()),
    ("train_dataset_index", pa.int64()),
    ("train_row", pa.int64()),
    ("reference_dataset_name", pa.string()),
    ("reference_dataset_index", pa.int64()),
    ("reference_row", pa.int64()),  # the row's position among the benchmark's converted rows
    ("kind", pa.string()),
    ("similarity", pa.float64()),
])


def convert_reference(name: str, ref, hf, num_proc: int, shard: Path, rejects) -> StageStats:
    """The benchmark's rows as hf_bytes rows, into one Arrow stream file; rejected rows to `rejects`."""
    inputs = [dataclasses.replace(i, label=f"audit.references.{name}.entries[{k}]")
              for k, i in enumerate(compile_inputs(name, ref.entries))]
    # Every row with a question takes part: no type filter, no image cut, an all-bad-images row kept for its text.
    config = hf.model_copy(update={"keep_first_k_images": 0, "question_types": ["mcq", "open", "yesno"],
                                   "bad_image": "drop_image", "strict_image": False})
    stats = StageStats()
    with pa.OSFile(str(shard), "wb") as sink, pa.ipc.new_stream(sink, HF_BYTES_SCHEMA) as writer:
        units = plan_inputs(ref.entries, inputs)
        for table in run_units(partial(convert_unit, config=config, inputs=tuple(inputs)), units, num_proc, stats):
            writer.write_table(table.cast(HF_BYTES_SCHEMA))
            records = stats.take_rejects()
            if records:
                rejects(pa.Table.from_pylist([{"stage": "reference", "split": name, **r} for r in records],
                                             schema=REJECTS_SCHEMA))
    stats.check_balance()
    return stats


def vs_reference(pairs: pa.Table, flagged: pa.Table) -> tuple[pa.Table, pa.Table]:
    """A block's pairs and flagged rows against the benchmark only (the within-train kinds are the audit's)."""
    pairs = pairs.filter(pc.is_in(pairs.column("kind"), pa.array(KINDS)))
    pairs = pa.Table.from_arrays(pairs.columns, schema=REFERENCE_PAIRS_SCHEMA)
    kinds = [[k for k in ks if k in KINDS] for ks in flagged.column("kinds").to_pylist()]
    keep = pa.array([bool(k) for k in kinds])
    flagged = flagged.set_column(flagged.schema.get_field_index("kinds"), "kinds",
                                 pa.array(kinds, flagged.schema.field("kinds").type))
    return pairs, flagged.filter(keep)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    audit = load_section("audit")
    if args.name not in audit.references:
        raise ParamsError(f"params.yaml: audit.references.{args.name} missing (references: {sorted(audit.references)})")
    ref = audit.references[args.name]
    train = paths.hf_bytes_dir("train")
    if not train.is_dir():
        raise InputError(f"{train}: missing: the references are matched against the train split (inputs.train)")
    hf = load_section("hf_bytes")
    work = work_path(f"reference-{args.name}")
    work.mkdir()
    with atomic_path(args.output) as out:
        out.mkdir()
        try:
            shard = work / "data-00000.arrow"
            with pq.ParquetWriter(out / "rejects.parquet", REJECTS_SCHEMA, compression="zstd") as rejects:
                stats = convert_reference(args.name, ref, hf, audit.num_proc, shard, rejects.write_table)
            if not stats.rows_out:
                raise InputError(f"audit.references.{args.name}: zero usable rows of {stats.rows_in}; dropped "
                                 f"{dict(stats.dropped)}: check its entries' mapping")
            run = AuditRun(audit.matching(), audit.num_proc)
            # Written block by block as the audit stage writes its own: row groups of a fixed size, so the
            # bytes do not depend on audit.index_rows.
            with ExitStack() as stack:
                writers = [FixedRowGroups(stack.enter_context(pq.ParquetWriter(out / name, schema, compression="zstd",
                                                                               write_statistics=False)), 1 << 16)
                           for name, schema in (("pairs.parquet", REFERENCE_PAIRS_SCHEMA),
                                                ("flagged_train_rows.parquet", FLAGGED_SCHEMA))]
                for tables in run.blocks(plan_arrow_units(hf_dataset_files(train)), plan_arrow_units([shard])):
                    for writer, table in zip(writers, vs_reference(*tables)):
                        writer.write(table)
                for writer in writers:
                    writer.close()
        finally:
            shutil.rmtree(work, ignore_errors=True)
    m = run.metrics
    found = m["train_vs_test"]
    metrics = {
        "reference": args.name,
        "reference_rows": {"rows_in": stats.rows_in, "rows_out": stats.rows_out,
                           "dropped": dict(sorted(stats.dropped.items())), "images": m["images"]["test"]},
        "train_rows": m["rows"]["train"],
        # train rows affected per kind and in all, pairs written (pairs_found before the per-row cap),
        # and how many of the benchmark's rows some train row repeats
        "train_vs_reference": {**{k: found[k] for k in (*KINDS, "any", "pairs", "pairs_found")},
                               "reference_rows_matched": found["test_rows_matched"]},
        "images_unhashable": m["images_unhashable_by_split"],
        "params": m["params"],
    }
    write_json(paths.METRICS / "references" / f"{args.name}.json", metrics)
    print(f"reference[{args.name}]: {found['any']} of {m['rows']['train']} train rows match "
          f"{found['test_rows_matched']} of its {stats.rows_out} rows ({ {k: found[k] for k in KINDS} })",
          file=sys.stderr)


if __name__ == "__main__":
    stage_main(main)
