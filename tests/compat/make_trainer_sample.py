"""Write small hand-made LLaMA-Factory / ms-swift parquet files in vlprep's output formats.

Usage: python make_trainer_sample.py OUT_DIR [--rows N] [--image-feature none|decode|nodecode]

Writes, for the splits train and test:
  OUT_DIR/llamafactory/<split>.parquet + OUT_DIR/llamafactory/dataset_info.json (vlprep_<split>)
  OUT_DIR/swift/<split>.parquet        (SFT: user + assistant turns)
  OUT_DIR/swift_grpo/<split>.parquet   (GRPO: user turn only, plus `solution`)

These stand in for the files the pipeline's stages will write (the same layout as
data/llamafactory, data/swift, data/swift_grpo), so the trainer checks can run before
those stages exist. The format:

  messages: list<struct<role: string, content: string>>
      user content = "<image>" * n_images + prompts.problem_text(question, options)
      assistant    = prompts.response_text(reasoning, answer_label)   (not in swift_grpo)
  images:   list<struct<bytes: binary, path: string>>   (encoded PNG/JPEG bytes, path null)
  swift_grpo only: solution (string: the answer label), answer_label
  pass-through: question, options (JSON string), answer_label, answer, dataset_name,
      dataset_index, total_tokens

--image-feature: `none` (default) writes plain Arrow with no `huggingface` schema metadata,
so `datasets` yields each image as a {bytes, path} dict; `decode` / `nodecode` add the
metadata `images: List(Image())` / `List(Image(decode=False))` as the hf_bytes/trl stages do,
so `datasets` yields PIL images / {bytes, path} dicts.

Needs only pyarrow and Pillow (runs in the trainer venv or the project's env); the prompt
text comes from the project's src/vlprep/prompts.py, loaded by path.
"""

import argparse
import importlib.util
import io
import json
import sys
from pathlib import Path

SPLITS = ("train", "test")


