"""A deterministic, offline raw sample in the raw format (docs/formats.md, raw), so `dvc repro` works on a fresh clone.

Each shard stores images and options in a different physical form (every form the real data arrives
in), and a few rows are bad on purpose, so the drop accounting of every stage has something to show."""
from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

QUESTIONS = [
    "Which structure is indicated by the arrow in this image?",
    "What is the most likely diagnosis given these findings?",
    "Welche Modalität wurde für diese Aufnahme verwendet?",
    "该影像最可能的诊断是什么？",
    "Which finding is visible — café-au-lait spots or erythema?",
]
# 3,000 pronounceable made-up words (question_style "distinct"), the same on every machine.
VOCABULARY = [a + b + c for a in ("ba", "ce", "di", "fo", "gu", "ha", "ke", "li", "mo", "nu", "pa", "re", "si",
                                   "to", "vu") for b in ("ra", "le", "ni", "so", "tu", "va", "me", "ko", "pi", "du",
                                                         "ga", "fe", "hi", "jo", "lu", "ma", "ne", "po", "qu", "ri")
              for c in ("n", "s", "t", "l", "r", "m", "x", "k", "d", "th")]
ANSWERS = ["Left ventricle", "Pneumothorax", "MRI T2", "肺炎", "Erythema", "Normal study", "CT with contrast"]

# Bad rows, by position in a cycle over the rows of a shard: what the real data contains now and then.
BAD_KINDS = ["no_image", "corrupt_bytes", "unknown_label", "truncated_jpeg", "malformed_options", "path_outside_root"]


@dataclass(frozen=True)
class SampleConfig:
    # From params.yaml `raw` (no defaults here, so the two cannot disagree).
    rows: int
    shards: int
    seed: int
    max_images_per_row: int
    min_image_size: int
    max_image_size: int
    bad_every: int = 11  # one row in this many is bad
    # Options for large benchmark data (benchmarks/run.py); the defaults leave the sample unchanged.
    bad_rows: bool = True  # False: no deliberately bad rows
    image_forms: tuple[str, ...] | None = None  # physical image forms cycled over shards; None = all
    # Encode this many distinct images once (half JPEG, half PNG) and let rows draw from them, so
    # generating 100k rows is I/O bound rather than image-encoding bound. None = a fresh image per use.
    image_pool: int | None = None
    # "gradient": the sample's images. "scan": a smooth random field (blurry, like a scan): RGB JPEGs and
    # 16-grey-level PNGs, ~20 KB mean at 64-1024 px sides and, like real images, incompressible, where
    # the periodic gradient's bytes compress 2x (skewing parquet sizes and any zstd write).
    # "figure": sized like journal figures (~80 KB mean): detailed RGB JPEGs, grey PNG diagrams, and 1 PNG
    # in 32 a photo saved as PNG (RGB, 768-1024 px, 2-3 MB), the outliers that show per-byte costs.
    image_style: str = "gradient"
    row_group_size: int = 16
    # "cycle": the sample's few questions in turn, so items repeat every few rows. "distinct": 8-14 words
    # drawn from a 3,000-word vocabulary, so items are distinct, as in most real data (a fixed duplicate
    # rate, whatever the number of rows: what the audit benchmark needs).
    question_style: str = "cycle"


