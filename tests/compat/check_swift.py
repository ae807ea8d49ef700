"""Check that ms-swift 4.6.0 loads, encodes and SFT-trains on vlprep's swift / swift_grpo files.

Usage (inside the swift virtualenv):
    python check_swift.py --model-dir DIR [--sft FILE.parquet ...] [--grpo FILE.parquet ...]

DIR is a model directory as written by tiny_qwen.py (tiny Qwen2.5-VL + processor).

With ms-swift's own code (`swift.load_dataset`, the path a `--dataset FILE.parquet` argument
takes: `datasets.load_dataset("parquet")` + AutoPreprocessor/MessagesPreprocessor), and the
`qwen2_5_vl` template (`swift.get_processor` + `swift.get_template`):
1. SFT files: every row survives loading with its messages unchanged (user with one `<image>`
   per image, then assistant) and its images as {bytes, path}; the template encodes every row
   (train mode) into one run of <|image_pad|> per image, run lengths matching image_grid_thw,
   and labels that hold the assistant turn;
2. GRPO files: loaded as `swift rlhf --rlhf_type grpo` loads them (remove_unused_columns=False),
   every row keeps `solution` (what reward functions receive) and `answer_label`, messages hold
   only the user turn, and the template encodes the prompt with one pad run per image;
3. `swift.sft_main` trains the tiny model for 2 steps on CPU on the first SFT file
   (`--dataset FILE.parquet --model DIR --model_type qwen2_5_vl --template qwen2_5_vl`);
   the loss must be finite;
4. `swift.rlhf_main --rlhf_type grpo` runs 2 steps on the first GRPO file (transformers
   generation, no vLLM, 2 generations per prompt) with a multiple-choice reward function
   registered here, which must receive every prompt's `solution` and `answer_label`; with
   `--reward-plugin FILE` (src/vlprep/scoring/swift_reward.py) also the plugin's `vlprep` reward, loaded
   the way a user's `--external_plugins FILE --reward_funcs vlprep` loads it, must be logged.

Tiny-model accommodation: ms-swift's Qwen2-VL template hard-codes the real tokenizer's ids for
<|image_pad|> / <|video_pad|> (151655 / 151656) to find where to expand images; the tiny
tokenizer's vocabulary is small, so they are set to its ids here (a no-op for a real Qwen model).
Images are capped at 64 merged tokens (MAX_PIXELS) to keep the vision tower cheap.

Prints `swift check OK: ...`; exits 1 on any failure.
"""

import argparse
import math
import os
import sys
import tempfile
import time
import traceback

from token_runs import pad_runs  # noqa: E402  (this folder is on sys.path: the script's own)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")
# Read by ms-swift's qwen_vl_utils patch (pixels -> IMAGE_MAX_TOKEN_NUM): 64 merged tokens per image.
os.environ.setdefault("MAX_PIXELS", str(64 * 28 * 28))
os.environ.setdefault("MIN_PIXELS", str(4 * 28 * 28))
if "MODELSCOPE_CACHE" not in os.environ:
    os.environ["MODELSCOPE_CACHE"] = tempfile.mkdtemp(prefix="modelscope-cache-")

IMAGE_TAG = "<image>"


def raw_rows(path, columns):
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing} (have {table.column_names})")
    return table.select(columns).to_pylist()


def patch_template_token_ids(tokenizer):
    from swift.template.templates.qwen import Qwen2VLTemplate

    image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    video_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    if (Qwen2VLTemplate.image_token_id, Qwen2VLTemplate.video_token_id) != (image_id, video_id):
        print(f"note: Qwen2VLTemplate image/video token ids set to the tokenizer's {image_id}/{video_id}")
        Qwen2VLTemplate.image_token_id = image_id
        Qwen2VLTemplate.video_token_id = video_id
    return image_id