def _prompts():
    path = Path(__file__).resolve().parents[2] / "src" / "vlprep" / "prompts.py"
    spec = importlib.util.spec_from_file_location("_vlprep_prompts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# (question, options, answer_label, reasoning, image specs (w, h, mode, format))
_ROWS = [
    (
        "Which of the following is the most likely diagnosis?",
        {"A": "Pneumonia", "B": "Pleural effusion", "C": "Pneumothorax", "D": "Normal chest radiograph"},
        "B",
        "The costophrenic angle is blunted with a meniscus sign.",
        [(300, 200, "RGB", "PNG")],
    ),
    (
        "Compare the two scans. What changed?",
        {"A": "Lesion grew", "B": "Lesion shrank", "C": "No change"},
        "A",
        "The lesion on the second scan is larger.",
        [(64, 48, "L", "PNG"), (120, 90, "RGB", "JPEG")],
    ),
    (
        "Ünïcödé question: 这张组织切片显示什么? 🩺",
        {"A": "Adenocarcinoma", "B": "Normal tissue", "C": "Inflammation", "D": "Necrosis", "E": "Fibrosis"},
        "C",
        "Dense infiltrate of neutrophils.",
        [(28, 100, "RGB", "PNG"), (500, 500, "RGBA", "PNG"), (57, 57, "RGB", "JPEG")],
    ),
    (
        "What imaging modality is shown?",
        {"A": "CT", "B": "MRI", "C": "Ultrasound", "D": "X-ray"},
        "D",
        "A projection radiograph.",
        [(256, 256, "L", "JPEG")],
    ),
    (
        "Identify the structure marked by the arrow.",
        {"A": "Aorta", "B": "Trachea"},
        "B",
        "Air-filled tubular structure in the midline.",
        [(180, 60, "RGB", "PNG"), (33, 200, "RGB", "PNG")],
    ),
]


def _image_bytes(w, h, mode, fmt, seed):
    from PIL import Image, ImageDraw

    img = Image.new(mode, (w, h), (seed * 40) % 256 if mode == "L" else None)
    if mode != "L":
        img = Image.new(mode, (w, h), tuple([(seed * 53) % 256, 90, 160] + ([255] if mode == "RGBA" else [])))
    draw = ImageDraw.Draw(img)
    draw.rectangle([w // 4, h // 4, w // 2, h // 2], fill=255 if mode == "L" else None, outline="white")
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def make_rows(n_rows, split):
    """Rows with every column the three formats need (the caller picks columns)."""
    prompts = _prompts()
    rows = []
    for i in range(n_rows):
        question, options, label, reasoning, specs = _ROWS[i % len(_ROWS)]
        images = [
            {"bytes": _image_bytes(w, h, mode, fmt, seed=i * 7 + k), "path": None}
            for k, (w, h, mode, fmt) in enumerate(specs)
        ]
        user = prompts.IMAGE_MARKER * len(images) + prompts.problem_text(question, options)
        assistant = prompts.response_text(reasoning, label)
        rows.append(
            {
                "user": user,
                "assistant": assistant,
                "images": images,
                "question": question,
                "options": json.dumps(options, ensure_ascii=False),
                "answer_label": label,
                "answer": options[label],
                "dataset_name": f"sample_{split}",
                "dataset_index": i,
                "total_tokens": 100 + 10 * i,  # not checked by the trainers; a plausible int
            }
        )
    return rows


def _schema(kind, image_feature):
    import pyarrow as pa

    msg = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    img = pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    fields = [("messages", msg), ("images", img)]
    if kind == "swift_grpo":
        fields.append(("solution", pa.string()))
    fields += [
        ("question", pa.string()),
        ("options", pa.string()),
        ("answer_label", pa.string()),
        ("answer", pa.string()),
        ("dataset_name", pa.string()),
        ("dataset_index", pa.int64()),
        ("total_tokens", pa.int64()),
    ]
    metadata = None
    if image_feature != "none":
        string = {"dtype": "string", "_type": "Value"}
        int64 = {"dtype": "int64", "_type": "Value"}
        image = {"_type": "Image"} if image_feature == "decode" else {"decode": False, "_type": "Image"}
        features = {
            "messages": {"feature": {"role": string, "content": string}, "_type": "List"},
            "images": {"feature": image, "_type": "List"},
        }
        if kind == "swift_grpo":
            features["solution"] = string
        features.update(
            question=string,
            options=string,
            answer_label=string,
            answer=string,
            dataset_name=string,
            dataset_index=int64,
            total_tokens=int64,
        )
        metadata = {"huggingface": json.dumps({"info": {"features": features}})}
    return pa.schema(fields, metadata=metadata)


def write(out_dir, n_rows=6, image_feature="none"):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    written = []
    for kind in ("llamafactory", "swift", "swift_grpo"):
        (out / kind).mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            rows = make_rows(n_rows if split == "train" else max(2, n_rows // 2), split)
            records = []
            for r in rows:
                messages = [{"role": "user", "content": r["user"]}]
                if kind != "swift_grpo":
                    messages.append({"role": "assistant", "content": r["assistant"]})
                rec = {"messages": messages, "images": r["images"]}
                if kind == "swift_grpo":
                    rec["solution"] = r["answer_label"]
                rec.update({k: r[k] for k in ("question", "options", "answer_label", "answer")})
                rec.update({k: r[k] for k in ("dataset_name", "dataset_index", "total_tokens")})
                records.append(rec)
            path = out / kind / f"{split}.parquet"
            pq.write_table(pa.Table.from_pylist(records, schema=_schema(kind, image_feature)), path)
            written.append(path)
    info = {
        f"vlprep_{split}": {
            "file_name": f"{split}.parquet",
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "system_tag": "system",
            },
        }
        for split in SPLITS
    }
    (out / "llamafactory" / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--rows", type=int, default=6, help="rows in the train split (test gets half)")
    ap.add_argument("--image-feature", choices=["none", "decode", "nodecode"], default="none")
    args = ap.parse_args(argv)
    for path in write(args.out_dir, args.rows, args.image_feature):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
