"""vlprep.scoring.reward (verl's custom reward function) and vlprep.scoring.evaluate (offline scoring with it)."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlprep.scoring import evaluate
from vlprep.scoring.reward import compute_score
from vlprep.core.schema import VERL_SCHEMA

REWARD_PY = Path(__file__).resolve().parents[1] / "src" / "vlprep" / "scoring" / "reward.py"

OPTIONS = {"A": "Left ventricle", "B": "Pneumothorax", "C": "MRI T2", "D": "肺炎"}
MCQ = {"options": json.dumps(OPTIONS, ensure_ascii=False), "answer_label": "B", "answer": "Pneumothorax"}
MCQ_D = {**MCQ, "answer_label": "D", "answer": "肺炎"}
OPEN = {"question_type": "open"}
YESNO = {"question_type": "yesno", "options": json.dumps({"A": "yes", "B": "no"}), "answer_label": "A"}


def ok(answer: str) -> str:
    """A well-formed response with this answer."""
    return f"<think> The film shows a collapsed lung. </think>\n<answer> {answer} </answer>"


# (response, ground_truth, extra_info, (score, acc, format)); default kwargs.
CASES = [
    # the correct letter, in each accepted form
    (ok("B"), "Pneumothorax", MCQ, (1, 1, 1)),
    (ok("b"), "Pneumothorax", MCQ, (1, 1, 1)),
    (ok("B."), "Pneumothorax", MCQ, (1, 1, 1)),
    (ok("B)"), "Pneumothorax", MCQ, (1, 1, 1)),
    (ok("(B)"), "Pneumothorax", MCQ, (1, 1, 1)),
    (ok("Option B"), "Pneumothorax", MCQ, (1, 1, 1)),
    (ok("option (b)."), "Pneumothorax", MCQ, (1, 1, 1)),
    (ok("Ｂ"), "Pneumothorax", MCQ, (1, 1, 1)),  # full-width letter (NFKC)
    # the option text, and letter + text
    (ok("Pneumothorax"), "Pneumothorax", MCQ, (1, 1, 1)),
    (ok("  PNEUMOTHORAX. "), "Pneumothorax", MCQ, (1, 1, 1)),
    (ok("B. Pneumothorax"), "Pneumothorax", MCQ, (1, 1, 1)),
    (ok("(B) pneumothorax!"), "Pneumothorax", MCQ, (1, 1, 1)),
    (ok("B: Pneumothorax"), "Pneumothorax", MCQ, (1, 1, 1)),
    (ok("肺炎。"), "肺炎", MCQ_D, (1, 1, 1)),
    (ok("D. 肺炎"), "肺炎", MCQ_D, (1, 1, 1)),
    # ground_truth rephrasing the option text still counts; the label stays the truth
    (ok("Tension pneumothorax"), "Tension pneumothorax", MCQ, (1, 1, 1)),
    (ok("B. Tension pneumothorax"), "Tension pneumothorax", MCQ, (1, 1, 1)),
    # wrong: another option, two options, right letter with another option's text, free text
    (ok("A"), "Pneumothorax", MCQ, (0, 0, 1)),
    (ok("Left ventricle"), "Pneumothorax", MCQ, (0, 0, 1)),
    (ok("A or B"), "Pneumothorax", MCQ, (0, 0, 1)),
    (ok("A, B"), "Pneumothorax", MCQ, (0, 0, 1)),
    (ok("B. Left ventricle"), "Pneumothorax", MCQ, (0, 0, 1)),
    (ok("A. Pneumothorax"), "Pneumothorax", MCQ, (0, 0, 1)),
    (ok("The answer is B"), "Pneumothorax", MCQ, (0, 0, 1)),
    (ok("B. Pneumothorax or left ventricle"), "Pneumothorax", MCQ, (0, 0, 1)),
    (ok(""), "Pneumothorax", MCQ, (0, 0, 1)),
    # format failures: acc is still reported, the score is 0
    ("<answer>B</answer>", "Pneumothorax", MCQ, (0, 1, 0)),  # no think
    ("<think>x</think><answer>B</answer> Hope this helps.", "Pneumothorax", MCQ, (0, 1, 0)),  # text after
    ("Sure! <think>x</think><answer>B</answer>", "Pneumothorax", MCQ, (0, 1, 0)),  # text before
    ("<think>x</think> so: <answer>B</answer>", "Pneumothorax", MCQ, (0, 1, 0)),  # text between
    ("<think>x</think><answer>A</answer><answer>B</answer>", "Pneumothorax", MCQ, (0, 1, 0)),  # last counts
    ("<think>x</think><answer>B</answer><answer>A</answer>", "Pneumothorax", MCQ, (0, 0, 0)),
    ("<think>a</think><think>b</think><answer>B</answer>", "Pneumothorax", MCQ, (0, 1, 0)),
    ("<think>x<answer>B</answer>", "Pneumothorax", MCQ, (0, 1, 0)),  # think never closed
    ("<think>x</think><answer>B", "Pneumothorax", MCQ, (0, 0, 0)),  # answer never closed
    ("", "Pneumothorax", MCQ, (0, 0, 0)),
    ("B", "Pneumothorax", MCQ, (0, 0, 0)),
    # whitespace around the blocks is fine; unicode anywhere
    ("\n <think>思考 🧠 ünïcödé</think>\n\n<answer>B</answer>\n", "Pneumothorax", MCQ, (1, 1, 1)),
    # open-ended: normalized exact match (articles ignored), no letters
    (ok("The pleural effusion."), "Pleural effusion", OPEN, (1, 1, 1)),
    (ok("pleural  EFFUSION"), "Pleural effusion", OPEN, (1, 1, 1)),
    (ok("effusion"), "Pleural effusion", OPEN, (0, 0, 1)),
    (ok("Yes."), "yes", YESNO, (1, 1, 1)),
    (ok("A"), "yes", YESNO, (0, 0, 1)),  # yes/no questions are never scored by letter
    (ok("no"), "yes", YESNO, (0, 0, 1)),
    (ok("pneumothorax"), "Pneumothorax", None, (1, 1, 1)),  # no extra_info: open-ended
    (ok("B"), "Pneumothorax", None, (0, 0, 1)),
    (ok("B"), "Pneumothorax", {**MCQ, "answer_label": ""}, (0, 0, 1)),  # no label: open-ended
    (ok("Pneumothorax"), "Pneumothorax", {**MCQ, "options": "not json"}, (1, 1, 1)),
    (ok("anything"), "", OPEN, (0, 0, 1)),  # an empty truth matches nothing
    (ok(""), "", {"options": '{"A": "", "B": "x"}', "answer_label": "A"}, (0, 0, 1)),  # nor an empty option
]


@pytest.mark.parametrize("response, truth, extra, expected", CASES)
def test_score_table(response, truth, extra, expected):
    result = compute_score("vlprep_medical_mcqa", response, truth, extra)
    assert result == dict(zip(("score", "acc", "format"), map(float, expected)))


def test_extra_info_is_not_modified():
    extra = dict(MCQ)
    compute_score("d", ok("B"), "Pneumothorax", extra)
    assert extra == MCQ


@pytest.mark.parametrize(
    "response, kwargs, score",
    [
        (ok("B"), {"format_weight": 0.1}, 1.0),
        (ok("A"), {"format_weight": 0.1}, 0.1),
        ("<answer>B</answer>", {"format_weight": 0.1}, 0.0),  # format still required
        ("<answer>B</answer>", {"format_weight": 0.1, "require_format": False}, 0.9),
        ("<answer>B</answer>", {"require_format": False}, 1.0),
        ("<answer>B</answer>", {"require_format": "false"}, 1.0),  # as text, e.g. from a CLI
        ("<answer>A</answer>", {"require_format": False, "format_weight": 0.5}, 0.0),
        (ok("B"), {"reward_router_address": None, "reward_model_tokenizer": None}, 1.0),  # verl's own kwargs
    ],
)
def test_reward_kwargs(response, kwargs, score):
    assert compute_score("d", response, "Pneumothorax", MCQ, **kwargs)["score"] == pytest.approx(score)


@pytest.mark.parametrize("kwargs", [{"format_weight": 1.5}, {"format_weight": "heavy"}, {"require_format": "maybe"}])
def test_a_wrong_reward_config_stops_loudly(kwargs):
    with pytest.raises(ValueError):
        compute_score("d", ok("B"), "Pneumothorax", MCQ, **kwargs)


MB = 1_000_000


@pytest.mark.parametrize(
    "response, expected",
    [
        ("<answer>" * 200_000, (0, 0, 0)),
        ("</answer>" * 200_000, (0, 0, 0)),
        ("<think>" * 200_000 + "<answer>B</answer>", (0, 1, 0)),
        ("<think></think><answer>" * 50_000, (0, 0, 0)),
        ("<think>" + "x" * MB + "</think><answer>B</answer>", (1, 1, 1)),
        ("<think></think><answer>B" + " ." * (MB // 2) + "</answer>", (1, 1, 1)),  # trailing punctuation
        ("<think></think><answer>B" + "\u3002 " * (MB // 2) + "</answer>", (1, 1, 1)),  # CJK full stops
        ("<think></think><answer>" + "B. " * (MB // 3) + "</answer>", (0, 0, 1)),
        ("<think></think><answer>" + "a " * (MB // 2) + "</answer>", (0, 0, 1)),
        ("<think></think><answer>" + "\ufdfa" * MB + "</answer>", (0, 0, 1)),  # NFKC expands it 18x
        ("<think></think><answer>" + "e\u0301" * (MB // 2) + "</answer>", (0, 0, 1)),
        ("(" * MB, (0, 0, 0)),
    ],
)
@pytest.mark.parametrize("extra", [MCQ, OPEN, None])
def test_megabyte_pathological_responses(response, expected, extra):
    # Correctness only (no timing in tests); by hand each of these scores in < 30 ms.
    result = compute_score("d", response, "Pneumothorax", extra)
    if extra is not MCQ and expected[1]:  # "B" is only correct for the multiple-choice row
        expected = (0, 0, expected[2])
    assert result == dict(zip(("score", "acc", "format"), map(float, expected)))


# Any text, biased towards the tags and the answer forms, so malformed mixes are frequent.
TOKENS = st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "B", "(B)", "Option ", ". ", " ", "\n"])
RESPONSES = st.lists(TOKENS | st.text(max_size=12), max_size=12).map("".join) | st.text()
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
OPTION_MAPS = st.dictionaries(st.text(max_size=3), st.none() | st.text(max_size=10), max_size=5)
EXTRA_INFOS = st.none() | JSONISH | st.fixed_dictionaries(
    {},
    optional={
        "options": OPTION_MAPS.map(json.dumps) | OPTION_MAPS | JSONISH | st.text(max_size=20),
        "answer_label": st.none() | st.sampled_from(["A", "B", "", " b "]) | JSONISH,
        "question_type": st.sampled_from(["open", "yesno", "mcq"]) | JSONISH,
    },
)


@settings(max_examples=400, deadline=None)
@given(response=RESPONSES | st.none(), truth=st.none() | st.text(max_size=20) | JSONISH, extra=EXTRA_INFOS)
def test_any_input_gives_three_scores_in_range(response, truth, extra):
    result = compute_score("vlprep_medical_mcqa", response, truth, extra)
    assert set(result) == {"score", "acc", "format"}
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in result.values())
    assert result["score"] == (result["acc"] if result["format"] else 0.0)


def test_reward_imports_only_the_standard_library():
    imported = set()
    for node in ast.walk(ast.parse(REWARD_PY.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported - {"__future__"} <= sys.stdlib_module_names


def test_reward_loads_from_its_path_without_vlprep(tmp_path):
    # -I: no PYTHONPATH, no user site, no script dir; -S: no site-packages, so the installed vlprep is
    # out of reach; cwd is not the repo. Loaded the way verl loads a custom reward file.
    code = f"""
