import json
from collections import Counter

import pytest

from vlprep.core.metrics import Rejected
from vlprep.ingest.records import normalize_options, normalize_text_fields
from builders import row


@pytest.mark.parametrize(
    "value",
    [
        {"A": "x", "B": "y"},
        '{"A": "x", "B": "y"}',
        {"A": "x", "B": "y", "C": None, "D": None},  # parquet struct: absent keys come back null
        [("A", "x"), ("B", "y")],  # parquet map<string,string>
    ],
)
def test_options_forms(value):
    assert normalize_options(value) == {"A": "x", "B": "y"}


def test_options_keep_original_order_and_unicode():
    out = normalize_text_fields(row(options={"B": "β", "A": "肺炎"}, answer_label="A", answer="肺炎"), Counter())
    assert out["options"] == '{"B": "β", "A": "肺炎"}'  # ensure_ascii=False, order kept


@pytest.mark.parametrize(
    "options,reason",
    [
        (None, "options_missing"),
        ('{"A": "unterminated', "options_malformed_json"),
        ('["a", "b"]', "options_not_mapping"),
        (42, "options_not_mapping"),
        ("{}", "options_empty"),
        ({"A": None}, "options_empty"),
    ],
)
def test_bad_options(options, reason):
    with pytest.raises(Rejected) as e:
        normalize_text_fields(row(options=options), Counter())
    assert e.value.reason == reason


@pytest.mark.parametrize("label,reason", [("Z", "answer_label_not_in_options"), (1, "answer_label_not_in_options"), (None, "answer_label_missing"), ("  ", "answer_label_missing")])
def test_bad_labels(label, reason):
    with pytest.raises(Rejected) as e:
        normalize_text_fields(row(answer_label=label), Counter())
    assert e.value.reason == reason


def test_numeric_label_matching_a_numeric_key_is_kept():
    out = normalize_text_fields(row(options={"1": "one", "2": "two"}, answer_label=2, answer="two"), Counter())
    assert out["answer_label"] == "2"


def test_answer_text_filled_or_mismatch_counted():
    warnings = Counter()
    assert normalize_text_fields(row(answer=None), warnings)["answer"] == "beta"
    assert normalize_text_fields(row(answer="gamma"), warnings)["answer"] == "gamma"
    assert warnings == {"answer_filled_from_options": 1, "answer_text_mismatch": 1}


def test_blank_question_dropped_and_blank_reasoning_nulled():
    with pytest.raises(Rejected) as e:
        normalize_text_fields(row(question="  "), Counter())
    assert e.value.reason == "question_missing"
    assert normalize_text_fields(row(reasoning="   "), Counter())["reasoning"] is None


def test_misc_dict_becomes_json_and_missing_optionals_are_null():
    r = row(misc={"b": 1, "a": "é"})
    del r["hash"], r["dataset_name"]
    out = normalize_text_fields(r, Counter())
    assert json.loads(out["misc"]) == {"a": "é", "b": 1}
    assert out["hash"] is None and out["dataset_name"] is None
