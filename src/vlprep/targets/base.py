"""Trainer targets built from an hf_bytes split. A target is an output schema plus a row function (one
module per trainer, vlprep.targets.<name>, listed in core/targets.py); everything they share is here,
once: reading hf_bytes units, the images' token budget, rendering the chat, the partial-batch protocol
that keeps image bytes out of worker pipes, and running the stage."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from vlprep.engine.batches import SOURCE_ROW, attach, map_rows
from vlprep.prompting.chat import RenderedChat, marker_messages, render_chats
from vlprep.io.images import resize_image, stored_size
from vlprep.core.metrics import Rejected, RowRef, StageStats
from vlprep.core import paths
from vlprep.core.params import ParamsError
from vlprep.core.sections import ModelParams, TargetParams
from vlprep.engine.parts import ParquetParts, Parted
from vlprep.prompting.prompts import final_answer, parsed_options, reject_reserved_markers, verl_prompt_content
from vlprep.curation.rebalance import rebalance_row
from vlprep.engine.runner import Post, run_stage
from vlprep.core.failures import InputError
from vlprep.curation.selection import Selection, load_order, load_selection
from vlprep.io.sources import (ArrowBatch, ArrowRows, hf_dataset_files, plan_arrow_rows, plan_arrow_units,
                               read_skipped, read_unit)
from vlprep.prompting.profiles import ImageShapeError, ModelProfile, PreResize, get_profile
from vlprep.prompting.tokens import check_budget, load_tokenizer


@dataclass
class Item:
    """One hf_bytes row on its way to a target row."""

    row: dict
    index: int  # position in the hf_bytes split: a stable id (verl's extra_info.index)
    split: str
    chat: RenderedChat | None  # None only when the row has no reasoning and response: reasoning (SFT)


@dataclass(frozen=True)
class Config:
    """What a row function reads: the target's own params section and the model profile."""

    params: TargetParams
    model: ModelParams

    def replace(self, **update) -> "Config":
        """A copy with some keys changed, each in the section that has it (model keys go to the model)."""
        model = {k: v for k, v in update.items() if k in ModelParams.model_fields}
        params = {k: v for k, v in update.items() if k not in model}
        return Config(self.params.model_copy(update=params), self.model.model_copy(update=model))

    @cached_property  # read for every image of every row: built once per Config
    def profile(self) -> ModelProfile:
        """The model's image arithmetic, with a trainer's own pre-resize where it has one (LLaMA-Factory)."""
        m, p = self.model, self.params
        pre = PreResize(p.image_max_pixels, p.image_min_pixels) if hasattr(p, "image_max_pixels") else False
        return get_profile(m.profile, min_pixels=m.min_pixels, max_pixels=m.max_pixels, llamafactory=pre)


@dataclass
class Problem:
    options: dict
    images: list[dict]  # [{"bytes", "path": None}] in order, resized where the params ask for it
    image_tokens: list[int]  # per image, as the model profile's processor counts them


def read_problem(row: dict, cfg: Config, stats: StageStats) -> Problem:
    """The parts of an hf_bytes row every target needs, checked against what trainers refuse."""
    reject_reserved_markers(row["question"], row["options"] or "")  # options: null for open questions
    profile, images, tokens = cfg.profile, [], []
    for image in row["images"] or []:
        data = image["bytes"]
        info = stored_size(data)  # header only: hf_bytes validated the image already
        try:
            # hf_bytes' pre-flight already dropped (or padded) every size the profile refuses (ModelProfile.unfit,
            # on the same model params): only an hf_bytes split built otherwise, or LLaMA-Factory's
            # pre-resize with a tiny image_max_pixels, gets here.
            w, h = profile.processor_size(info.width, info.height)
        except ImageShapeError as e:
            raise Rejected("image_aspect_ratio", str(e)) from None  # the processor would raise at train time
        if cfg.params.resize_to_max_pixels and info.width * info.height > profile.max_pixels:
            data = resize_image(data, info.format, (w, h))
            stats.counts["images_resized"] += 1
        images.append({"bytes": data, "path": None})
        tokens.append(profile.image_tokens(info.width, info.height))
    return Problem(parsed_options(row["options"]) if row["options"] else {}, images, tokens)


