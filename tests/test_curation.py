"""Issue 30: curation from rollouts (pass rates, band, order, control), weighted mixtures, and the targets
emitting a selection's order; on generated data with synthetic rollouts (no model)."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, stage_argv
from vlprep.core.failures import InputError
from vlprep.core.params import ParamsError, validate
from vlprep.core.sections import CurationParams, MixtureParams
from vlprep.core.schema import HF_BYTES_FEATURES, HF_BYTES_SCHEMA
from vlprep.curation.rebalance import rebalance_row
from vlprep.curation.rollouts import (
    curation_metrics,
    curation_table,
    pass_rates,
    read_rollouts,
    scoring_rows,
)
from vlprep.curation.selection import apportion, curate, mix, row_keys
from vlprep.engine.parts import write_hf_dataset
from vlprep.io.sources import hf_dataset_files, plan_arrow_rows, plan_arrow_units, read_skipped, read_unit

T = "<think> looked </think>"
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def hf_row(i: int, name: str = "d", **over) -> dict:
    options = {"A": f"alpha {i}", "B": f"beta {i}", "C": f"gamma {i}", "D": f"delta {i}"}
    row = {"images": [], "question": f"Which finding is shown in study {i}?", "options": json.dumps(options),
           "answer_label": "B", "answer": f"beta {i}", "reasoning": None, "dataset_name": name, "dataset_index": i,
           "hash": None, "misc": None, "question_type": "mcq"}
    row.update(over)
    return row


def write_split(path: Path, rows: list[dict], batch: int = 2) -> Path:
    table = pa.Table.from_pylist(rows, schema=HF_BYTES_SCHEMA)
    write_hf_dataset(path, HF_BYTES_FEATURES, [table.slice(i, batch) for i in range(0, len(rows), batch)])
    return path


def six_rows() -> list[dict]:
    rows = [hf_row(i) for i in range(5)]
    rows.append(hf_row(5, options=None, answer_label=None, answer="liver", question_type="open",
                       question="Which organ is shown?"))
    return rows


# Each record, and what it does to its row: hand-computed below.
ROLLOUTS = [
    {"index": 0, "response": f"{T} <answer> B </answer>"},  # pass
    {"index": 0, "response": "<answer> B </answer>"},  # no think: format fails, score 0
    {"index": 0, "response": f"{T} <answer> A </answer>"},  # wrong
    {"index": 0, "response": f"{T} <answer> beta 0 </answer>"},  # the option's text: pass
    {"index": 1, "score": 1.0},  # precomputed: pass
    {"index": 1, "score": 0.0},
    {"index": 1, "score": 0.5, "response": f"{T} <answer> B </answer>"},  # the score wins: no pass at 1.0
    {"index": 3, "sample": 0, "response": f"{T} <answer> B </answer>"},
    {"index": 3, "sample": 1, "response": f"{T} <answer>(B)</answer>"},
    {"index": 3, "sample": 1, "response": f"{T} <answer> A </answer>"},  # duplicate (3, 1): not counted
    {"index": 99, "response": f"{T} <answer> B </answer>"},  # unknown
    {"index": -1, "response": f"{T} <answer> B </answer>"},  # unknown
    {"index": 4, "dataset_name": "d", "dataset_index": 7, "response": f"{T} <answer> B </answer>"},  # identity mismatch
    {"index": 4, "dataset_name": "d", "dataset_index": 4, "response": None},  # null: counted, fails
    {"index": 5, "response": f"{T} <answer>The Liver.</answer>"},  # open question, articles ignored: pass
    {"index": 5, "response": f"{T} <answer>spleen</answer>"},
]
# row -> (n, passes, scored, format_failures); row 2 has no rollout
EXPECTED = {0: (4, 2, 4, 1), 1: (3, 1, 0, 0), 2: (0, 0, 0, 0), 3: (2, 2, 2, 0), 4: (1, 0, 1, 1), 5: (2, 1, 2, 0)}


def write_rollouts(path: Path, records: list[dict]) -> Path:
    if path.suffix == ".parquet":
        cols = ["index", "response", "score", "sample", "dataset_name", "dataset_index"]
        pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in records]), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_pass_counts_equal_the_hand_computed_ones(tmp_path, suffix):
    split = write_split(tmp_path / "hf", six_rows())
    rows = scoring_rows(split, None)
    problems = []
    rates = pass_rates(read_rollouts(write_rollouts(tmp_path / f"r{suffix}", ROLLOUTS)), rows, 1.0, 0.0, True,
                       lambda r, kind, detail: problems.append((r.record, r.index, kind)))
    table = curation_table(rates, rows).to_pylist()
    for row, (n, passes, scored, fails) in EXPECTED.items():
        got = table[row]
        assert (got["n"], got["passes"], got["scored"], got["format_failures"]) == (n, passes, scored, fails), row
        assert got["pass_rate"] == (passes / n if n else None)
        assert got["format_failure_rate"] == (fails / scored if scored else None)
    assert table[1]["mean_score"] == 0.5 and table[0]["mean_score"] == 0.5
    assert problems == [(9, 3, "duplicate_sample"), (10, 99, "unknown_index"), (11, -1, "unknown_index"),
                        (12, 4, "identity_mismatch")]
    m = curation_metrics(rates, rows)
    assert m["records"] == len(ROLLOUTS)
    assert m["rollouts_counted"] == sum(e[0] for e in EXPECTED.values())
    assert m["not_rolled_out"] == {"count": 1, "examples": [2]}
    assert m["pass_counts"] == {0: 1, 1: 2, 2: 2}  # row 4 | rows 1, 5 | rows 0, 3
    assert m["rollouts_per_item"] == {1: 1, 2: 2, 3: 1, 4: 1}
    assert m["null_responses"] == 1 and m["scores_precomputed"] == 3


def test_a_row_identity_is_checked_where_the_rollout_gives_it(tmp_path):
    split = write_split(tmp_path / "hf", [hf_row(0, name=None, dataset_index=None), hf_row(1)])
    rows = scoring_rows(split, None)
    records = [{"index": 0, "dataset_name": None, "dataset_index": None, "score": 1},  # null: not given
               {"index": 1, "dataset_name": "d", "score": 1},
               {"index": 1, "dataset_name": "other", "score": 1}]
    rates = pass_rates(read_rollouts(write_rollouts(tmp_path / "r.jsonl", records)), rows, 1.0, 0.0, True)
    assert rates.n.tolist() == [1, 1] and rates.problems == {"identity_mismatch": 1}


@pytest.mark.parametrize("line, words", [
    ('{"index": "3", "response": "x"}', ["r.jsonl:2", "`index` must be an integer"]),
    ('{"index": 3}', ["r.jsonl:2", "`response` or `score`"]),
    ('{"index": 3, "score": "high"}', ["r.jsonl:2", "`score` must be a finite number"]),
    ('{"index": 3, "sample": -1, "score": 1}', ["r.jsonl:2", "`sample` must be >= 0"]),
    ('not json', ["r.jsonl:2", "not JSON"]),
])
def test_a_malformed_record_stops_naming_file_and_line(tmp_path, line, words):
    path = tmp_path / "r.jsonl"
    path.write_text('{"index": 0, "score": 1}\n' + line + "\n")
    with pytest.raises(InputError) as e:
        list(read_rollouts(path))
    for word in words:
        assert word in str(e.value)


def test_responses_are_scored_on_the_options_verl_showed_with_rebalance(tmp_path):
    rows = [hf_row(i) for i in range(40)]
    split = write_split(tmp_path / "hf", rows)
    seed = 3
    shown = [rebalance_row(r, i, seed, False)[0]["answer_label"] for i, r in enumerate(rows)]
    assert sum(label != "B" for label in shown) > 20  # most rows moved their answer
    records = [{"index": i, "response": f"{T} <answer> {label} </answer>"} for i, label in enumerate(shown)]
    path = write_rollouts(tmp_path / "r.jsonl", records)
    permuted = pass_rates(read_rollouts(path), scoring_rows(split, seed), 1.0, 0.0, True)
    assert permuted.passes.tolist() == [1] * 40
    plain = pass_rates(read_rollouts(path), scoring_rows(split, None), 1.0, 0.0, True)
    assert plain.passes.tolist() == [int(label == "B") for label in shown]


# ------------------------------------------------------------------ band, control, order


def curation(**over) -> CurationParams:
    return validate("curation", {**PARAMS["curation"], **over})


PASSES = [0, 1, 4, 7, 8, 12, 15, 16, 8, 4]  # of 16 each; row 10 never rolled out
N = np.array([16] * 10 + [0])
P = np.array(PASSES + [0])
NAMES = [f"s{i % 2}" for i in range(11)]
INDEXES = list(range(11))


def test_band_keeps_exactly_lo_to_hi_inclusive_and_names_each_drop():
    left: dict = {}
    order, report = curate(left, N, P, NAMES, INDEXES, curation(pass_rate=[1 / 16, 7 / 16]))
    assert sorted(order.tolist()) == [1, 2, 3, 9]  # 1, 4, 7, 4 passes: MedVLThinker's 1-7 of 16
    assert {r: reason for r, (reason, _) in left.items()} == {
        0: "too_hard", 4: "too_easy", 5: "too_easy", 6: "too_easy", 7: "too_easy", 8: "too_easy",
        10: "not_rolled_out"}
    assert order.tolist() == [1, 2, 3, 9]  # order none: input order
    assert report["kept"] == 4 and report["band_rows"] == 4
    left = {}
    order, _ = curate(left, N, P, NAMES, INDEXES, curation(pass_rate=[0.25, 0.5]))
    assert sorted(order.tolist()) == [2, 3, 4, 8, 9]  # 4/16 and 8/16 are on the bounds: kept


def test_rows_left_out_before_are_not_curated_and_reported():
    left = {4: ("outside_subset", "x"), 10: ("contaminated_near_item", "y")}
    order, report = curate(left, N, P, NAMES, INDEXES, curation(pass_rate=[0.0, 1.0]))
    assert sorted(order.tolist()) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert left[4][0] == "outside_subset" and left[10][0] == "contaminated_near_item"
    assert report["rolled_out_left_out_before"] == {"outside_subset": 1}


def test_without_band_order_or_control_curation_only_reports():
    left: dict = {}
    order, _ = curate(left, N, P, NAMES, INDEXES, curation())
    assert order.tolist() == list(range(11)) and left == {}


@pytest.mark.parametrize("direction", ["easy_to_hard", "hard_to_easy"])
def test_order_by_pass_rate_with_a_seeded_tie_break(direction):
    left: dict = {}
    order, _ = curate(left, N, P, NAMES, INDEXES, curation(order=direction, seed=5))
    rate = P / np.maximum(N, 1)
    got = [rate[r] for r in order]
    assert got == sorted(got, reverse=direction == "easy_to_hard")
    keys = row_keys("order", 5, NAMES, INDEXES)
    for a, b in zip(order, order[1:]):  # equal pass rates (rows 2 and 9, rows 4 and 8) in key order
        if rate[a] == rate[b]:
            assert keys[a] < keys[b]
    assert left == {10: ("not_rolled_out", "no rollout counted for the row")}
    again, _ = curate({}, N, P, NAMES, INDEXES, curation(order=direction, seed=5))
    assert again.tolist() == order.tolist()


def test_equal_rates_of_different_k_tie():
    n, p = np.array([16, 8, 2]), np.array([8, 4, 1])
    order, _ = curate({}, n, p, ["a"] * 3, [0, 1, 2], curation(order="easy_to_hard", seed=0))
    keys = row_keys("order", 0, ["a"] * 3, [0, 1, 2])
    assert order.tolist() == sorted(range(3), key=lambda r: keys[r])


def test_control_has_the_bands_size_drawn_from_the_rolled_out_rows():
    band = curation(pass_rate=[1 / 16, 7 / 16])
    control = curation(pass_rate=[1 / 16, 7 / 16], control=True, seed=9)
    left: dict = {}
    order, _ = curate(left, N, P, NAMES, INDEXES, control)
    assert len(order) == len(curate({}, N, P, NAMES, INDEXES, band)[0]) == 4
    keys = row_keys("control", 9, NAMES, INDEXES)
    assert sorted(order.tolist()) == sorted(sorted(range(10), key=lambda r: keys[r])[:4])
    assert Counter(reason for reason, _ in left.values()) == {"outside_control_subset": 6, "not_rolled_out": 1}
    wider, _ = curate({}, N, P, NAMES, INDEXES, curation(pass_rate=[0, 0.5], control=True, seed=9))
    assert set(order.tolist()) < set(wider.tolist())  # nested in the band's size


def test_curation_params_are_checked():
    with pytest.raises(ParamsError, match="pass_rate: .*low 0.8 must not be above high 0.2"):
        curation(pass_rate=[0.8, 0.2])
    with pytest.raises(ParamsError, match="control: true needs a pass_rate band"):
        curation(control=True)
    with pytest.raises(ParamsError, match="curation.order"):
        curation(order="random")


# ------------------------------------------------------------------ mixtures


def mixture(**over) -> MixtureParams:
    return validate("mixture", {**PARAMS["mixture"], **over})


SOURCES = ["a"] * 600 + ["b"] * 300 + ["c"] * 100 + ["x"] * 50


def mixed(weights, rows=None, upsample=False, seed=0, names=SOURCES, left=None):
    left = {} if left is None else left
    order = np.arange(len(names))
    return mix(left, order, names, list(range(len(names))), mixture(weights=weights, rows=rows, upsample=upsample,
                                                                    seed=seed), "train") + (left,)


def test_all_of_the_smallest_takes_every_row_of_the_binding_source():
    seq, report, left = mixed({"a": 1, "b": 1, "c": 2})
    got = Counter(SOURCES[r] for r in seq)
    assert got == {"a": 50, "b": 50, "c": 100} and report["rows"] == 200
    assert len(seq) == len(set(seq.tolist()))  # no repeats without upsample
    assert Counter(reason for reason, _ in left.values()) == {"outside_mixture": 800, "not_in_mixture": 50}
    assert list(seq) == sorted(seq)  # the incoming order is kept


@pytest.mark.parametrize("seed", range(3))
def test_mixture_proportions_are_within_one_over_total_and_identical_across_runs(seed):
    rng = np.random.default_rng(seed)
    weights = {s: float(rng.uniform(0.1, 3)) for s in "abc"}
    total = int(rng.integers(37, 400))
    seq, report, _ = mixed(weights, rows=total, seed=seed, upsample=True)
    got = Counter(SOURCES[r] for r in seq)
    whole = sum(weights.values())
    for s, w in weights.items():
        assert abs(got[s] / total - w / whole) <= 1 / total  # the stated tolerance (Hamilton apportionment)
        assert report["sources"][s]["rows"] == got[s]
    assert sum(got.values()) == total
    again, _, _ = mixed(weights, rows=total, seed=seed, upsample=True)
    assert again.tolist() == seq.tolist()
    other, _, _ = mixed(weights, rows=total, seed=seed + 10, upsample=True)
    assert other.tolist() != seq.tolist()


def test_mixture_draws_are_nested_in_the_total():
    small, _, _ = mixed({"a": 1, "b": 1}, rows=100)
    large, _, _ = mixed({"a": 1, "b": 1}, rows=300)
    assert set(small.tolist()) < set(large.tolist())


def test_a_share_above_a_sources_rows_is_an_error_unless_upsampling():
    with pytest.raises(InputError, match=r"gives 'c' 500 rows, but split train has 100 left.*upsample: true"):
        mixed({"a": 1, "b": 1, "c": 2}, rows=1000)
    seq, report, left = mixed({"a": 1, "b": 1, "c": 2}, rows=1000, upsample=True)
    got = Counter(SOURCES[r] for r in seq)
    assert got == {"a": 250, "b": 250, "c": 500}
    c_copies = Counter(r for r in seq.tolist() if SOURCES[r] == "c")
    assert set(c_copies.values()) == {5} and len(c_copies) == 100  # every c row 5 times
    assert report["sources"]["c"]["repeated_rows"] == 400
    # copies of a row are adjacent, in the incoming order
    firsts = list(dict.fromkeys(seq.tolist()))
    assert firsts == sorted(firsts)
    seq2, _, _ = mixed({"c": 1}, rows=250, upsample=True)
    assert sorted(Counter(seq2.tolist()).values()) == [2] * 50 + [3] * 50  # 2 each, 50 rows a third time


def test_a_listed_source_without_rows_is_an_error():
    with pytest.raises(InputError, match=r"mixture.weights lists \['zzz'\]"):
        mixed({"a": 1, "zzz": 1})


def test_apportion_is_exact_and_deterministic():
    assert apportion(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert apportion(7, {"x": 0.5, "y": 0.5}) == {"x": 4, "y": 3}
    assert sum(apportion(1001, {"a": 0.3, "b": 2.7, "c": 1.1}).values()) == 1001


# ------------------------------------------------------------------ the targets read a selection's order


def test_arrow_rows_read_any_order_with_repeats(tmp_path):
    rows = [hf_row(i) for i in range(11)]
    split = write_split(tmp_path / "hf", rows, batch=3)
    units = plan_arrow_units(hf_dataset_files(split))
    sequence = [10, 0, 5, 5, 3, 10, 1]
    planned = plan_arrow_rows(units, sequence, 3)
    assert [u.positions for u in planned] == [(10, 0, 5), (5, 3, 10), (1,)]
    assert [u.repeats for u in planned] == [0, 2, 0]
    got = [i for u in planned for i in read_unit(u, ["dataset_index"]).column("dataset_index").to_pylist()]
    assert got == sequence
    with pytest.raises(InputError, match="outside the dataset"):
        plan_arrow_rows(units, [11], 3)
    # rows left out are spread over the units in runs, never a unit of their own
    planned = plan_arrow_rows(units, sequence, 3, skipped=[2, 4, 6, 7, 8, 9])
    assert [u.skipped for u in planned] == [(2, 4), (6, 7), (8, 9)]
    assert [u.rows for u in planned] == [5, 5, 3]
    assert [read_skipped(u, ["dataset_index"]).column("dataset_index").to_pylist() for u in planned] == \
        [[2, 4], [6, 7], [8, 9]]
    assert [i for u in planned for i in read_unit(u, ["dataset_index"]).column("dataset_index").to_pylist()] == sequence


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "qwen"
    subprocess.run([sys.executable, "-m", "vlprep.prompting.qwen_tokenizer", str(out)], check=True,
                   capture_output=True)
    return str(out)


def png(seed: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40 + seed % 7, 30), (seed * 13 % 256, 40, 90)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("num_proc", [1, 2])
@pytest.mark.parametrize("target", ["verl", "trl", "swift_grpo"])
def test_targets_emit_the_selection_order_with_repeats_and_count_every_row(tmp_path, tokenizer_dir, target, num_proc):
    import importlib
    import os

    from conftest import target_config
    from vlprep.curation.selection import order_table, selection_table

    rows = [hf_row(i, name=f"s{i % 3}", images=[{"bytes": png(i), "path": None}], reasoning=f"Because {i}.")
            for i in range(23)]
    split = write_split(tmp_path / "hf", rows, batch=4)
    select = tmp_path / "select"
    select.mkdir()
    left = [(1, "too_easy", "16/16"), (7, "outside_mixture", "m"), (20, "not_rolled_out", "none")]
    pq.write_table(selection_table(left), select / "train.parquet")
    kept = [r for r in range(23) if r not in (1, 7, 20)]
    # a curriculum (here: reversed), row 4's two extra copies next to it, row 9's one extra copy
    sequence = [c for r in reversed(kept) for c in [r] * {4: 3, 9: 2}.get(r, 1)]
    pq.write_table(order_table(np.array(sequence)), select / "train.order.parquet")
    target = importlib.import_module(f"vlprep.targets.{target}").TARGET
    cfg = target_config(target.name, tokenizer=tokenizer_dir, num_proc=num_proc, part_rows=8)
    out = tmp_path / "out"
    cwd = os.getcwd()  # the stage writes its rejects and metrics under the project directory
    os.chdir(tmp_path)
    try:
        stats = target.run("train", cfg, source=split, output=out, selection=select / "train.parquet")
    finally:
        os.chdir(cwd)
    table = pq.read_table(out)
    if target.name == "verl":
        got = [e["dataset_index"] for e in table.column("extra_info").to_pylist()]
        assert [e["index"] for e in table.column("extra_info").to_pylist()] == sequence
    else:
        got = table.column("dataset_index").to_pylist()
    assert got == sequence
    assert all(pq.read_metadata(f).num_rows for f in out.glob("part-*.parquet"))  # no empty part (verl refuses one)
    assert stats.rows_in == len(sequence) + 3 and stats.rows_out == len(sequence)
    assert dict(stats.dropped) == {"too_easy": 1, "outside_mixture": 1, "not_rolled_out": 1}
    assert stats.counts["rows_repeated"] == 3
    rejects = pq.read_table(tmp_path / f"data/rejects/{target.name}/train.parquet").to_pylist()
    assert [(r["row"], r["reason"]) for r in rejects] == [(1, "too_easy"), (7, "outside_mixture"), (20, "not_rolled_out")]


def test_targets_output_is_the_same_bytes_for_any_num_proc_and_engine(tmp_path, tokenizer_dir, monkeypatch):

    from conftest import md5_tree, target_config
    from vlprep.curation.selection import order_table, selection_table
    from vlprep.targets.verl import TARGET as VERL

    rows = [hf_row(i, images=[{"bytes": png(i), "path": None}]) for i in range(30)]
    split = write_split(tmp_path / "hf", rows, batch=4)
    (tmp_path / "select").mkdir()
    pq.write_table(selection_table([(3, "too_hard", "0/8")]), tmp_path / "select/train.parquet")
    order = [r for r in range(29, -1, -1) if r != 3] + [0, 0]
    pq.write_table(order_table(np.array(order)), tmp_path / "select/train.order.parquet")
    runs = [{"num_proc": 1}, {"num_proc": 2}]
    try:
        import ray  # noqa: F401  (the optional extra)

        runs.append({"num_proc": 2, "engine": "ray", "ray_address": None})
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    except ImportError:
        pass
    outputs = []
    monkeypatch.chdir(tmp_path)  # the stage writes its rejects, metrics and plots under the project
    for i, how in enumerate(runs):
        cfg = target_config("verl", tokenizer=tokenizer_dir, part_rows=7, **how)
        VERL.run("train", cfg, source=split, output=tmp_path / f"out{i}", selection=tmp_path / "select/train.parquet")
        outputs.append({p: md5_tree(tmp_path / p) for p in (f"out{i}", "data/rejects", "metrics")})
        outputs[-1]["out"] = outputs[-1].pop(f"out{i}")
    assert all(o == outputs[0] for o in outputs) and len(outputs[0]["out"]) > 1


# ------------------------------------------------------------------ benchmark references


def test_a_planted_benchmark_is_found_per_kind_and_droppable(tmp_path):
    """The audit's planted test rows, as a user's benchmark file (JSON Lines, images by path, a column
    mapping), and a second benchmark as reference-schema parquet: train rows holding copies, re-encoded and
    resized images, and edited questions are found per kind and per reference, and select drops them."""
    from test_audit import EXPECTED_PAIRS, PNG, planted_test_rows, planted_train_rows

    project = tmp_path / "project"
    bench = project / "bench"
    (bench / "images").mkdir(parents=True)
    records = []
    for i, row in enumerate(planted_test_rows()):
        (bench / "images" / f"{i}.bin").write_bytes(row["images"][0]["bytes"])
        records.append({"q": row["question"], "opts": json.loads(row["options"]), "label": "A", "img": f"{i}.bin",
                        "id": row["dataset_index"]})
    (bench / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (bench / "other").mkdir()
    other = [{"images": [PNG["A"]], "question": "Unrelated question about a tube?", "options": {"A": "x", "B": "y"},
              "answer_label": "A", "answer": None, "reasoning": None, "dataset_name": "other", "dataset_index": 0,
              "hash": None, "misc": None}]
    pq.write_table(pa.Table.from_pylist(other), bench / "other/part.parquet")
    write_split(project / "data/hf_bytes/train", planted_train_rows(), batch=4)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["inputs"] = {"train": "data/raw/train"}
    params["input_data"] = {"train": "data/raw/train"}
    params["audit"]["references"] = {
        "planted": {"data": "bench", "entries": [{"path": "bench/bench.jsonl", "image_root": "bench/images",
                                                  "name": "planted_bench", "columns": {
                                                      "question": "q", "options": "opts", "answer_label": "label",
                                                      "image": "img", "dataset_index": "id"}}]},
        "other": {"data": "bench/other", "entries": [{"path": "bench/other", "preset": "reference"}]},
    }
    params["audit"]["drop_train_referenced"] = True
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    for name in ("planted", "other"):
        proc = subprocess.run(stage_argv("reference", name), cwd=project, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    pairs = pq.read_table(project / "data/references/planted/pairs.parquet").to_pylist()
    found = {(p["train_row"], p["reference_row"], p["kind"]) for p in pairs}
    assert found == {p for p in EXPECTED_PAIRS if not p[2].startswith("train_")}
    assert {p["reference_dataset_name"] for p in pairs} == {"planted_bench"}
    m = json.loads((project / "metrics/references/planted.json").read_text())
    assert m["train_vs_reference"]["exact_image"] == 1 and m["train_vs_reference"]["near_image"] == 4
    assert m["train_vs_reference"]["near_item"] == 1 and m["train_vs_reference"]["any"] == 5
    assert m["train_vs_reference"]["same_question_text"] == 2  # a question alone: reported, never dropped
    assert m["reference_rows"] == {"rows_in": 6, "rows_out": 6, "dropped": {}, "images": 6}
    flagged = pq.read_table(project / "data/references/other/flagged_train_rows.parquet").to_pylist()
    assert [(f["row"], f["kinds"]) for f in flagged] == [(0, ["exact_image"])]  # row 0 holds PNG A

    (project / "data/audit").mkdir(parents=True)
    proc = subprocess.run(stage_argv("select", "train"), cwd=project, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    left = pq.read_table(project / "data/select/train.parquet").to_pylist()
    assert [(r["row"], r["reason"]) for r in left] == [
        (0, "reference_exact_image"), (1, "reference_near_image"), (2, "reference_near_image"),
        (3, "reference_near_image"), (12, "reference_near_image")]  # 4, 5: same_question_text, kept
    assert left[0]["detail"] == "reference other: exact_image"  # the first reference by name


# ------------------------------------------------------------------ in the pipeline (dvc repro)


def synthetic_rollouts(project: Path, split: str = "train", k: int = 8, seed: int = 0) -> Path:
    """k responses per row of hf_bytes@split (every 10th row never rolled out), each right with a
    probability drawn per row, plus one unknown index and one duplicate sample: rollouts/<split>.jsonl."""
    import random

    rows = []
    for unit in plan_arrow_units(hf_dataset_files(project / "data/hf_bytes" / split)):
        rows += read_unit(unit, ["options", "answer_label", "answer"]).to_pylist()
    rng = random.Random(seed)
    out = []
    for i, row in enumerate(rows):
        if i % 10 == 9:
            continue
        p = rng.random()
        for s in range(k):
            right = rng.random() < p
            if row["options"]:
                wrong = next(letter for letter in json.loads(row["options"]) if letter != row["answer_label"])
                answer = row["answer_label"] if right else wrong
            else:
                answer = row["answer"] if right else "none of these"
            out.append({"index": i, "sample": s, "response": f"{T} <answer> {answer} </answer>"})
    out += [{"index": len(rows) + 7, "sample": 0, "response": "x"}, dict(out[0])]
    path = project / "rollouts" / f"{split}.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(json.dumps(o) + "\n" for o in out))
    return path


def test_curation_in_the_pipeline_reruns_only_curation_and_what_follows(scratch_repo):
    from conftest import md5_tree, run, set_params
    from test_dvc_reruns import REPORTS, TARGETS_TRAIN, repro_ran

    repo = scratch_repo
    test_before = md5_tree(repo / "data/verl/test")
    synthetic_rollouts(repo)
    # rollouts alone: pass rates reported, no row left out, no target reruns
    set_params(repo, **{"curation.rollouts": {"train": "rollouts/train.jsonl"}})
    assert repro_ran(repo) == {"curation@train", "select", "summary", "card", "preview"}
    m = json.loads((repo / "metrics/curation/train.json").read_text())
    assert m["problems"]["unknown_index"]["count"] == 1 and m["problems"]["duplicate_sample"]["count"] == 1
    assert m["not_rolled_out"]["count"] == m["rows"] // 10 and sum(m["rollouts_per_item"].values()) == m["items_rolled_out"]
    assert json.loads((repo / "plots/curation/train/pass_counts.json").read_text())
    # the band and the curriculum: select and what follows, never curation, hf_bytes, audit or the test split
    set_params(repo, **{"curation.pass_rate": [0.25, 0.75], "curation.order": "easy_to_hard"})
    assert repro_ran(repo) == {"select", *TARGETS_TRAIN, "summary", *REPORTS}
    rates = {r["row"]: r for r in pq.read_table(repo / "data/curation/train.parquet").to_pylist()}
    info = pq.read_table(repo / "data/verl/train").column("extra_info").to_pylist()
    got = [rates[e["index"]]["pass_rate"] for e in info]
    assert got == sorted(got, reverse=True) and all(0.25 <= r <= 0.75 for r in got)
    expected = sorted(r for r, v in rates.items() if v["n"] and 0.25 <= v["pass_rate"] <= 0.75)
    assert sorted(e["index"] for e in info) == expected
    trl = pq.read_table(repo / "data/trl/train").column("dataset_index").to_pylist()
    assert trl == [e["dataset_index"] for e in info]  # every target emits the same order
    verl = json.loads((repo / "metrics/verl/train.json").read_text())
    assert {"too_easy", "too_hard", "not_rolled_out"} <= set(verl["dropped"])
    assert md5_tree(repo / "data/verl/test") == test_before
    # the same bytes with two worker processes
    outputs = {p: md5_tree(repo / p) for p in ("data/verl/train", "data/trl/train", "data/rejects/verl")}
    set_params(repo, **{"verl.num_proc": 2, "trl.num_proc": 2})
    assert repro_ran(repo) == {*TARGETS_TRAIN, "verl@test", "card"}  # (the card shows the params)
    assert {p: md5_tree(repo / p) for p in outputs} == outputs
    # new rollouts: curation@train and what follows
    synthetic_rollouts(repo, seed=1)
    assert repro_ran(repo) == {"curation@train", "select", *TARGETS_TRAIN, "summary", *REPORTS}
    # an up-sampled mixture on top: the order is kept, copies adjacent, shares as asked
    set_params(repo, **{"mixture.weights": {"sample_train_a": 1, "sample_train_b": 3}, "mixture.rows": 60,
                        "mixture.upsample": True})
    assert repro_ran(repo) == {"select", *TARGETS_TRAIN, "summary", *REPORTS}
    info = pq.read_table(repo / "data/verl/train").column("extra_info").to_pylist()
    assert Counter(e["dataset_name"] for e in info) == {"sample_train_a": 15, "sample_train_b": 45}
    rates = {r["row"]: r for r in pq.read_table(repo / "data/curation/train.parquet").to_pylist()}  # the new rollouts'
    got = [rates[e["index"]]["pass_rate"] for e in info]
    assert len(info) == 60 and got == sorted(got, reverse=True)
    select = json.loads((repo / "metrics/select.json").read_text())["train"]
    assert select["mixture"]["sources"]["sample_train_b"]["share"] == 0.75
    assert json.loads((repo / "metrics/verl/train.json").read_text())["rows_repeated"] == select["repeated"] > 0
    assert repro_ran(repo) == set()
    assert "up to date" in run(["dvc", "status"], repo).stdout


def test_clean_lists_curation_and_reference_outputs_the_params_no_longer_have(tmp_path):
    from vlprep.cli import stale_outputs

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["curation"]["rollouts"] = {"test": "rollouts/test.jsonl"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    files = ["data/curation/.gitignore", "data/curation/train.parquet", "data/curation/train.problems.parquet",
             "data/curation/test.parquet", "metrics/curation/train.json", "plots/curation/train/pass_counts.json",
             "data/references/.gitignore", "data/references/bench/pairs.parquet", "metrics/references/bench.json"]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("")
    stale = {p.relative_to(tmp_path).as_posix() for p in stale_outputs(tmp_path) if "curation" in str(p) or "references" in str(p)}
    assert stale == {"data/curation/train.parquet", "data/curation/train.problems.parquet", "metrics/curation/train.json",
                     "plots/curation/train", "data/references/bench", "metrics/references/bench.json"}