def check_encoded(where, encoded, n_images, merge, pad_id, tokenizer, assistant=None):
    failures = []
    runs = pad_runs(list(encoded["input_ids"]), pad_id)
    grid = encoded.get("image_grid_thw")
    want = [int(g.prod()) // merge for g in grid] if grid is not None else []
    if len(want) != n_images or runs != want:
        failures.append(f"{where}: <|image_pad|> runs {runs}, image_grid_thw wants {want}, {n_images} images")
    if assistant is not None:
        label_ids = [t for t in encoded["labels"] if t != -100]
        labels = tokenizer.decode(label_ids, skip_special_tokens=False)
        if assistant.strip() not in labels:
            failures.append(f"{where}: labels {labels!r} do not hold the assistant turn")
    return failures


def check_sft_file(path, template, tokenizer, pad_id):
    from swift import load_dataset

    failures = []
    raw = raw_rows(path, ["messages", "images"])
    ds, _ = load_dataset([str(path)], num_proc=1, remove_unused_columns=True, load_from_cache_file=False)
    if len(ds) != len(raw):
        return [f"{path}: {len(raw)} rows in the file, {len(ds)} after swift load_dataset"], ds
    merge = template.processor.image_processor.merge_size ** 2
    template.set_mode("train")
    for i, (row, want) in enumerate(zip(ds, raw)):
        where = f"{path} row {i}"
        msgs = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        if msgs != want["messages"]:
            failures.append(f"{where}: messages changed by loading: {msgs!r}")
            continue
        images = row["images"] or []
        if len(images) != len(want["images"]) or any(not isinstance(im, dict) or im.get("bytes") is None for im in images):
            failures.append(f"{where}: images load as {[type(im).__name__ for im in images]}")
            continue
        n_tags = sum(m["content"].count(IMAGE_TAG) for m in msgs)
        if n_tags != len(images) or [m["role"] for m in msgs] != ["user", "assistant"]:
            failures.append(f"{where}: {n_tags} {IMAGE_TAG} for {len(images)} images, roles {[m['role'] for m in msgs]}")
            continue
        try:
            encoded = template.encode(dict(row))
        except Exception:  # noqa: BLE001
            failures.append(f"{where}: template.encode failed:\n{traceback.format_exc()}")
            continue
        failures += check_encoded(where, encoded, len(images), merge, pad_id, tokenizer, msgs[-1]["content"])
    print(f"{path}: {len(ds)} SFT rows loaded and encoded, columns after loading {ds.column_names}")
    return failures, ds


def check_grpo_file(path, template, tokenizer, pad_id):
    from swift import load_dataset

    failures = []
    raw = raw_rows(path, ["messages", "images", "solution", "answer_label"])
    ds, _ = load_dataset([str(path)], num_proc=1, remove_unused_columns=False, load_from_cache_file=False)
    if len(ds) != len(raw):
        return [f"{path}: {len(raw)} rows in the file, {len(ds)} after swift load_dataset"]
    for col in ("solution", "answer_label", "answer", "options"):  # what the reward functions read
        if col not in ds.column_names:
            return [f"{path}: column {col} lost in loading (have {ds.column_names})"]
    merge = template.processor.image_processor.merge_size ** 2
    template.set_mode("transformers")  # a prompt to generate from, as GRPO's rollout encodes it
    for i, (row, want) in enumerate(zip(ds, raw)):
        where = f"{path} row {i}"
        if row["solution"] != want["solution"] or row["answer_label"] != want["answer_label"]:
            failures.append(f"{where}: solution/answer_label {row['solution']!r}/{row['answer_label']!r} changed")
        msgs = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        if msgs != want["messages"] or [m["role"] for m in msgs] != ["user"]:
            failures.append(f"{where}: messages {msgs!r}, want the file's single user turn")
            continue
        images = row["images"] or []
        if msgs[0]["content"].count(IMAGE_TAG) != len(images):
            failures.append(f"{where}: {msgs[0]['content'].count(IMAGE_TAG)} {IMAGE_TAG} for {len(images)} images")
            continue
        try:
            encoded = template.encode({"messages": msgs, "images": images})
        except Exception:  # noqa: BLE001
            failures.append(f"{where}: template.encode failed:\n{traceback.format_exc()}")
            continue
        failures += check_encoded(where, encoded, len(images), merge, pad_id, tokenizer)
    print(f"{path}: {len(ds)} GRPO rows loaded and encoded, columns after loading {ds.column_names}")
    return failures


class _Rewards:
    """What the GRPO reward function saw (filled in the same process)."""

    calls = []


def register_choice_reward():
    """Register `vlprep_choice`: 1 if the completion's <answer> is the solution's label."""
    import re

    from swift.rewards import ORM, orms

    class VlprepChoice(ORM):
        def __call__(self, completions, solution, answer_label, **kwargs):
            _Rewards.calls.append({"solution": list(solution), "answer_label": list(answer_label)})
            rewards = []
            for completion, label in zip(completions, solution):
                m = re.search(r"<answer>\s*(.*?)\s*</answer>", completion, re.DOTALL)
                rewards.append(1.0 if m and m.group(1).strip() == label.strip() else 0.0)
            return rewards

    orms["vlprep_choice"] = VlprepChoice


def common_cli(model_dir, dataset, tuner_type, max_steps, out_dir):
    """What a user types after `swift sft` / `swift rlhf`, plus the tiny-model / CPU settings."""
    return [
        "--model", str(model_dir),
        "--model_type", "qwen2_5_vl",
        "--template", "qwen2_5_vl",
        "--dataset", str(dataset),
        "--tuner_type", tuner_type,
        "--torch_dtype", "float32",
        "--max_steps", str(max_steps),
        "--per_device_train_batch_size", "2",
        "--gradient_accumulation_steps", "1",
        "--learning_rate", "1e-4",
        "--output_dir", out_dir,
        "--save_strategy", "no",
        "--report_to", "none",
        "--logging_steps", "1",
        "--dataloader_num_workers", "0",
        "--dataset_num_proc", "1",
        "--split_dataset_ratio", "0",
        "--eval_strategy", "no",
        "--seed", "0",
        # Else the trainer asks the ModelScope hub whether the model is the latest (and
        # sends it the run's config): offline that costs ~8 s of retries.
        "--check_model", "false",
    ]  # fmt: skip


def step_losses(result, max_steps, what):
    """Failures of a finished run's log history (finite loss at every step, max_steps steps)."""
    history = result.get("log_history", []) if isinstance(result, dict) else []
    logged = [h for h in history if "loss" in h]
    losses = [float(h["loss"]) for h in logged]
    print(f"swift {what} loss per step: {', '.join(f'{x:.6f}' for x in losses)}")
    failures = []
    if not logged or max(h["step"] for h in logged) != max_steps:
        failures.append(f"{what}: trained steps {[h['step'] for h in logged]}, want {max_steps}")
    if not losses or not all(math.isfinite(x) for x in losses):
        failures.append(f"{what}: loss is not finite: {losses}")
    return failures, history


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True, help="model dir from tiny_qwen.py")
    ap.add_argument("--sft", action="append", default=[], help="swift SFT parquet file (repeatable)")
    ap.add_argument("--grpo", action="append", default=[], help="swift GRPO parquet file (repeatable)")
    ap.add_argument("--max-steps", type=int, default=2)
    ap.add_argument("--tuner-type", choices=["full", "lora"], default="full")
    ap.add_argument("--reward-plugin", help="ms-swift plugin file adding the `vlprep` reward (swift_reward.py)")
    args = ap.parse_args(argv)
    if not args.sft and not args.grpo:
        ap.error("give --sft and/or --grpo files")

    t0 = time.monotonic()
    from swift import get_processor, get_template

    processor = get_processor(args.model_dir, model_type="qwen2_5_vl")
    tokenizer = processor.tokenizer
    pad_id = patch_template_token_ids(tokenizer)
    template = get_template(processor, template_type="qwen2_5_vl", max_length=None)

    failures = []
    n_rows = 0
    for path in args.sft:
        try:
            f, ds = check_sft_file(path, template, tokenizer, pad_id)
            failures += f
            n_rows += len(ds)
        except Exception:  # noqa: BLE001
            failures.append(f"{path}: swift loading failed:\n{traceback.format_exc()}")
    for path in args.grpo:
        try:
            failures += check_grpo_file(path, template, tokenizer, pad_id)
        except Exception:  # noqa: BLE001
            failures.append(f"{path}: swift loading failed:\n{traceback.format_exc()}")

    if not failures and args.sft:
        from swift import sft_main

        with tempfile.TemporaryDirectory(prefix="swift-out-") as out_dir:
            cli = common_cli(args.model_dir, args.sft[0], args.tuner_type, args.max_steps, out_dir)
            try:
                result = sft_main([*cli, "--max_length", "32768"])
            except Exception:  # noqa: BLE001
                failures.append(f"sft_main failed:\n{traceback.format_exc()}")
            else:
                failures += step_losses(result, args.max_steps, "sft")[0]

    if not failures and args.grpo:
        from swift import rlhf_main

        register_choice_reward()
        with tempfile.TemporaryDirectory(prefix="swift-grpo-out-") as out_dir:
            cli = common_cli(args.model_dir, args.grpo[0], args.tuner_type, args.max_steps, out_dir)
            cli += [
                "--rlhf_type", "grpo",
                "--reward_funcs", "vlprep_choice", "format", *(["vlprep"] if args.reward_plugin else []),
                *(["--external_plugins", args.reward_plugin] if args.reward_plugin else []),
                "--use_vllm", "false",
                "--num_generations", "2",
                "--max_completion_length", "16",
            ]  # fmt: skip
            try:
                result = rlhf_main(cli)
            except Exception:  # noqa: BLE001
                failures.append(f"rlhf_main (grpo) failed:\n{traceback.format_exc()}")
            else:
                f, history = step_losses(result, args.max_steps, "grpo")
                failures += f
                if not any("rewards/VlprepChoice/mean" in h for h in history):
                    failures.append(f"grpo: no vlprep_choice reward logged: {history}")
                if args.reward_plugin and not any("rewards/VlprepReward/mean" in h for h in history):
                    failures.append(f"grpo: the plugin's vlprep reward was not logged: {history}")
                seen = [x for call in _Rewards.calls for x in call["solution"]]
                labels = set(raw["solution"] for raw in raw_rows(args.grpo[0], ["solution"]))
                if not seen or not set(seen) <= labels:
                    failures.append(f"grpo: reward function saw solutions {seen}, the file has {sorted(labels)}")
                else:
                    print(f"grpo: reward function saw {len(seen)} solutions, e.g. {seen[:4]}")

    status = "OK" if not failures else f"FAIL ({len(failures)} problems)"
    files = ", ".join(map(str, args.sft + args.grpo))
    print(f"swift check {status}: {files}: {n_rows} SFT rows, {args.max_steps} {args.tuner_type} SFT and GRPO steps "
          f"in {time.monotonic() - t0:.1f}s")
    for f in failures[:50]:
        print("  -", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