@dataclass
class Counted:
    """A row's problem with its length as the model sees it. Counted on the tokenizer's own chat
    template, where each image is one pad token; pads are subtracted and each image's tokens added."""

    problem: Problem
    content: str  # the user turn as one string: one <image> per image, in order, then the problem text
    prompt_tokens: int  # the rendered user turn + generation prompt, image pads excluded
    image_tokens: int
    total_tokens: int | None = None  # prompt + images + response (SFT targets)


def prompt_counted(item: Item, cfg: Config, stats: StageStats) -> Counted:
    """An RL prompt (verl, swift_grpo): the problem, its length, limited by max_prompt_tokens."""
    row = item.row
    problem = read_problem(row, cfg, stats)
    n = len(problem.images)
    # Counted the way the rollout side sees it: the processor's chat template with one pad per image,
    # each pad then expanded to that image's tokens. Pads are subtracted so text + image add up.
    prompt_tokens = item.chat.prompt_tokens_with_pads - n
    image_tokens = sum(problem.image_tokens)
    check_budget(prompt_tokens + image_tokens, cfg.params.max_prompt_tokens, "over_max_prompt_tokens")
    content = verl_prompt_content(n, row["question"], problem.options)
    stats.observe("images_per_row", n)
    stats.observe("prompt_chars", len(content))
    stats.observe("prompt_text_tokens", prompt_tokens)
    stats.observe("prompt_total_tokens", prompt_tokens + image_tokens)
    stats.observe("image_tokens", image_tokens)
    return Counted(problem, content, prompt_tokens, image_tokens)


def sft_counted(item: Item, cfg: Config, stats: StageStats) -> Counted:
    """An SFT conversation (trl, llamafactory, swift): the length is the whole rendered conversation,
    limited by max_total_tokens. With `response: reasoning`, rows without reasoning are dropped."""
    row, chat = item.row, item.chat
    if chat is None:
        raise Rejected("reasoning_missing", "response: reasoning")  # nothing to teach the <think> trace with
    reject_reserved_markers(row["reasoning"] or "", final_answer(row))  # both go into the assistant turn
    stats.counts[f"response_{chat.response}"] += 1
    problem = read_problem(row, cfg, stats)
    n = len(problem.images)
    image_tokens = sum(problem.image_tokens)
    # Each image is one pad token in the rendered text; the model sees its image tokens instead.
    total_tokens = chat.text_tokens_with_pads - n + image_tokens
    check_budget(total_tokens, cfg.params.max_total_tokens, "over_max_total_tokens")
    stats.observe("images_per_row", n)
    stats.observe("text_chars", len(chat.text))
    stats.observe("text_tokens", total_tokens - image_tokens)
    stats.observe("total_tokens", total_tokens)
    stats.observe("image_tokens", image_tokens)
    content = verl_prompt_content(n, row["question"], problem.options)
    return Counted(problem, content, chat.prompt_tokens_with_pads - n, image_tokens, total_tokens)


# The hf_bytes columns the string-message targets keep (a reward function or collator may need them).
MARKER_PASSTHROUGH = ("question", "options", "answer_label", "answer", "dataset_name", "dataset_index")


def marker_sft_row(item: Item, cfg: Config, stats: StageStats) -> dict:
    """The string-message SFT row (LLaMA-Factory sharegpt, ms-swift `swift sft`)."""
    c = sft_counted(item, cfg, stats)
    return {
        "messages": marker_messages(c.content, item.chat.response_text),
        "images": c.problem.images,
        **{k: item.row[k] for k in MARKER_PASSTHROUGH},
        "prompt_tokens": c.prompt_tokens,
        "image_tokens": c.image_tokens,
        "total_tokens": c.total_tokens,
    }


RowFn = Callable[[Item, Config, StageStats], dict]
# Transforms of the ordered output stream a target adds (verl: shuffle, max_rows), from its params, the
# split and the hf_bytes split directory; they need every row in one process (engine local).
PostSteps = Callable[[TargetParams, str, Path], "list[Post]"]


