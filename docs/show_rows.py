"""Print one item through every data product, as shown in docs/formats.md.

Run from the repo root after `dvc repro`:  python docs/show_rows.py [--split train] [--dataset-index N]
Images print as {"bytes": <N bytes FORMAT WxH>, "path": null}; text is printed whole."""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def image_summary(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as im:
        return f"<{len(data)} bytes {im.format} {im.width}x{im.height}>"


def show(value, indent: int = 0) -> str:
    """JSON-like rendering; bytes become a size/format placeholder, strings are kept whole."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {show(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(inner + show(v, indent + 2) for v in value) + f"\n{pad}]"
    if isinstance(value, (bytes, bytearray)):
        return image_summary(bytes(value))
    return json.dumps(value, ensure_ascii=False)


def find(table: pa.Table, dataset_name: str, dataset_index: int, column: str = "dataset_index") -> list[int]:
    if column == "extra_info":
        info = table.column("extra_info").to_pylist()
        return [i for i, e in enumerate(info) if e["dataset_name"] == dataset_name and e["dataset_index"] == dataset_index]
    names, idx = table.column("dataset_name").to_pylist(), table.column(column).to_pylist()
    return [i for i, (n, x) in enumerate(zip(names, idx)) if n == dataset_name and x == dataset_index]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="train")
    ap.add_argument("--dataset-index", type=int, default=47)
    args = ap.parse_args()
    split, index = args.split, args.dataset_index

    # raw: every shard of the split, found by dataset_index; the item followed is the last match
    name = None
    for path in sorted(Path("data/raw", split).glob("*.parquet")):
        t = pq.read_table(path)
        hits = [i for i, x in enumerate(t.column("dataset_index").to_pylist()) if x == index]
        for i in hits:
            row = t.slice(i, 1).to_pylist()[0]
            name = row["dataset_name"]
            print(f"## raw: {path} row {i}")
            print(f"physical schema: images {t.schema.field('images').type}; options {t.schema.field('options').type}")
            print(show(row))

    if name is None:
        raise SystemExit(f"no raw {split} row with dataset_index {index}")
    import datasets  # only to show what a consumer sees

    hf = datasets.load_from_disk(f"data/hf_bytes/{split}")
    hf_table = hf.data.table
    (pos,) = find(hf_table, name, index)
    print(f"\n## hf_bytes: data/hf_bytes/{split} row {pos}")
    print("features:", hf.features)
    row = hf_table.slice(pos, 1).to_pylist()[0]
    print(show(row))

    verl = pq.read_table(f"data/verl/{split}.parquet")
    (vpos,) = find(verl, name, index, "extra_info")
    row = verl.slice(vpos, 1).to_pylist()[0]
    print(f"\n## verl: data/verl/{split}.parquet row {vpos}")
    print("schema metadata keys:", list((verl.schema.metadata or {}).keys()))
    print(show(row))
    print("\n### verl prompt[0].content, verbatim:")
    print(row["prompt"][0]["content"])

    trl_path = Path(f"data/trl/{split}.parquet")
    if trl_path.exists():
        trl = pq.read_table(trl_path)
        (tpos,) = find(trl, name, index)
        row = trl.slice(tpos, 1).to_pylist()[0]
        print(f"\n## trl: {trl_path} row {tpos}")
        print("huggingface metadata:", trl.schema.metadata[b"huggingface"].decode())
        text = row.pop("text")
        print(show(row))
        print("\n### trl text, verbatim:")
        print(text)
        ds = datasets.load_dataset("parquet", data_files=str(trl_path), split="train")
        print("\nload_dataset('parquet') features:", ds.features)
        print("images[0] as loaded:", type(ds[tpos]["images"][0]).__name__, ds[tpos]["images"][0].size)


if __name__ == "__main__":
    main()
