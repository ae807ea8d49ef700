"""Check that TRL 1.16 can SFT-train on vlprep's trl parquet file.

Usage (inside the trainer virtualenv):
    python check_trl.py --model-dir DIR FILES  (a parquet file or a glob, e.g. data/trl/train/part-*.parquet)

DIR is a model directory as written by tiny_qwen.py (tiny Qwen2.5-VL + processor).

Loads the file the way TRL users do (`datasets.load_dataset("parquet", ...)`), then:
1. every row: `images` decode to PIL images; the number of `{"type": "image"}` parts
   in `messages` equals the number of images; content parts carry no `image`/`image_url`
   key (Qwen's template would render such a text part as an image, and TRL would not
   count it as a placeholder); TRL's own `prepare_multimodal_messages` accepts the row;
   if a `text` column exists, it holds one unexpanded
   `<|vision_start|><|image_pad|><|vision_end|>` per image;
2. every row goes through the collator `SFTTrainer` builds for image data (processor
   chat template + image processor) and comes out with one contiguous run of
   <|image_pad|> tokens per image;
3. `trl.SFTTrainer` trains the tiny model for 2 steps on CPU; the loss must be finite.

Prints the loss; exits 1 on any failure.
"""

import argparse
import math
import os
import sys
import tempfile
import time
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")


def image_pad_runs(token_ids, pad_id):
    """Number of contiguous runs of pad_id in token_ids."""
    runs, prev = 0, None
    for t in token_ids:
        if t == pad_id and prev != pad_id:
            runs += 1
        prev = t
    return runs


def check_rows(ds):
    """Per-row format checks (step 1). Returns a list of failures."""
    from PIL import Image
    from trl.data_utils import prepare_multimodal_messages

    failures = []
    if "messages" not in ds.column_names or "images" not in ds.column_names:
        return [f"need columns messages and images, have {ds.column_names}"]
    vision_block = "<|vision_start|><|image_pad|><|vision_end|>"
    text_without_vision = 0
    for i, row in enumerate(ds):
        images = row["images"] or []
        where = f"row {i}"
        for k, img in enumerate(images):
            if not isinstance(img, Image.Image):
                failures.append(
                    f"{where}: image {k} loads as {type(img).__name__}, not a PIL image "
                    "(parquet lacks the datasets feature metadata images: List(Image()))"
                )
                break
            try:
                img.load()
            except Exception as e:  # noqa: BLE001
                failures.append(f"{where}: image {k} does not decode: {e!r}")
        parts = [p for m in row["messages"] if isinstance(m["content"], list) for p in m["content"]]
        n_image_parts = sum(1 for p in parts if p.get("type") == "image")
        if n_image_parts != len(images):
            failures.append(f"{where}: {n_image_parts} image parts in messages for {len(images)} images")
        extra_keys = sorted({k for p in parts for k in p} - {"type", "text"})
        if extra_keys:
            failures.append(f"{where}: content parts have fields {extra_keys}; only type and text are allowed")
        try:
            prepare_multimodal_messages(row["messages"], images=images)
        except Exception as e:  # noqa: BLE001
            failures.append(f"{where}: TRL prepare_multimodal_messages rejects the row: {e}")
        if "text" in row and row["text"] is not None:
            n_blocks = row["text"].count(vision_block)
            if "<|image_pad|>" not in row["text"] and "<|vision_start|>" not in row["text"]:
                text_without_vision += 1  # rendered with a non-Qwen template: nothing to compare
            elif n_blocks != len(images) or row["text"].count("<|image_pad|>") != len(images):
                failures.append(f"{where}: text has {n_blocks} {vision_block} blocks for {len(images)} images")
        if len(failures) > 50:
            break
    if text_without_vision:
        print(f"note: {text_without_vision} rows have a text without Qwen vision tokens (not a Qwen template?)")
    return failures


