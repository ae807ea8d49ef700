"""Stage `export` (off by default: it exists only for the products listed in export.products): one data
product as a folder that can be uploaded as a Hugging Face Hub dataset repo as it is: parquet shards per
split under data/ (images embedded), and the dataset card as README.md with `configs`. Uploading is the
user's command (README: Export to the Hub); the pipeline never touches the network.
usage: export.py PRODUCT OUT_DIR"""
import argparse
import json
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from vlprep.products.card import Card, StageDrops, features_from_arrow, loading_files, render_card
from vlprep.core.failures import InputError, stage_main
from vlprep.core.params import load_params, load_section
from vlprep.core.schema import HF_BYTES_FEATURES, TRL_SCHEMA, VERL_SCHEMA, arrow_schema, image, list_of
from vlprep.io.sources import hf_dataset_files, split_files
from vlprep.core.writers import atomic_path

# What the Hub folder stores per product. hf_bytes' images are declared decoding (Image()): on the Hub
# the viewer shows them and load_dataset gives PIL images (cast to Image(decode=False) for the bytes);
# verl keeps its schema as verl reads it; trl is exported as it is.
SCHEMAS = {
    "hf_bytes": arrow_schema({**HF_BYTES_FEATURES, "images": list_of(image())}),
    "verl": VERL_SCHEMA,
    "trl": TRL_SCHEMA,
}


def batches(product: str, split: str) -> Iterator[pa.RecordBatch]:
    if product == "hf_bytes":
        for shard in hf_dataset_files(Path("data/hf_bytes") / split):
            with pa.memory_map(str(shard)) as f:
                yield from pa.ipc.open_stream(f)
    else:
        for path in split_files(Path("data") / product / split):
            yield from pq.ParquetFile(path).iter_batches(batch_size=64)


def count_rows(product: str, split: str) -> int:
    if product == "hf_bytes":
        return sum(b.num_rows for b in batches(product, split))  # memory-mapped: headers only
    return sum(pq.ParquetFile(f).metadata.num_rows for f in split_files(Path("data") / product / split))


def write_split(out: Path, product: str, split: str, rows_per_shard: int) -> tuple[int, list[str]]:
    """Write the split's shards; returns its rows and shard paths (relative to the folder)."""
    schema = SCHEMAS[product]
    total = count_rows(product, split)
    n = max(1, -(-total // rows_per_shard))
    shard, writer, in_shard = 0, None, 0

    def open_shard(i: int) -> pq.ParquetWriter:
        return pq.ParquetWriter(out / "data" / f"{split}-{i:05d}-of-{n:05d}.parquet", schema, compression="zstd",
                                write_statistics=False)

    writer = open_shard(0)
    for batch in batches(product, split):
        table = pa.Table.from_batches([batch]).select(schema.names).cast(schema)
        while table.num_rows:
            if in_shard == rows_per_shard:
                writer.close()
                shard, in_shard = shard + 1, 0
                writer = open_shard(shard)
            take = table.slice(0, rows_per_shard - in_shard)
            writer.write_table(take, row_group_size=64)
            in_shard += take.num_rows
            table = table.slice(take.num_rows)
    writer.close()
    return total, [f"data/{split}-{i:05d}-of-{n:05d}.parquet" for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("product", choices=sorted(SCHEMAS))
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    e = load_section("export")
    c = load_section("card")
    product = args.product
    splits = load_section("trl").splits if product == "trl" else list(load_params().get("inputs") or {})
    built_by = {"hf_bytes": load_section("hf_bytes").model_dump(exclude={"num_proc"})}
    if product != "hf_bytes":
        built_by[product] = load_section(product).model_dump(exclude={"num_proc", "splits"})
    rows, shards, drops = {}, {}, []
    with atomic_path(args.output) as tmp:
        (tmp / "data").mkdir(parents=True)
        for split in splits:
            rows[split], shards[split] = write_split(tmp, product, split, e.rows_per_shard)
            for stage in dict.fromkeys(["hf_bytes", product]):
                metrics = json.loads((Path("metrics") / stage / f"{split}.json").read_text())
                drops.append(StageDrops.from_metrics(stage, split, metrics))
        files = {s: f"data/{s}-*" for s in splits}
        configs = [{"config_name": "default", "data_files": [{"split": s, "path": f} for s, f in files.items()]}]
        card = Card(product, c.pretty_name, c.description, c.license, c.homepage, c.citation,
                    features_from_arrow(SCHEMAS[product]), rows, files, built_by, drops,
                    loading_files(product, files, hub=True, shards=shards), configs=configs)
        (tmp / "README.md").write_text(render_card(card))


if __name__ == "__main__":
    stage_main(main)
