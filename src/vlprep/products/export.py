"""Export: one data product (hf_bytes or a built target) as a folder that can be uploaded as a Hugging
Face Hub dataset repo as it is: parquet shards per split under data/ (images embedded), and the dataset
card as README.md with `configs`. Uploading is the user's command (docs/products.md#export-to-the-hub); the pipeline never
touches the network."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from vlprep.core import paths
from vlprep.core.schema import HF_BYTES_FEATURES, TARGET_SCHEMAS, arrow_schema, image, list_of
from vlprep.io.sources import hf_dataset_files, split_files
from vlprep.products.card import features_from_arrow
from vlprep.products.target_card import built_by, loading_files, product_card, split_drops


def export_schema(product: str) -> pa.Schema:
    """What the Hub folder stores. hf_bytes' images are declared decoding (Image()): on the Hub the viewer
    shows them and load_dataset gives PIL images (cast to Image(decode=False) for the bytes); a target
    keeps its schema, as its trainer reads it."""
    if product == "hf_bytes":
        return arrow_schema({**HF_BYTES_FEATURES, "images": list_of(image())})
    return TARGET_SCHEMAS[product]


def batches(product: str, split: str) -> Iterator[pa.RecordBatch]:
    if product == "hf_bytes":
        for shard in hf_dataset_files(paths.hf_bytes_dir(split)):
            with pa.memory_map(str(shard)) as f:
                yield from pa.ipc.open_stream(f)
    else:
        for path in split_files(paths.output_dir(product, split)):
            yield from pq.ParquetFile(path).iter_batches(batch_size=64)


def count_rows(product: str, split: str) -> int:
    if product == "hf_bytes":
        return sum(b.num_rows for b in batches(product, split))  # memory-mapped: headers only
    return sum(pq.ParquetFile(f).metadata.num_rows for f in split_files(paths.output_dir(product, split)))


def write_split(out: Path, product: str, split: str, rows_per_shard: int) -> tuple[int, list[str]]:
    """Write the split's shards; returns its rows and shard paths (relative to the folder)."""
    schema = export_schema(product)
    total = count_rows(product, split)
    n = max(1, -(-total // rows_per_shard))
    shard, in_shard = 0, 0

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


def export(folder: Path, product: str, splits: list[str], rows_per_shard: int, meta) -> None:
    """Write the Hub-ready folder (an empty directory) for `splits` of `product`; `meta` is the card
    section."""
    (folder / "data").mkdir(parents=True)
    rows, shards = {}, {}
    for split in splits:
        rows[split], shards[split] = write_split(folder, product, split, rows_per_shard)
    _, drops = split_drops(product, splits)
    files = {s: f"data/{s}-*" for s in splits}
    configs = [{"config_name": "default", "data_files": [{"split": s, "path": f} for s, f in files.items()]}]
    (folder / "README.md").write_text(product_card(
        product, meta, features_from_arrow(export_schema(product)), rows, files, built_by(product), drops,
        loading_files(product, files, hub=True, shards=shards) if product != "hf_bytes" else _hub_hf_bytes(),
        configs=configs))


def _hub_hf_bytes() -> str:
    return """### `datasets`

```python
import datasets
ds = datasets.load_dataset("<user>/<repo>")  # or the folder: datasets.load_dataset("path/to/folder")
```

`images` come back as PIL images. The pipeline's targets turn these rows into each trainer's format."""
