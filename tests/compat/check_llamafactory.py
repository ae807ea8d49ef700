"""Check that LLaMA-Factory 0.9.5 loads, encodes and SFT-trains on vlprep's llamafactory files.

Usage (inside the llamafactory-swift virtualenv):
    python check_llamafactory.py --model-dir DIR --dataset-dir DATA_DIR [--dataset vlprep_train ...]

DATA_DIR holds dataset_info.json and the parquet files it names (data/llamafactory);
DIR is a model directory as written by tiny_qwen.py (tiny Qwen2.5-VL + processor).
Without --dataset, every dataset in dataset_info.json is checked.

For each dataset, with LLaMA-Factory's own code and the `qwen2_vl` template:
1. the raw file: every row has as many `<image>` in its messages as images, user/assistant
   turns alternate starting with user, and every image decodes;
2. `get_train_args` + `load_tokenizer` + `get_template_and_fix_tokenizer` + `get_dataset`
   (stage sft: dataset_info.json -> datasets.load_dataset -> sharegpt converter -> the
   Qwen2-VL multimodal plugin -> supervised processor) keep every row (LLaMA-Factory drops
   malformed rows with only a warning), and each encoded row has one run of <|image_pad|>
   per image whose lengths match the plugin's image_grid_thw, and labels that cover the
   assistant answer; with `--image-tokens`, the runs of each row add up to the file's `image_tokens`
   (vlprep's count, after LLaMA-Factory's own image_max_pixels / image_min_pixels resize);
   With `--tokenizer DIR` (the real Qwen2.5-VL tokenizer, data/tokenizer/qwen2_5_vl), each
   row's text tokens as the `qwen2_vl` template encodes them (each <image> as one image pad)
   must equal the file's `total_tokens - image_tokens` (vlprep's token budget);
3. then `llamafactory.train.tuner.run_exp` runs 2 SFT steps on CPU on the train dataset (the
   first name holding "train", else the first); the loss must be finite.

Prints `llamafactory check OK: ...`; exits 1 on any failure.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from token_runs import pad_runs  # noqa: E402  (this folder is on sys.path: the script's own)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")

IMAGE_PLACEHOLDER = "<image>"
IGNORE_INDEX = -100


def base_config(model_dir, dataset_dir, datasets, output_dir, max_steps, finetuning_type):
    """The dict a user would put in a LLaMA-Factory YAML file."""
    return {
        "model_name_or_path": str(model_dir),
        "trust_remote_code": False,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": finetuning_type,
        **({"lora_target": "all", "lora_rank": 4} if finetuning_type == "lora" else {}),
        "dataset_dir": str(dataset_dir),
        "dataset": ",".join(datasets),
        "template": "qwen2_vl",
        # No truncation: a cut through an image's tokens is a length setting, not a format error.
        "cutoff_len": 32768,
        "image_max_pixels": 64 * 28 * 28,
        "image_min_pixels": 4 * 28 * 28,
        "overwrite_cache": True,
        "preprocessing_num_workers": None,
        "output_dir": str(output_dir),
        "overwrite_output_dir": True,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1e-4,
        "max_steps": max_steps,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "dataloader_num_workers": 0,
        "seed": 0,
    }


def check_raw(path):
    """Step 1: the file as written. Returns (rows, failures); rows hold n_images per row."""
    import io

    import pyarrow.parquet as pq
    from PIL import Image

    table = pq.read_table(path)
    image_tokens = table.column("image_tokens").to_pylist() if "image_tokens" in table.column_names else None
    failures = []
    for col in ("messages", "images"):
        if col not in table.column_names:
            return [], [f"{path}: no column {col!r} (have {table.column_names})"]
    rows = []
    for i, row in enumerate(table.select(["messages", "images"]).to_pylist()):
        images = row["images"] or []
        msgs = row["messages"] or []
        n_tags = sum(m["content"].count(IMAGE_PLACEHOLDER) for m in msgs)
        if n_tags != len(images):
            failures.append(f"row {i}: {n_tags} {IMAGE_PLACEHOLDER} for {len(images)} images")
        roles = [m["role"] for m in msgs if m["role"] != "system" or msgs.index(m) != 0]
        want = ["user", "assistant"] * (len(roles) // 2)
        if roles != want or not roles:
            failures.append(f"row {i}: roles {roles}, want user/assistant pairs")
        for k, img in enumerate(images):
            try:
                data = img["bytes"] if isinstance(img, dict) and img.get("bytes") is not None else None
                Image.open(io.BytesIO(data) if data is not None else img["path"]).load()
            except Exception as e:  # noqa: BLE001
                failures.append(f"row {i}: image {k} does not decode: {e!r}")
        rows.append({"n_images": len(images), "assistant": msgs[-1]["content"] if msgs else "",
                     "image_tokens": image_tokens[i] if image_tokens else None})
    return rows, failures


def check_encoding(name, config, raw_rows, image_tokens=False):
    """Step 2: LLaMA-Factory's own data pipeline on one dataset. Returns failures. image_tokens: also
    compare each row's pad runs with the file's image_tokens."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    model_args, data_args, training_args, _, _ = get_train_args(dict(config, dataset=name))
    tokenizer_module = load_tokenizer(model_args)
    tokenizer, processor = tokenizer_module["tokenizer"], tokenizer_module["processor"]
    if processor is None:
        return [f"{name}: LLaMA-Factory loaded no processor from {config['model_name_or_path']}"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    if type(template.mm_plugin).__name__ != "Qwen2VLPlugin":
        return [f"{name}: template qwen2_vl has plugin {type(template.mm_plugin).__name__}"]
    ds = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)["train_dataset"]

    failures = []
    if len(ds) != len(raw_rows):
        # The converter/processor drop malformed rows with only a warning.
        failures.append(f"{name}: {len(raw_rows)} rows in the file, {len(ds)} after LLaMA-Factory's get_dataset")
        return failures
    pad_id = tokenizer.convert_tokens_to_ids(template.mm_plugin.image_token)
    merge = processor.image_processor.merge_size ** 2
    for i, (row, raw) in enumerate(zip(ds, raw_rows)):
        images = row["images"] or []
        if len(images) != raw["n_images"]:
            failures.append(f"{name} row {i}: {len(images)} images after encoding, {raw['n_images']} in the file")
            continue
        runs = pad_runs(row["input_ids"], pad_id)
        if images:
            grid = template.mm_plugin._get_mm_inputs(images, [], [], processor)["image_grid_thw"]
            want = [int(g.prod()) // merge for g in grid]
        else:
            want = []
        if runs != want:
            failures.append(f"{name} row {i}: <|image_pad|> runs {runs}, want {want} (one per image)")
        if image_tokens and sum(runs) != raw["image_tokens"]:
            failures.append(f"{name} row {i}: {runs} pad tokens, the file's image_tokens {raw['image_tokens']}")
        label_ids = [t for t in row["labels"] if t != IGNORE_INDEX]
        labels = tokenizer.decode(label_ids, skip_special_tokens=False)
        if raw["assistant"].strip() not in labels:
            failures.append(f"{name} row {i}: labels {labels!r} do not hold the assistant turn")
        if any(t == pad_id for t in label_ids):
            failures.append(f"{name} row {i}: image pads in the labels")
    print(f"{name}: {len(ds)} rows encoded, {sum(r['n_images'] for r in raw_rows)} images")
    return failures


def check_token_counts(name, path, tokenizer_dir):
    """The file's text token counts (total_tokens - image_tokens) against LLaMA-Factory's qwen2_vl
    template encoding with the real tokenizer. Returns failures."""
    import pyarrow.parquet as pq
    from llamafactory.data.template import TEMPLATES
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    template = TEMPLATES["qwen2_vl"]
    pad = "<|vision_start|><|image_pad|><|vision_end|>"  # what the plugin expands, one pad per image
    failures = []
    rows = pq.read_table(path, columns=["messages", "images", "total_tokens", "image_tokens"]).to_pylist()
    for i, row in enumerate(rows):
        msgs = [{"role": m["role"], "content": m["content"].replace(IMAGE_PLACEHOLDER, pad)} for m in row["messages"]]
        prompt, answer = template.encode_oneturn(tokenizer, msgs)
        text = len(prompt) + len(answer) - len(row["images"])
        if text != row["total_tokens"] - row["image_tokens"]:
            failures.append(f"{name} row {i}: {text} text tokens encoded, file says {row['total_tokens'] - row['image_tokens']}")
    print(f"{name}: token counts of {len(rows)} rows match the qwen2_vl template's encoding")
    return failures


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True, help="model dir from tiny_qwen.py")
    ap.add_argument("--dataset-dir", required=True, help="dir with dataset_info.json (data/llamafactory)")
    ap.add_argument("--dataset", action="append", help="dataset name in dataset_info.json (repeatable)")
    ap.add_argument("--max-steps", type=int, default=2)
    ap.add_argument("--tokenizer", help="real Qwen2.5-VL tokenizer dir: check the files' token counts")
    ap.add_argument("--finetuning-type", choices=["full", "lora"], default="full")
    ap.add_argument("--image-tokens", action="store_true", help="pad runs must add up to each row's image_tokens")
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    dataset_dir = Path(args.dataset_dir)
    info = json.loads((dataset_dir / "dataset_info.json").read_text())
    names = args.dataset or sorted(info)
    failures = []
    n_rows = 0
    with tempfile.TemporaryDirectory(prefix="lf-out-") as out_dir:
        config = base_config(args.model_dir, dataset_dir, names, out_dir, args.max_steps, args.finetuning_type)
        for name in names:
            if name not in info:
                failures.append(f"{name}: not in {dataset_dir / 'dataset_info.json'}")
                continue
            path = dataset_dir / info[name]["file_name"]
            raw_rows, raw_failures = check_raw(path)
            n_rows += len(raw_rows)
            failures += [f"{name}: {f}" for f in raw_failures]
            if raw_failures:
                continue
            if args.tokenizer:
                failures += check_token_counts(name, path, args.tokenizer)
            try:
                failures += check_encoding(name, config, raw_rows, args.image_tokens)
            except Exception:  # noqa: BLE001
                failures.append(f"{name}: LLaMA-Factory get_dataset failed:\n{traceback.format_exc()}")

        losses, steps = [], []
        if not failures:
            from llamafactory.train.tuner import run_exp
            from transformers import TrainerCallback

            class Record(TrainerCallback):
                def on_log(self, args, state, control, logs=None, **kwargs):
                    if logs and "loss" in logs:
                        losses.append(float(logs["loss"]))

                def on_train_end(self, args, state, control, **kwargs):
                    steps.append(state.global_step)

            try:
                train_name = next((n for n in names if "train" in n), names[0])
                run_exp(dict(config, dataset=train_name), callbacks=[Record()])
            except Exception:  # noqa: BLE001
                failures.append(f"run_exp (sft, {args.finetuning_type}) failed:\n{traceback.format_exc()}")
            else:
                print(f"llamafactory loss per step: {', '.join(f'{x:.6f}' for x in losses)}")
                if steps != [args.max_steps]:
                    failures.append(f"trained {steps} steps, want {args.max_steps}")
                if not losses or not all(math.isfinite(x) for x in losses):
                    failures.append(f"loss is not finite: {losses}")

    status = "OK" if not failures else f"FAIL ({len(failures)} problems)"
    print(
        f"llamafactory check {status}: {dataset_dir}: {', '.join(names)}: {n_rows} rows, "
        f"{args.max_steps} {args.finetuning_type} SFT steps in {time.monotonic() - t0:.1f}s"
    )
    for f in failures[:50]:
        print("  -", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