def make_image(rng: np.random.Generator, config: SampleConfig, fmt: str) -> bytes:
    w, h = rng.integers(config.min_image_size, config.max_image_size + 1, size=2)
    if config.image_style == "scan":
        return _scan_image(rng, int(w), int(h), fmt)
    if config.image_style == "figure":
        return _figure_image(rng, int(w), int(h), fmt)
    # A smooth gradient plus noise: compresses like a real scan, not like flat colour.
    y, x = np.mgrid[0:h, 0:w]
    base = (x * rng.uniform(0.5, 2) + y * rng.uniform(0.5, 2)) % 256
    pixels = np.clip(base[..., None] + rng.normal(0, 12, size=(h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
    else:
        Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _scan_image(rng: np.random.Generator, w: int, h: int, fmt: str) -> bytes:
    mode = "RGB" if fmt == "JPEG" else "L"
    smooth = _smooth_field(rng, w, h, mode)
    buf = io.BytesIO()
    if fmt == "JPEG":
        noisy = np.clip(smooth + rng.normal(0, 1, size=smooth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy, mode).save(buf, format="JPEG", quality=85)
    else:
        Image.fromarray(smooth // 16 * 16, mode).save(buf, format="PNG")
    return buf.getvalue()


def _smooth_field(rng: np.random.Generator, w: int, h: int, mode: str) -> np.ndarray:
    low = rng.integers(0, 256, size=(int(rng.integers(4, 17)), int(rng.integers(4, 17)), len(mode)), dtype=np.uint8)
    return np.asarray(Image.fromarray(low.squeeze(-1) if mode == "L" else low, mode).resize((w, h), Image.Resampling.BICUBIC))


def _figure_image(rng: np.random.Generator, w: int, h: int, fmt: str) -> bytes:
    photo_png = fmt == "PNG" and rng.random() < 1 / 32
    if photo_png:
        w, h = (int(s) for s in rng.integers(768, 1025, size=2))
    mode = "L" if fmt == "PNG" and not photo_png else "RGB"
    smooth = _smooth_field(rng, w, h, mode)
    buf = io.BytesIO()
    if mode == "L":  # a diagram: few grey levels, compresses well
        Image.fromarray(smooth // 16 * 16, mode).save(buf, format="PNG")
    else:  # detail noise: what makes real photos' encoded bytes large
        noisy = np.clip(smooth + rng.normal(0, 8, size=smooth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy, mode).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def make_pool(config: SampleConfig) -> dict[str, list[bytes]]:
    """config.image_pool distinct encoded images per format family, from their own seeded generator."""
    rng = np.random.default_rng([config.seed, 1000])
    half = max(1, config.image_pool // 2)
    return {fmt: [make_image(rng, config, fmt) for _ in range(half)] for fmt in ("JPEG", "PNG")}


def make_item(rng: np.random.Generator, i: int, split: str, config: SampleConfig, pool: dict | None = None) -> dict:
    n_options = int(rng.integers(2, 6))
    letters = "ABCDE"[:n_options]
    texts = list(rng.choice(ANSWERS, size=n_options, replace=False))
    options = dict(zip(letters, texts))
    if i % 7 == 3:
        options["F"] = "None of the above"  # a key beyond A-E, printed after them
    label = str(rng.choice(list(options)))
    n_images = int(rng.integers(1, config.max_images_per_row + 1))
    fmt = "JPEG" if i % 2 else "PNG"
    reasoning = None if i % 3 == 0 else f"The image shows the key finding; therefore {options[label]}."
    return {
        "images": (
            [make_image(rng, config, fmt) for _ in range(n_images)]
            if pool is None
            else [pool[fmt][int(j)] for j in rng.integers(0, len(pool[fmt]), size=n_images)]
        ),
        "question": (QUESTIONS[i % len(QUESTIONS)] if config.question_style == "cycle"
                     else " ".join(VOCABULARY[j] for j in rng.integers(0, len(VOCABULARY), int(rng.integers(8, 15))))),
        "options": options,
        "answer_label": label,
        "answer": options[label],
        "reasoning": reasoning if i % 17 != 5 else "   ",  # blank reasoning: dropped by trl, not hf_bytes
        "dataset_name": f"sample_{split}_{'abc'[i % 3]}",
        "dataset_index": i,
        "hash": f"{split}-{i:06d}",
        "misc": json.dumps({"source_row": i}),
    }


JPEG_MAGIC = bytes([0xFF, 0xD8])


# How a shard stores each image: shard k uses IMAGE_FORMS[k % len(IMAGE_FORMS)].
def _as_path(b: bytes, image_dir: Path) -> str:
    # Content-addressed name: deterministic, and identical images share a file.
    ext = "jpg" if b.startswith(JPEG_MAGIC) else "png"
    name = f"{hashlib.sha1(b).hexdigest()[:16]}.{ext}"
    (image_dir / name).write_bytes(b)
    return f"images/{name}"  # relative to the shard's directory, the default allowed root


IMAGE_FORMS = {
    "struct": lambda b, d: {"bytes": b, "path": None},  # what datasets' Image feature stores
    "binary": lambda b, d: b,
    "path": _as_path,
    "base64": lambda b, d: base64.b64encode(b).decode(),
    "hex": lambda b, d: b.hex(),
    "data_uri": lambda b, d: "data:image/png;base64," + base64.b64encode(b).decode(),
    "ints": lambda b, d: list(b),  # bytes that went through JSON
}
# dict options become a parquet struct with nulls for absent keys (the 'E. None' bug's origin).
OPTIONS_FORMS = ["dict", "json"]


def spoil(item: dict, kind: str, image_form: str, options_form: str, image_dir: Path) -> None:
    """Make one already-stored item bad in a way its shard's physical form can hold."""
    encode = IMAGE_FORMS[image_form]
    if kind == "no_image":
        item["images"] = []
    elif kind == "corrupt_bytes":
        item["images"][0] = encode(b"\x89PNG\r\n\x1a\n" + b"not really an image", image_dir)
    elif kind == "truncated_jpeg":
        item["images"][0] = encode(item["raw_first_image"][: len(item["raw_first_image"]) // 2], image_dir)
    elif kind == "malformed_options" and options_form == "json":
        item["options"] = '{"A": "unterminated'
    elif kind == "path_outside_root" and image_form in ("path", "struct"):
        bad = "../../../../etc/passwd"
        item["images"][0] = bad if image_form == "path" else {"bytes": None, "path": bad}
    else:  # the form cannot hold that defect: a label outside the options is always possible
        item["answer_label"] = "Z"


def write_split(out_dir: Path, split: str, config: SampleConfig) -> None:
    rng = np.random.default_rng([config.seed, {"train": 0, "test": 1}.get(split, 2)])
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    pool = make_pool(config) if config.image_pool else None
    items = [make_item(rng, i, split, config, pool) for i in range(config.rows)]
    if config.rows > 5:  # one repeated (dataset_name, dataset_index), as merged datasets have
        items[-2]["dataset_name"], items[-2]["dataset_index"] = items[-5]["dataset_name"], items[-5]["dataset_index"]
    per_shard = -(-len(items) // config.shards)
    forms = list(config.image_forms or IMAGE_FORMS)
    for k in range(config.shards):
        image_form = forms[k % len(forms)]
        options_form = OPTIONS_FORMS[k % len(OPTIONS_FORMS)]
        rows = []
        for offset, item in enumerate(items[k * per_shard : (k + 1) * per_shard]):
            i = k * per_shard + offset
            row = dict(item, images=[IMAGE_FORMS[image_form](b, image_dir) for b in item["images"]])
            row["raw_first_image"] = item["images"][0]
            if options_form == "json":
                row["options"] = json.dumps(item["options"], ensure_ascii=False)
            if config.bad_rows and i % config.bad_every == config.bad_every - 1:
                spoil(row, BAD_KINDS[(i // config.bad_every) % len(BAD_KINDS)], image_form, options_form, image_dir)
            del row["raw_first_image"]
            rows.append(row)
        if rows:
            # Small row groups so even the sample exercises multi-row-group streaming.
            table = pa.Table.from_pylist(rows)
            # Pool images repeat: a parquet dictionary would store each once, unlike real data.
            dictionary = True if pool is None else [c for c in table.column_names if c != "images"]
            pq.write_table(table, out_dir / f"part-{k:03d}.parquet", row_group_size=config.row_group_size,
                           use_dictionary=dictionary)
