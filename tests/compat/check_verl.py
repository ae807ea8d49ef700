"""Check that verl 0.9.1 can train on vlprep's verl parquet files.

Usage (inside the trainer virtualenv):
    python check_verl.py --processor-dir DIR SPLIT [SPLIT ...]

SPLIT is a split directory of parts (part-00000.parquet, ...: handed to verl as its file list, as
`data.train_files=[...]`) or one parquet file.

DIR is a model directory as written by tiny_qwen.py (processor + config.json).

For every file this runs verl's own code, configured the way verl's PPO trainer
configures it, with only the LLM server and the reward worker replaced by in-process
stand-ins:

1. The trainer config is composed from verl's packaged `ppo_trainer.yaml` with the
   overrides a user passes for image data (data.image_key=images, a generous
   data.max_prompt_length, data.filter_overlong_prompts=True so verl's own length
   filter processes every row: that filter silently drops any row it cannot process).
2. Tokenizer and processor come from `HFModelConfig` (verl's hf_tokenizer /
   hf_processor), the dataset from `create_rl_dataset` (RLHFDataset), batched with
   verl's `collate_fn` into a `DataProto` as `RayPPOTrainer.fit` does.
3. The rollout side is verl's real `AgentLoopWorker.generate_sequences` with the
   default `single_turn_agent` loop: image extraction (`RLHFDataset.
   process_multi_modal_info` -> qwen_vl_utils), prompt tokenisation (the Qwen-VL
   Continuous Token builder: processor chat template + image processor, which expands
   each image into a run of <|image_pad|> tokens), post-processing (multi_modal_inputs
   and M-RoPE position ids via the model's get_rope_index) and reward scoring through
   verl's `NaiveRewardManager`.

Checks per row: no row lost by the length filter; images decode to PIL images and
their number equals the number of `<image>` markers; the prompt token ids sent to the
LLM server hold exactly one contiguous run of <|image_pad|> per image (each inside
<|vision_start|> ... <|vision_end|>, of the length image_grid_thw implies);
`reward_model.ground_truth` is non-empty and equals `extra_info["answer"]` as the
reward function receives them; `extra_info` is a dict whose `index` is an int. With
--image-tokens, also: the <|image_pad|> runs of each row add up to its `extra_info.image_tokens`
(vlprep's count; exact when params.yaml's model.min_pixels / max_pixels are the processor's).

With --expect-order JSON (a list of extra_info.index), the rows verl's dataloader yields (data.shuffle=False,
as for a curriculum) must come in exactly that order (repeats included): checked for each file.

Prints one summary line per file; exits 1 on any failure.
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

# verl and datasets must not try the network (no HF hub here).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Keep verl's agent-loop loggers quiet unless asked.
os.environ.setdefault("VERL_LOGGING_LEVEL", "WARN")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from PIL import Image  # noqa: E402

# A fixed "model answer" the stand-in LLM server returns for every prompt.
FAKE_RESPONSE = "<think> The image shows the finding. </think>\n<answer> A </answer>"


def compose_trainer_config(model_dir, files, max_prompt_length, response_length, cache_dir):
    """verl's own PPO trainer config (packaged yaml) with a user's image-data overrides."""
    import verl
    from hydra import compose, initialize_config_dir

    config_dir = str(Path(verl.__file__).parent / "trainer" / "config")
    overrides = [
        f"actor_rollout_ref.model.path={model_dir}",
        # Only the name is read here (no engine starts); the config requires one.
        "actor_rollout_ref.rollout.name=vllm",
        f"data.train_files=[{','.join(files)}]",
        f"data.val_files=[{','.join(files)}]",
        "data.prompt_key=prompt",
        "data.image_key=images",
        f"data.max_prompt_length={max_prompt_length}",
        f"data.max_response_length={response_length}",
        # Run verl's own length filter over every row: with a generous limit it only
        # drops rows it fails to process (it turns any exception into "too long").
        "data.filter_overlong_prompts=True",
        "data.filter_overlong_prompts_workers=1",
        "data.return_raw_chat=True",
        "data.shuffle=False",
        f"+data.cache_dir={cache_dir}",
        # One rollout per prompt is enough to exercise the path.
        "actor_rollout_ref.rollout.n=1",
    ]
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose("ppo_trainer", overrides=overrides)


class FakeLLMServer:
    """Stands in for verl's LLMServerClient (vLLM/SGLang): records what it is sent."""

    def __init__(self, response_ids):
        self.response_ids = list(response_ids)
        self.requests = {}  # priority (row position in the batch) -> request kwargs

    async def generate(self, request_id, *, prompt_ids, sampling_params, image_data=None, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        self.requests[int(kwargs.get("priority", len(self.requests)))] = {
            "prompt_ids": list(prompt_ids),
            "image_data": image_data,
        }
        return TokenOutput(token_ids=self.response_ids, stop_reason="completed")


class _Remote:
    """Mimics a Ray actor method handle: `handle.method.remote(...)` -> awaitable."""

    def __init__(self, fn):
        self.remote = fn


class FakeRewardWorker:
    """Stands in for verl's RewardLoopWorker actor, running verl's NaiveRewardManager
    in-process with a compute_score that records what a custom reward function gets."""

    def __init__(self, tokenizer):
        from omegaconf import OmegaConf
        from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager

        self.calls = []
        self.manager = NaiveRewardManager(OmegaConf.create({}), tokenizer, compute_score=self._compute_score)
        self.compute_score = _Remote(self.manager.run_single)

    def _compute_score(self, data_source, solution_str, ground_truth, extra_info, **kwargs):
        # Copy what matters before verl adds its own keys (num_turns, ...) to extra_info.
        self.calls.append(
            {
                "data_source": data_source,
                "ground_truth": ground_truth,
                "extra_info_type": type(extra_info),
                "extra_info": dict(extra_info) if isinstance(extra_info, dict) else extra_info,
                "solution_str": solution_str,
            }
        )
        return 0.0


def image_pad_runs(token_ids, pad_id):
    """[(start, length), ...] of the contiguous runs of pad_id in token_ids."""
    runs, start = [], None
    for i, t in enumerate(token_ids):
        if t == pad_id and start is None:
            start = i
        elif t != pad_id and start is not None:
            runs.append((start, i - start))
            start = None
    if start is not None:
        runs.append((start, len(token_ids) - start))
    return runs


def check_schema(table):
    """Arrow-level format checks (docs/formats.md, verl). Returns a list of problems."""
    problems = []
    for name in ("data_source", "prompt", "images", "ability", "reward_model", "extra_info"):
        if name not in table.schema.names:
            problems.append(f"missing column {name!r}")
    if problems:
        return problems
    # images: list<struct<bytes: binary, path: string>> (docs/formats.md, verl). A path column that is
    # all null may come out as Arrow type null; datasets/verl read that the same way.
    t = table.schema.field("images").type
    item = t.value_type if (pa.types.is_list(t) or pa.types.is_large_list(t)) else None
    if (
        item is None
        or not pa.types.is_struct(item)
        or item.get_field_index("bytes") < 0
        or not (pa.types.is_binary(item.field("bytes").type) or pa.types.is_large_binary(item.field("bytes").type))
    ):
        problems.append(f"images must be list<struct<bytes: binary, path: string>>, got {t}")
    t = table.schema.field("extra_info").type
    if not pa.types.is_struct(t):
        problems.append(f"extra_info must be a struct (verl calls .get on it), got {t}")
    elif t.get_field_index("index") < 0 or not pa.types.is_integer(t.field("index").type):
        problems.append(f"extra_info.index must be an integer field, got {t}")
    t = table.schema.field("reward_model").type
    if not pa.types.is_struct(t) or t.get_field_index("ground_truth") < 0:
        problems.append(f"reward_model must be a struct with ground_truth, got {t}")
    t = table.schema.field("prompt").type
    if not pa.types.is_list(t) or not pa.types.is_struct(t.value_type):
        problems.append(f"prompt must be list<struct<role, content>>, got {t}")
    return problems


def part_files(path):
    """A split directory's parts in order (what a user lists in data.train_files), or the one file."""
    return sorted(str(p) for p in Path(path).glob("part-*.parquet")) if Path(path).is_dir() else [str(path)]


def load_file(path, cfg, tokenizer, processor):
    """Schema checks + verl's RLHFDataset (with its length filter) for one file.

    Returns (dataset or None, per-row facts from the raw parquet, failures)."""
    from verl.trainer.ppo.utils import create_rl_dataset

    failures = []
    parts = part_files(path)
    table = pq.read_table(parts)
    n_rows = table.num_rows
    failures += [f"{path}: {p}" for p in check_schema(table)]
    if failures:
        return None, None, failures
    raw = {
        "prompts": table.column("prompt").to_pylist(),
        "n_images": [len(x or []) for x in table.column("images").to_pylist()],
    }
    raw_indices = [e.get("index") if e else None for e in table.column("extra_info").to_pylist()]
    del table

    # verl's trainer builds its datasets with exactly this call (main_ppo -> create_rl_dataset).
    dataset = create_rl_dataset(parts, cfg.data, tokenizer, processor, is_train=True)
    if len(dataset) != n_rows:
        kept = {e.get("index") for e in dataset.dataframe["extra_info"]}
        lost = [ix for ix in raw_indices if ix not in kept]
        failures.append(
            f"{path}: verl's length filter dropped {n_rows - len(dataset)} of {n_rows} rows "
            f"(extra_info.index of dropped rows: {lost[:20]}); see verl's traceback above"
        )
        return None, None, failures
    return dataset, raw, failures


def check_rows(path, dataset, raw, tokenizer, processor, rollout, batch_size, image_tokens=False, order=None):
    """Run verl's rollout path over every row of one dataset. Returns (rows_checked, failures).
    `order`, a list, receives each row's verl index in the order the dataloader yields them.

    rollout is (AgentLoopWorker, FakeLLMServer, FakeRewardWorker); image_tokens: also compare the pad
    runs with extra_info.image_tokens."""
    from torch.utils.data import DataLoader
    from verl import DataProto
    from verl.utils.dataset.rl_dataset import collate_fn

    failures = []
    raw_prompts, raw_n_images = raw["prompts"], raw["n_images"]
    image_pad_id = processor.image_token_id
    vision_start_id = tokenizer.convert_tokens_to_ids("<|vision_start|>")
    vision_end_id = tokenizer.convert_tokens_to_ids("<|vision_end|>")
    merge_len = processor.image_processor.merge_size**2

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=collate_fn)
    checked = 0
    n_no_image = 0
    for batch_no, batch_dict in enumerate(loader):
        base = batch_no * batch_size
        # As RayPPOTrainer.fit: DataProto, uid, then the generation batch (_get_gen_batch).
        batch = DataProto.from_single_dict(batch_dict)
        batch.non_tensor_batch["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(batch))], dtype=object)
        reward_keys = {"data_source", "reward_model", "extra_info", "uid"} & batch.non_tensor_batch.keys()
        gen_batch = batch.pop(batch_keys=[], non_tensor_batch_keys=list(set(batch.non_tensor_batch) - reward_keys))
        gen_batch.non_tensor_batch.update(batch.non_tensor_batch)
        gen_batch.meta_info["global_steps"] = 1
        gen_batch.meta_info["validate"] = False
        # As AgentLoopManager.generate_sequences: a per-sample priority.
        gen_batch.non_tensor_batch["priority"] = np.arange(len(gen_batch), dtype=np.int64)

        # Dataset side: what RLHFDataset.__getitem__ produced for each row.
        nt = gen_batch.non_tensor_batch
        if order is not None:
            order += [int(i) for i in nt["index"]]
        n_images_of = []
        for j in range(len(gen_batch)):
            row = base + j
            where = f"{path} row {row}"
            markers = sum(str(m.get("content") or "").count("<image>") for m in raw_prompts[row])
            parts = [
                c
                for m in nt["raw_prompt"][j]
                if isinstance(m.get("content"), list)
                for c in m["content"]
                if isinstance(c, dict) and c.get("type") == "image"
            ]
            n_images_of.append(len(parts))
            if raw_n_images[row] == 0:
                n_no_image += 1
            if not (markers == len(parts) == raw_n_images[row]):
                failures.append(
                    f"{where}: {markers} <image> markers, {raw_n_images[row]} images, "
                    f"{len(parts)} image parts after RLHFDataset._build_messages"
                )
            for k, c in enumerate(parts):
                try:
                    if not isinstance(c.get("image"), Image.Image):
                        raise TypeError(f"not a PIL image: {type(c.get('image'))}")
                    c["image"].load()
                except Exception as e:  # noqa: BLE001 - report and go on
                    failures.append(f"{where}: image {k} does not load: {e!r}")
            extra = nt["extra_info"][j]
            if not isinstance(extra, dict):
                failures.append(f"{where}: extra_info is {type(extra).__name__}, not a dict")
            elif type(extra.get("index")) is not int:
                failures.append(f"{where}: extra_info.index is {extra.get('index')!r}, not an int")
            elif nt["index"][j] != extra["index"]:
                failures.append(f"{where}: verl's index {nt['index'][j]!r} != extra_info.index")

        # Rollout side: verl's AgentLoopWorker with the stand-in server and reward worker.
        worker, server, reward = rollout
        server.requests.clear()
        reward.calls.clear()
        try:
            loop = asyncio.get_event_loop()
            output = loop.run_until_complete(worker.generate_sequences(gen_batch))
        except Exception:  # noqa: BLE001 - report the whole batch and go on
            failures.append(
                f"{path} rows {base}..{base + len(gen_batch) - 1}: verl rollout path failed:\n"
                + traceback.format_exc()
            )
            continue

        mm_inputs = output.non_tensor_batch.get("multi_modal_inputs")
        for j in range(len(gen_batch)):
            row = base + j
            where = f"{path} row {row}"
            n_img = n_images_of[j]
            request = server.requests.get(j)
            if request is None:
                failures.append(f"{where}: no request reached the LLM server")
                continue
            ids = request["prompt_ids"]
            runs = image_pad_runs(ids, image_pad_id)
            if len(runs) != n_img:
                failures.append(f"{where}: {len(runs)} runs of <|image_pad|> in prompt ids for {n_img} images")
            if len(request["image_data"] or []) != n_img:
                failures.append(f"{where}: {len(request['image_data'] or [])} images sent to server, want {n_img}")
            grid = None if mm_inputs is None or mm_inputs[j] is None else mm_inputs[j].get("image_grid_thw")
            if n_img and (grid is None or grid.shape[0] != n_img):
                failures.append(f"{where}: image_grid_thw {None if grid is None else tuple(grid.shape)}")
                grid = None
            for k, (start, length) in enumerate(runs):
                if start == 0 or ids[start - 1] != vision_start_id or ids[start + length : start + length + 1] != [
                    vision_end_id
                ]:
                    failures.append(f"{where}: image {k} pad run not inside <|vision_start|>..<|vision_end|>")
                if grid is not None and k < grid.shape[0] and length != int(grid[k].prod()) // merge_len:
                    failures.append(f"{where}: image {k} has {length} pad tokens, grid {grid[k].tolist()}")
            if image_tokens:
                written = nt["extra_info"][j].get("image_tokens")
                if sum(length for _, length in runs) != written:
                    failures.append(f"{where}: {[length for _, length in runs]} pad tokens, extra_info.image_tokens {written}")
            checked += 1

        # Reward side: what a (custom) reward function receives for each row.
        if len(reward.calls) != len(gen_batch):
            failures.append(f"{path} batch {batch_no}: {len(reward.calls)} reward calls for {len(gen_batch)} rows")
        for call in reward.calls:
            extra = call["extra_info"]
            where = f"{path} extra_info.index={extra.get('index') if isinstance(extra, dict) else '?'}"
            if not isinstance(call["data_source"], str) or not call["data_source"]:
                failures.append(f"{where}: data_source {call['data_source']!r}")
            if not isinstance(extra, dict):
                failures.append(f"{where}: reward fn got extra_info of type {call['extra_info_type'].__name__}")
                continue
            gt = call["ground_truth"]
            if not isinstance(gt, str) or not gt.strip():
                failures.append(f"{where}: reward_model.ground_truth is empty: {gt!r}")
            elif gt != extra.get("answer"):
                failures.append(f"{where}: ground_truth {gt!r} != extra_info.answer {extra.get('answer')!r}")
            if type(extra.get("index")) is not int:
                failures.append(f"{where}: extra_info.index is {extra.get('index')!r}, not an int")

    if n_no_image:
        print(f"note: {path}: {n_no_image} rows have no image (text-only prompts)")
    return checked, failures


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processor-dir", required=True, help="model dir from tiny_qwen.py (processor + config)")
    ap.add_argument("--max-prompt-length", type=int, default=16384, help="generous: only failures drop rows")
    ap.add_argument("--response-length", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--image-tokens", action="store_true", help="pad runs must add up to extra_info.image_tokens")
    ap.add_argument("--expect-order", help="JSON file: the extra_info.index of every row, in the order verl must yield them")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args(argv)

    from verl.experimental.agent_loop import single_turn_agent_loop  # noqa: F401 - registers the loop
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
    from verl.utils.config import omega_conf_to_dataclass

    files = [str(Path(f).resolve()) for f in args.files]
    model_dir = str(Path(args.processor_dir).resolve())
    cache_dir = tempfile.mkdtemp(prefix="verl-cache-")
    cfg = compose_trainer_config(model_dir, [p for f in files for p in part_files(f)], args.max_prompt_length, args.response_length, cache_dir)

    # The tokenizer/processor exactly as verl's workers load them (hf_tokenizer / hf_processor,
    # which also binds Qwen2.5-VL's get_rope_index onto the processor).
    model_config = omega_conf_to_dataclass(cfg.actor_rollout_ref.model)
    tokenizer, processor = model_config.tokenizer, model_config.processor
    if processor is None:  # hf_processor only warns when it fails
        print("FAIL: verl could not load a processor from", model_dir)
        return 1
    response_ids = tokenizer.encode(FAKE_RESPONSE, add_special_tokens=False) + [tokenizer.eos_token_id]

    asyncio.set_event_loop(asyncio.new_event_loop())

    # verl's real AgentLoopWorker (it loads its own tokenizer/processor from the config,
    # as on a rollout worker); only the LLM server and the reward actor are stand-ins.
    server = FakeLLMServer(response_ids)
    reward = FakeRewardWorker(tokenizer)
    rollout = (AgentLoopWorker(cfg, llm_client=server, reward_loop_worker_handles=[reward]), server, reward)

    # Phase 1, as the trainer does before any rollout: build every dataset. (verl's length
    # filter runs in a forked datasets worker even with 1 worker; forking after torch has
    # run its thread pool in this process, i.e. after a rollout, can deadlock the child.)
    loaded, seconds = {}, {}
    for path in files:
        t0 = time.monotonic()
        try:
            loaded[path] = load_file(path, cfg, tokenizer, processor)
        except Exception:  # noqa: BLE001
            loaded[path] = (None, None, [f"{path}: building verl's dataset crashed:\n{traceback.format_exc()}"])
        seconds[path] = time.monotonic() - t0

    # Phase 2: the rollout path over every row, then one summary line per file.
    all_failures = []
    for path in files:
        t0 = time.monotonic()
        dataset, raw, failures = loaded[path]
        checked = 0
        order = []
        if dataset is not None:
            try:
                checked, more = check_rows(path, dataset, raw, tokenizer, processor, rollout, args.batch_size,
                                           args.image_tokens, order)
                failures += more
            except Exception:  # noqa: BLE001
                failures.append(f"{path}: check crashed:\n{traceback.format_exc()}")
            if args.expect_order:
                import json

                expected = json.loads(Path(args.expect_order).read_text())
                if order != expected:
                    first = next((k for k, (a, b) in enumerate(zip(order, expected)) if a != b), min(len(order), len(expected)))
                    failures.append(f"{path}: verl yields the rows in another order than expected (first difference at "
                                    f"position {first} of {len(order)} / {len(expected)})")
        seconds[path] += time.monotonic() - t0
        status = "OK" if not failures else f"FAIL ({len(failures)} problems)"
        print(f"verl check {status}: {path}: {checked} rows checked in {seconds[path]:.1f}s")
        for f in failures[:50]:
            print("  -", f)
        if len(failures) > 50:
            print(f"  ... and {len(failures) - 50} more")
        all_failures += failures
    return 1 if all_failures else 0


if __name__ == "__main__":
    sys.exit(main())
