"""Issue 16: answer-letter balance (metrics, `rebalance: permute`), row selection (contaminated train rows,
seeded subsets) and the reruns they cause."""
import json
import random
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from builders import png
from conftest import REPO, run, set_params, target_config
from test_dvc_reruns import REPORTS, TARGETS_TRAIN, repro_ran
from vlprep.prompting.prompts import ordered_options
from vlprep.curation.rebalance import KEPT_LETTER, KEPT_POSITION, PERMUTED, order_reference, rebalance_row
from vlprep.core.schema import HF_BYTES_SCHEMA
from vlprep.curation.selection import load_selection, select_rows, selection_table
from vlprep.targets.trl import TARGET as TRL
from vlprep.targets.verl import TARGET as VERL

LETTERS = "ABCDEF"


def synthetic_rows(n: int, seed: int = 0) -> list[dict]:
    """Rows with 2-6 options whose correct answer is always the first letter (the worst imbalance)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = rng.randint(2, 6)
        options = {LETTERS[j]: f"text {i}-{j}" for j in range(k)}
        rows.append({"question": f"question {i}", "options": json.dumps(options), "answer_label": "A",
                     "answer": options["A"], "reasoning": "Smooth margins suggest a benign lesion",
                     "dataset_name": f"d{i % 3}", "dataset_index": i})
    return rows


def chi_square(counts: Counter, k: int) -> float:
    n = sum(counts.values())
    return sum((counts.get(LETTERS[j], 0) - n / k) ** 2 / (n / k) for j in range(k))


# chi-square critical values at p = 0.001 for k-1 degrees of freedom
CRITICAL = {2: 10.83, 3: 13.82, 4: 16.27, 5: 18.47, 6: 20.52}


def test_permutation_keeps_every_answer_text_and_makes_letters_uniform():
    rows = synthetic_rows(10_000)
    by_k: dict[int, Counter] = {}
    for index, row in enumerate(rows):
        out, what = rebalance_row(row, index, seed=7, with_reasoning=True)
        assert what == PERMUTED
        before, after = json.loads(row["options"]), json.loads(out["options"])
        assert list(after) == [k for k, _ in ordered_options(before)]  # the same letters, in order
        assert sorted(after.values()) == sorted(before.values())  # the same texts
        assert after[out["answer_label"]] == before[row["answer_label"]] == out["answer"] == row["answer"]
        assert {k: v for k, v in out.items() if k not in ("options", "answer_label")} == \
               {k: v for k, v in row.items() if k not in ("options", "answer_label")}
        by_k.setdefault(len(after), Counter())[out["answer_label"]] += 1
    for k, counts in by_k.items():
        assert set(counts) == set(LETTERS[:k])
        assert chi_square(counts, k) < CRITICAL[k], (k, counts)


def test_permutation_is_deterministic_per_seed_and_row_identity():
    rows = synthetic_rows(200)
    first = [rebalance_row(r, i, 3, True)[0] for i, r in enumerate(rows)]
    assert first == [rebalance_row(r, i, 3, True)[0] for i, r in enumerate(rows)]
    # a row's result depends on its own identity only, not on its neighbours or the batch
    assert rebalance_row(rows[50], 50, 3, True)[0] == first[50]
    other = [rebalance_row(r, i, 4, True)[0] for i, r in enumerate(rows)]
    assert sum(a["options"] != b["options"] for a, b in zip(first, other)) > 100


LETTER_REFERENCES = [
    "Option A is wrong because the margins are smooth.",
    "The answer is (B).",
    "So the correct answer is C.",
    "answer: D",
    "Both A and C show calcification.",
    "Looking at the choices, B) fits best",
    "A. cannot be right\nB. fits",
]
NO_REFERENCES = [
    "Smooth margins suggest a benign lesion.",
    "Hepatitis serology was negative",  # no letter
    "A 45-year-old man presents with chest pain",  # "A" as an article
    "Type F lesions are not among the choices",  # F is not an option letter
    "The answer is Bilateral involvement",
]


@pytest.mark.parametrize("text", LETTER_REFERENCES)
def test_letter_references_are_found(text):
    assert order_reference([text], set("ABCDE")) == KEPT_LETTER


@pytest.mark.parametrize("text", NO_REFERENCES)
def test_plain_text_is_not_a_letter_reference(text):
    assert order_reference([text], set("ABCDE")) is None


def test_position_references_keep_order():
    assert order_reference(["All of the above"], set("ABCD")) == KEPT_POSITION


@pytest.fixture(scope="module")
def tokenizer_dir(repro_repo):
    return str(repro_repo / "data/tokenizer/qwen2_5_vl")


def hf_rows(n: int, reasoning: str = "Smooth margins.") -> pa.Table:
    rows = [{"images": [{"bytes": png(56, 56), "path": None}], "question": f"Is lesion {i} benign?",
             "options": json.dumps({"A": f"yes {i}", "B": f"no {i}", "C": f"maybe {i}", "D": f"unclear {i}"}),
             "answer_label": "A", "answer": f"yes {i}", "reasoning": reasoning, "dataset_name": "d",
             "dataset_index": i, "hash": None, "misc": None} for i in range(n)]
    return pa.Table.from_pylist(rows, schema=HF_BYTES_SCHEMA)


def test_trl_permutes_consistently_and_keeps_reasoning_with_letters(tokenizer_dir):
    trl = target_config("trl", **{"tokenizer": tokenizer_dir, "rebalance": "permute", "rebalance_seed": 1})
    table, stats = TRL.convert_batch(hf_rows(40), trl, "train")
    rows = table.to_pylist()
    assert stats.counts[PERMUTED] == 40 and len(rows) == 40
    assert len({r["answer_label"] for r in rows}) > 1
    for r in rows:
        options = json.loads(r["options"])
        assert options[r["answer_label"]] == r["answer"]
        assert f"<answer> {r['answer_label']} </answer>" in r["text"]
        assert f"\n\n{r['answer_label']}. {r['answer']}" in r["text"]
        user = r["messages"][0]["content"][-1]["text"]
        assert "".join(f"\n\n{k}. {v}" for k, v in options.items()) in user
    assert dict(stats.categories["answer_letter"]) == Counter(r["answer_label"] for r in rows)

    table, stats = TRL.convert_batch(hf_rows(10, reasoning="Option A fits: smooth margins."), trl, "train")
    assert stats.counts[KEPT_LETTER] == 10 and stats.counts[PERMUTED] == 0
    assert {r["answer_label"] for r in table.to_pylist()} == {"A"}
    # only the train split is rebalanced: test data stays as the source gives it
    table, stats = TRL.convert_batch(hf_rows(10), trl, "test")
    assert {r["answer_label"] for r in table.to_pylist()} == {"A"} and not stats.counts[PERMUTED]


def test_verl_permutes_prompt_options_label_and_keeps_ground_truth(tokenizer_dir):
    verl = target_config("verl", **{"tokenizer": tokenizer_dir, "rebalance": "permute"})
    table, stats = VERL.convert_batch(hf_rows(40), verl, "train")
    for r in table.to_pylist():
        info = r["extra_info"]
        options = json.loads(info["options"])
        assert options[info["answer_label"]] == info["answer"] == r["reward_model"]["ground_truth"]
        assert "".join(f"\n\n{k}. {v}" for k, v in options.items()) in r["prompt"][0]["content"]
    assert stats.counts[PERMUTED] == 40
    assert sum(stats.categories["answer_letter"].values()) == 40
    assert stats.series["options_per_row"] == Counter({4: 40})


# ------------------------------------------------------------------ selection


def identities(n: int):
    names = [f"ds{i % 4 if i % 10 else 0}" for i in range(n)]  # unequal strata: ds0 is the largest
    return names, list(range(n))


def kept(n: int, left_out) -> list[int]:
    out = {row for row, _, _ in left_out}
    return [r for r in range(n) if r not in out]


@pytest.mark.parametrize("stratify", [False, True])
def test_subsets_are_deterministic_and_nested_for_one_seed(stratify):
    names, indexes = identities(1000)
    subsets = [kept(1000, select_rows(names, indexes, {}, size, 5, stratify)) for size in (10, 100, 250, 999)]
    assert [len(s) for s in subsets] == [10, 100, 250, 999]
    for small, large in zip(subsets, subsets[1:]):
        assert set(small) <= set(large)
    assert kept(1000, select_rows(names, indexes, {}, 100, 5, stratify)) == subsets[1]
    assert kept(1000, select_rows(names, indexes, {}, 100, 6, stratify)) != subsets[1]  # another seed
    assert kept(1000, select_rows(names, indexes, {}, None, 5, stratify)) == list(range(1000))
    assert kept(1000, select_rows(names, indexes, {}, 5000, 5, stratify)) == list(range(1000))


def test_stratified_subsets_are_proportional():
    names, indexes = identities(1000)
    strata = Counter(names)
    for size in (10, 37, 100, 333):
        got = Counter(names[r] for r in kept(1000, select_rows(names, indexes, {}, size, 0, True)))
        for name, n in strata.items():
            assert abs(got[name] - size * n / 1000) < 1.5, (size, got)


def test_contaminated_rows_go_first_then_the_subset_among_the_rest():
    names, indexes = identities(100)
    flagged = {3: ["near_item", "exact_image"], 4: ["train_near_image"], 5: ["near_image", "train_exact_image"]}
    left_out = select_rows(names, indexes, flagged, 50, 0, False)
    reasons = {row: reason for row, reason, _ in left_out}
    assert reasons[3] == "contaminated_exact_image" and reasons[5] == "contaminated_near_image"
    assert 4 not in reasons or reasons[4] == "outside_subset"  # within-train duplicates are not contamination
    assert len(kept(100, left_out)) == 50
    assert Counter(reasons.values()) == {"contaminated_exact_image": 1, "contaminated_near_image": 1, "outside_subset": 48}


def test_the_targets_drop_what_the_selection_lists(tmp_path, tokenizer_dir):
    path = tmp_path / "train.parquet"
    pq.write_table(selection_table([(1, "outside_subset", "subset.rows=2 seed=0"),
                                    (3, "contaminated_near_item", "audit kinds: near_item")]), path)
    verl = target_config("verl", **{"tokenizer": tokenizer_dir})
    table, stats = VERL.convert_batch(hf_rows(4), verl, "train", selection=load_selection(str(path)))
    assert [r["extra_info"]["index"] for r in table.to_pylist()] == [0, 2]
    assert stats.dropped == {"outside_subset": 1, "contaminated_near_item": 1}
    assert [(r["row"], r["reason"]) for r in stats.rejects] == [(1, "outside_subset"), (3, "contaminated_near_item")]
    # a later batch of the same split: rows are matched by their position in the split
    table, stats = VERL.convert_batch(hf_rows(2), verl, "train", first_row=2, selection=load_selection(str(path)))
    assert [r["extra_info"]["index"] for r in table.to_pylist()] == [2]


# ------------------------------------------------------------------ the pipeline


def test_no_param_is_named_like_what_dvc_run_cache_ignores():
    """DVC's run cache drops every key named `size` or `nfiles` from a stage's identity (dict_sha256 with
    exclude, in dvc.stage.cache): a param so named would let `dvc repro` restore another value's outputs."""
    import yaml

    def keys(node, path=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield f"{path}{k}", k
                yield from keys(v, f"{path}{k}.")

    bad = [full for full, k in keys(yaml.safe_load((REPO / "params.yaml").read_text())) if k in ("size", "nfiles")]
    assert bad == []


def metrics(repo, stage, split):
    return json.loads((repo / f"metrics/{stage}/{split}.json").read_text())


def test_defaults_write_letter_metrics_and_plots(repro_repo):
    for stage, split in [("verl", "train"), ("verl", "test"), ("trl", "train")]:
        m = metrics(repro_repo, stage, split)
        assert sum(m["answer_letter"].values()) == m["rows_out"] and m["options_per_row"]["min"] >= 2
        plot = json.loads((repro_repo / f"plots/{stage}/{split}/answer_letter.json").read_text())
        assert {p["answer_letter"]: p["rows"] for p in plot} == m["answer_letter"]
    summary = json.loads((repro_repo / "summary.json").read_text())
    # every target the defaults build (targets: verl [train, test], trl [train]) counts letters
    assert set(summary["letter_max_share"]) == {"train.verl", "test.verl", "train.trl"}
    select = json.loads((repro_repo / "metrics/select.json").read_text())
    assert select["train"]["selected"] == select["train"]["rows"] and select["train"]["left_out"] == {}


def test_subset_reruns_only_the_train_targets_and_counts_the_rest(scratch_repo):
    repo = scratch_repo
    before = pq.read_table(repo / "data/verl/test")
    set_params(repo, **{"subset.rows": 50})
    assert repro_ran(repo) == {"select", *TARGETS_TRAIN, "summary", *REPORTS}
    m = metrics(repo, "verl", "train")
    assert m["rows_out"] == 50 and m["dropped"]["outside_subset"] == m["rows_in"] - 50
    trl_rows = set(pq.read_table(repo / "data/trl/train").column("dataset_index").to_pylist())
    verl_rows = {e["dataset_index"] for e in pq.read_table(repo / "data/verl/train").column("extra_info").to_pylist()}
    assert trl_rows <= verl_rows  # the same rows (trl further drops rows without reasoning)
    assert pq.read_table(repo / "data/verl/test").equals(before)
    rejects = pq.read_table(repo / "data/rejects/verl/train.parquet").to_pylist()
    assert Counter(r["reason"] for r in rejects)["outside_subset"] == m["rows_in"] - 50
    set_params(repo, **{"subset.rows": 100})
    assert repro_ran(repo) == {"select", *TARGETS_TRAIN, "summary", *REPORTS}
    larger = {e["dataset_index"] for e in pq.read_table(repo / "data/verl/train").column("extra_info").to_pylist()}
    assert verl_rows < larger  # nested


def test_audit_thresholds_rerun_only_the_audit_unless_dropping(scratch_repo):
    repo = scratch_repo
    # dropping off: the audit reruns, select rewrites the same (empty) selection, no target reruns
    set_params(repo, **{"audit.near_item_threshold": 0.8})
    assert repro_ran(repo) == {"audit", "select", *REPORTS}  # the products read the audit metrics
    # switching dropping on: no audit rerun, only the train targets (test data never changes)
    set_params(repo, **{"audit.drop_train_contaminated": True})
    assert repro_ran(repo) == {"select", *TARGETS_TRAIN, "summary", *REPORTS}
    m = metrics(repo, "verl", "train")
    flagged = json.loads((repo / "metrics/audit/contamination.json").read_text())["train_vs_test"]["any"]
    assert sum(v for k, v in m["dropped"].items() if k.startswith("contaminated_")) == flagged
    # a threshold that changes the flagged rows now reaches the train targets, never the test ones (a
    # stricter confirmation unflags some of the sample's near-image ramps: 87 -> 69 of its 140 train rows;
    # near_item_threshold changes nothing here, a near item needing a near image already flagged)
    set_params(repo, **{"audit.near_image_min_structure": 0.97})
    ran = repro_ran(repo)
    assert {"audit", "select", *TARGETS_TRAIN} <= ran and not {"verl@test", "hf_bytes@train"} & ran
    assert "up to date" in run(["dvc", "status"], repo).stdout


def test_all_three_features_in_the_pipeline_same_bytes_with_num_proc_2(scratch_repo):
    """rebalance + contamination drop + stratified subset through `dvc repro`: consistent rows, and the
    same bytes with two worker processes (workers inherit the selection, permutations are per row)."""
    from conftest import md5_tree

    repo = scratch_repo
    before = {e["index"]: e for e in pq.read_table(repo / "data/verl/train").column("extra_info").to_pylist()}
    set_params(repo, **{"verl.rebalance": "permute", "trl.rebalance": "permute", "audit.drop_train_contaminated": True,
                        "subset.rows": 15, "subset.stratify": True})
    run(["dvc", "repro"], repo)
    m = metrics(repo, "verl", "train")
    assert m["rows_out"] == 15 and m["dropped"]["outside_subset"] > 0
    assert any(k.startswith("contaminated_") for k in m["dropped"]) and m["rebalance_permuted"] > 0
    for r in pq.read_table(repo / "data/verl/train").to_pylist():
        info, old = r["extra_info"], before[r["extra_info"]["index"]]
        assert info["answer"] == old["answer"] == r["reward_model"]["ground_truth"]
        assert json.loads(info["options"])[info["answer_label"]] == json.loads(old["options"])[old["answer_label"]]
        assert sorted(json.loads(info["options"]).items()) != [] and \
               sorted(json.loads(info["options"]).values()) == sorted(json.loads(old["options"]).values())
    for r in pq.read_table(repo / "data/trl/train").to_pylist():
        assert json.loads(r["options"])[r["answer_label"]] == r["answer"]
        assert r["text"].rstrip().endswith(f"<answer> {r['answer_label']} </answer><|im_end|>")
    outputs = {p: md5_tree(repo / p) for p in ("data/verl", "data/trl", "data/rejects", "metrics/verl", "metrics/trl")}
    set_params(repo, **{"verl.num_proc": 2, "trl.num_proc": 2})
    assert {"verl@train", "trl@train"} <= repro_ran(repo)
    assert {p: md5_tree(repo / p) for p in outputs} == outputs