import importlib.util, json, sys
try:
    import vlprep
    sys.exit("vlprep is importable here: the test proves nothing")
except ImportError:
    pass
spec = importlib.util.spec_from_file_location("custom_module", {str(REWARD_PY)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
result = module.compute_score(data_source="vlprep_medical_mcqa", solution_str={ok("B")!r},
                              ground_truth="Pneumothorax", extra_info={MCQ!r})
print(json.dumps([result, sorted(m for m in sys.modules if m.startswith("vlprep"))]))
"""
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result, vlprep_modules = json.loads(proc.stdout)
    assert result == {"score": 1.0, "acc": 1.0, "format": 1.0}
    assert vlprep_modules == []


# --- vlprep.scoring.evaluate -------------------------------------------------------------------------------------


def verl_split(path: Path, rows: list[tuple[int, str, str, str]]) -> Path:
    """A verl parquet with VERL_SCHEMA: rows of (index, dataset_name, answer_label, answer); no images."""
    records = [
        {
            "data_source": "vlprep_medical_mcqa",
            "prompt": [{"role": "user", "content": "question"}],
            "images": [],
            "ability": "medical_mcqa",
            "reward_model": {"style": "rule", "ground_truth": answer},
            "extra_info": {
                "split": "test", "index": index, "question": "q", "options": json.dumps(OPTIONS, ensure_ascii=False),
                "answer_label": label, "answer": answer, "dataset_name": name, "dataset_index": index,
                "prompt_tokens": 10, "image_tokens": 0,
            },
        }
        for index, name, label, answer in rows
    ]
    pq.write_table(pa.Table.from_pylist(records, schema=VERL_SCHEMA), path, row_group_size=2)
    return path


SPLIT_ROWS = [
    (0, "pmc", "B", "Pneumothorax"),
    (1, "pmc", "A", "Left ventricle"),
    (2, "pmc", "C", "MRI T2"),
    (3, "slake", "D", "肺炎"),
    (4, "slake", "B", "Pneumothorax"),
    (5, None, "A", "Left ventricle"),
]
RESPONSES_OK = [
    {"index": 0, "response": ok("B")},  # pmc: right
    {"index": 1, "response": ok("Left ventricle")},  # pmc: right
    {"index": 2, "response": ok("A")},  # pmc: wrong
    {"index": 3, "response": ok("D. 肺炎")},  # slake: right
    {"index": 4, "response": "<answer>B</answer>"},  # slake: right answer, no format
    {"index": 5, "response": ok("A")},  # no dataset_name: right
]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def write_responses_parquet(path: Path, records: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(records, schema=pa.schema([("index", pa.int64()), ("response", pa.string())])), path)
    return path


@pytest.mark.parametrize("writer, suffix", [(write_jsonl, ".jsonl"), (write_responses_parquet, ".parquet")])
def test_evaluate_per_dataset_accuracy(tmp_path, writer, suffix, capsys):
    data = verl_split(tmp_path / "test.parquet", SPLIT_ROWS)
    responses = writer(tmp_path / f"responses{suffix}", RESPONSES_OK)
    out = tmp_path / "metrics" / "eval" / "run.json"
    assert evaluate.main(["--responses", str(responses), "--data", str(data), "--out", str(out)]) == 0

    text = out.read_text()
    metrics = json.loads(text)
    assert text.endswith("}\n") and text == json.dumps(metrics, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert (metrics["n_scored"], metrics["n_correct"], metrics["n_format_failures"]) == (6, 5, 1)
    assert metrics["accuracy"] == pytest.approx(5 / 6)
    assert metrics["mean_score"] == pytest.approx(4 / 6)  # the unformatted right answer scores 0
    assert metrics["format_failure_rate"] == pytest.approx(1 / 6)
    per = metrics["per_dataset"]
    assert set(per) == {"pmc", "slake", "<none>"}
    assert (per["pmc"]["n_scored"], per["pmc"]["accuracy"]) == (3, pytest.approx(2 / 3))
    assert (per["slake"]["accuracy"], per["slake"]["mean_score"], per["slake"]["format_failure_rate"]) == (1.0, 0.5, 0.5)
    assert per["<none>"]["accuracy"] == 1.0
    assert (metrics["rows_in_split"], metrics["responses_in_file"]) == (6, 6)
    for key in ("unknown_indices", "duplicate_indices", "missing_responses"):
        assert metrics[key] == {"count": 0, "examples": []}
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("writer, suffix", [(write_jsonl, ".jsonl"), (write_responses_parquet, ".parquet")])
def test_evaluate_reports_unknown_duplicate_and_missing(tmp_path, writer, suffix, capsys):
    data = verl_split(tmp_path / "test.parquet", SPLIT_ROWS)
    records = [
        {"index": 0, "response": ok("B")},
        {"index": 0, "response": ok("A")},  # duplicate: the first is scored
        {"index": 0, "response": ok("C")},
        {"index": 1, "response": ok("A")},
        {"index": 1, "response": ok("B")},
        {"index": 3, "response": None},  # null: counts as missing
        {"index": 99, "response": ok("B")},  # not in the split
        {"index": -7, "response": ok("B")},
    ]
    responses = writer(tmp_path / f"responses{suffix}", records)
    out = tmp_path / "run.json"
    assert evaluate.main(["--responses", str(responses), "--data", str(data), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["unknown_indices"] == {"count": 2, "examples": [99, -7]}
    assert metrics["duplicate_indices"] == {"count": 3, "examples": [0, 1]}
    assert metrics["missing_responses"] == {"count": 4, "examples": [2, 3, 4, 5]}
    assert (metrics["n_scored"], metrics["n_correct"], metrics["accuracy"]) == (2, 2, 1.0)
    assert metrics["responses_in_file"] == 8
    err = capsys.readouterr().err
    assert "2 responses whose index is not in the split" in err and "[99, -7]" in err
    assert "3 extra responses for an index already seen" in err
    assert "4 split rows without a response" in err


def test_evaluate_reward_kwargs_and_empty_result(tmp_path):
    data = verl_split(tmp_path / "test.parquet", SPLIT_ROWS[:2])
    responses = write_jsonl(tmp_path / "r.jsonl", [{"index": 0, "response": "<answer>B</answer>"}])
    out = tmp_path / "run.json"
    evaluate.main(["--responses", str(responses), "--data", str(data), "--out", str(out), "--no-require-format"])
    assert json.loads(out.read_text())["mean_score"] == 1.0
    responses = write_jsonl(tmp_path / "none.jsonl", [])
    evaluate.main(["--responses", str(responses), "--data", str(data), "--out", str(out)])
    metrics = json.loads(out.read_text())
    assert (metrics["n_scored"], metrics["accuracy"], metrics["missing_responses"]["count"]) == (0, 0.0, 2)


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "r.jsonl:2: not JSON"),
        ('{"index": 1}', "r.jsonl:2: expected an object with `index` and `response`"),
        ('{"index": "1", "response": "x"}', "r.jsonl:2: `index` must be an integer"),
        ('{"index": 1, "response": 3}', "r.jsonl:2: `response` must be a string or null"),
    ],
)
def test_evaluate_stops_on_a_malformed_responses_file(tmp_path, line, message, capsys):
    data = verl_split(tmp_path / "test.parquet", SPLIT_ROWS)
    responses = tmp_path / "r.jsonl"
    responses.write_text(json.dumps({"index": 0, "response": "x"}) + "\n" + line + "\n")
    out = tmp_path / "run.json"
    assert evaluate.main(["--responses", str(responses), "--data", str(data), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_evaluate_reads_only_the_columns_it_needs(tmp_path, monkeypatch):
    data = verl_split(tmp_path / "test.parquet", SPLIT_ROWS)
    asked = []
    real = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        asked.append(kwargs.get("columns"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    evaluate.evaluate(write_jsonl(tmp_path / "r.jsonl", RESPONSES_OK), data)
    assert asked == [["data_source", "reward_model", "extra_info"]]