@dataclass(frozen=True)
class TrainerTarget:
    name: str  # its entry in core/targets.py: the stage, the params section, the folder under data/
    schema: pa.Schema
    with_response: bool  # render the assistant turn too (SFT targets)
    row_fn: RowFn  # the whole output row, built from one Item; raises Rejected to drop it
    post_steps: PostSteps | None = None

    def passthrough(self, params: TargetParams) -> tuple[str, ...]:
        """Columns handed on exactly as they came (map_rows): the images, unless some get resized.
        (hf_bytes images always have path None, which read_problem sets too.)"""
        return () if params.resize_to_max_pixels else ("images",)

    def convert_batch(self, batch: pa.Table, cfg: Config, split: str, where: str = "batch",
                      first_row: int = 0, complete: bool = True,
                      selection: Selection | None = None,
                      positions: tuple[int, ...] | None = None) -> tuple[pa.Table, StageStats]:
        """The pure batch function: hf_bytes rows in, output table and drop counts out. complete=False
        leaves the pass-through columns out (a partial batch, see map_rows) for `attach_unit`. A row's
        index (its position in the hf_bytes split) is first_row + its place, or positions[place] for rows
        read in a selection's order (io.sources.ArrowRows; a repeated row is converted once per copy, the
        same way each time).

        Before anything is rendered: rows the selection leaves out (stage select) are dropped with its
        reason, and, for the train split with `rebalance: permute`, options are permuted (rebalance.py),
        so the chat, the prompt and every row function see the permuted row."""
        params = cfg.params
        rows = batch.to_pylist()
        index = list(range(first_row, first_row + len(rows))) if positions is None else list(positions)
        if selection is None:
            left_out = {}
        else:
            left_out = selection.rejected(first_row, len(rows)) if positions is None else selection.rejected_rows(index)
        rebalance = params.rebalance == "permute" and split == "train"
        prepared: list[dict | None] = []
        outcome: list[str | None] = []
        for i, row in enumerate(rows):
            if index[i] in left_out:
                prepared.append(None)
                outcome.append(None)
            elif rebalance and row["options"] is not None:  # open/yes-no questions have no options
                row, what = rebalance_row(row, index[i], params.rebalance_seed, self.with_response)
                prepared.append(row)
                outcome.append(what)
            else:
                prepared.append(row)
                outcome.append(None)
        response = getattr(params, "response", None) if self.with_response else None
        rendered = iter(render_chats([r for r in prepared if r is not None], load_tokenizer(cfg.model.tokenizer),
                                     response, where, first_row))
        chats = [None if r is None else next(rendered) for r in prepared]

        place = iter(range(len(rows)))  # map_rows calls row_fn once per row, in order

        def row_fn(row: dict, index: int, stats: StageStats) -> dict:
            i = next(place)
            if prepared[i] is None:
                raise left_out[index]
            if outcome[i]:
                stats.counts[outcome[i]] += 1
            out = self.row_fn(Item(prepared[i], index, split, chats[i]), cfg, stats)
            # Answer-letter balance, for every target and split (metrics and plots); open and yes/no
            # questions have no options (0) and no letter.
            options = prepared[i]["options"]
            if options is not None:
                stats.tally("answer_letter", prepared[i]["answer_label"])
            stats.observe("options_per_row", len(parsed_options(options)) if options is not None else 0)
            return out

        return map_rows(rows, row_fn, self.schema, where, first_row, source=batch if complete else None,
                        passthrough=self.passthrough(params), positions=positions)

    def convert_unit(self, unit: ArrowBatch | ArrowRows, cfg: Config, split: str,
                     selection: str | None = None) -> tuple[pa.Table, StageStats]:
        """The executor's unit function: a partial batch, so that with num_proc > 1 a worker hands back
        only the small columns and the image bytes go from the input file to the writer in one copy.
        `selection` is the path of the split's selection file: loaded once per process (workers inherit
        the parent's copy), never pickled with each unit."""
        positions = unit.positions if isinstance(unit, ArrowRows) else None
        selected = load_selection(selection) if selection else None
        table, stats = self.convert_batch(read_unit(unit), cfg, split, unit.source, unit.first_row, complete=False,
                                          selection=selected, positions=positions)
        if positions is not None:
            if unit.repeats:
                stats.counts["rows_repeated"] += unit.repeats  # reads of a row beyond its first (mixture.upsample)
            if unit.skipped:  # rows the selection leaves out: counted and named, their images never read
                rejected = selected.rejected_rows(unit.skipped)
                ids = read_skipped(unit, ["dataset_name", "dataset_index"]).to_pylist()
                for position, row in zip(unit.skipped, ids):
                    stats.rows_in += 1
                    stats.drop(rejected[position], RowRef.of(unit.source, position, row))
        return table, stats

    def attach_unit(self, unit: ArrowBatch | ArrowRows, table: pa.Table) -> pa.Table:
        """Complete a partial batch with its pass-through columns, read from the unit in this process."""
        if SOURCE_ROW not in table.column_names:
            return table  # complete already (images were resized, so built in the batch)
        return attach(table, read_unit(unit, ["images"]), self.schema)

    def run(self, split: str, cfg: Config, source: Path | None = None, output: Path | None = None,
            selection: Path | None = None) -> StageStats:
        """The stage: hf_bytes split `source` -> a directory `output` of parquet parts (part_rows input
        rows each; one part when a post step needs every row), leaving out the rows `selection` lists.
        Paths default to the project layout (core/paths.py)."""
        params = cfg.params
        source = source or paths.hf_bytes_dir(split)
        output = output or paths.output_dir(self.name, split)
        selection = selection or paths.selection_file(split)
        post = self.post_steps(params, split, source) if self.post_steps else []
        if post and params.engine == "ray":
            # A global order or count needs every row before the first is written: one process.
            raise ParamsError(f"params.yaml: {self.name}'s whole-split steps (shuffle, max_rows) work with "
                              f"{self.name}.engine: local only (engine: ray writes each part where it runs)")
        # Loaded before the workers fork, so each inherits it instead of importing transformers and
        # loading its own (~1.7 s each: the benchmark's tokenizer_load). The selection likewise.
        load_tokenizer(cfg.model.tokenizer)
        order_path = Path(selection).with_suffix(".order.parquet")  # paths.order_file beside paths.selection_file
        selection = str(selection) if Path(selection).is_file() else None
        if selection is not None:
            load_selection(selection)
        order = load_order(str(order_path)) if selection is not None else None
        return run_stage(
            self.name,
            split,
            plan=lambda: target_units(source, order, selection),
            unit_fn=partial(self.convert_unit, cfg=cfg, split=split, selection=selection),
            write=Parted(output, ParquetParts(self.schema, params.row_group_size), None if post else params.part_rows),
            num_proc=params.num_proc,
            attach=self.attach_unit,
            post=post,
            engine=params,
        )


def target_units(source: Path, order, selection: str | None) -> list:
    """The units a target reads: the hf_bytes record batches in input order, or, when stage select gave
    an order (a curriculum, repeated rows), the selected rows in that order, in units of the batches'
    size, the rows left out spread over them (only counted and listed with their reason): so no unit,
    and no output part, is made of left-out rows alone (verl refuses an empty parquet file)."""
    units = plan_arrow_units(hf_dataset_files(source))
    if order is None:
        return units
    left_out = load_selection(selection).rows
    total = sum(u.rows for u in units)
    covered = np.zeros(total, dtype=bool)
    covered[order[(order >= 0) & (order < total)]] = True
    overlap = bool(covered[left_out[left_out < total]].any())
    covered[left_out[left_out < total]] = True
    if overlap or not covered.all() or (len(order) and order.max() >= total):
        raise InputError(f"{source}: the selection's order and left-out rows do not cover its {total} rows once: "
                         "rerun stage select (dvc repro)")
    return plan_arrow_rows(units, order, max((u.rows for u in units), default=1), skipped=left_out)