def check_collation(trainer, ds, processor, batch_size):
    """Every row through the trainer's own collator (step 2). Returns a list of failures."""
    failures = []
    collator = trainer.data_collator
    pad_id = processor.image_token_id
    # The columns TRL keeps for vision datasets (SFTTrainer._set_signature_columns_if_needed).
    keep = [c for c in ("messages", "prompt", "completion", "image", "images") if c in ds.column_names]
    for start in range(0, len(ds), batch_size):
        rows = ds.select(range(start, min(start + batch_size, len(ds)))).select_columns(keep)
        examples = [dict(r) for r in rows]
        n_images = [len(e.get("images") or []) for e in examples]
        try:
            batch = collator(examples)
        except Exception:  # noqa: BLE001
            where = f"rows {start}..{start + len(examples) - 1}"
            failures.append(f"{where}: TRL collator failed:\n{traceback.format_exc()}")
            continue
        for j, ids in enumerate(batch["input_ids"].tolist()):
            runs = image_pad_runs(ids, pad_id)
            if runs != n_images[j]:
                failures.append(f"row {start + j}: {runs} runs of <|image_pad|> after collation, {n_images[j]} images")
        if "image_grid_thw" in batch and batch["image_grid_thw"].shape[0] != sum(n_images):
            failures.append(f"rows {start}..: image_grid_thw has {batch['image_grid_thw'].shape[0]} rows")
    return failures


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True, help="model dir from tiny_qwen.py")
    ap.add_argument("--max-steps", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("file")
    args = ap.parse_args(argv)

    import datasets
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
    from trl import SFTConfig, SFTTrainer

    t0 = time.monotonic()
    ds = datasets.load_dataset("parquet", data_files=args.file)["train"]
    processor = AutoProcessor.from_pretrained(args.model_dir)
    print(f"{args.file}: {len(ds)} rows, columns {ds.column_names}")
    if len(ds) == 0:
        print("FAIL: no rows")
        return 1

    failures = check_rows(ds)
    if failures:
        # Training would fail or silently misread these rows; report and stop here.
        print(f"trl check FAIL ({len(failures)} problems): {args.file}")
        for f in failures[:50]:
            print("  -", f)
        return 1

    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(args.model_dir, dtype=torch.float32)
    with tempfile.TemporaryDirectory(prefix="trl-out-") as out_dir:
        config = SFTConfig(
            output_dir=out_dir,
            max_steps=args.max_steps,
            per_device_train_batch_size=args.batch_size,
            gradient_accumulation_steps=1,
            learning_rate=1e-4,
            use_cpu=True,
            bf16=False,
            fp16=False,
            save_strategy="no",
            report_to="none",
            logging_steps=1,
            dataloader_num_workers=0,
            # No truncation: a cut through an image's tokens is a length setting, not a format error.
            max_length=None,
            seed=0,
        )
        # The dataset goes in as loaded; TRL itself keeps only messages/images for image data.
        trainer = SFTTrainer(model=model, args=config, train_dataset=ds, processing_class=processor)
        failures += check_collation(trainer, ds, processor, args.batch_size)
        try:
            result = trainer.train()
        except Exception:  # noqa: BLE001
            failures.append(f"SFTTrainer.train failed:\n{traceback.format_exc()}")
            result = None

    if result is not None:
        step_losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        print(f"trl loss: {result.training_loss:.6f} (per step: {', '.join(f'{x:.6f}' for x in step_losses)})")
        if trainer.state.global_step != args.max_steps:
            failures.append(f"trained {trainer.state.global_step} steps, want {args.max_steps}")
        if not step_losses or not all(math.isfinite(x) for x in [result.training_loss, *step_losses]):
            failures.append(f"loss is not finite: {result.training_loss} {step_losses}")

    status = "OK" if not failures else f"FAIL ({len(failures)} problems)"
    print(f"trl check {status}: {args.file}: {len(ds)} rows checked in {time.monotonic() - t0:.1f}s")
    for f in failures[:50]:
        print("  -", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
