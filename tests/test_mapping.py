"""The column mapping, form by form: options (dict, columns, list, embedded in the question), labels
(letter, 0/1-based index, option text, from the answer), images (list, one column, several columns),
open and yes/no questions; and the params that declare them."""
from collections import Counter

import pytest

from builders import jpeg, png
from vlprep.ingest.mapping import Input, apply_mapping, parse_embedded_options
from vlprep.core.metrics import Rejected
from vlprep.core.params import ParamsError, load_input
from vlprep.core.sections import ColumnMapping, InputEntry
from vlprep.ingest.records import normalize_text_fields


def mapped(columns: dict, row: dict, name=None) -> dict:
    """apply the mapping, then the usual normalisation: what hf_bytes keeps of the row's text."""
    inp = Input("inputs.train[0]", ColumnMapping.model_validate(columns), None, None, name)
    raw = apply_mapping(row, inp)
    return {**normalize_text_fields(raw, Counter()), "images": raw["images"]}


def reason(columns, row) -> str:
    with pytest.raises(Rejected) as e:
        mapped(columns, row)
    return e.value.reason


MC = {"image": "img", "question": "q", "answer_label": "label"}


def test_options_as_separate_columns_dict_or_list():
    row = {"img": png(), "q": "Which?", "opa": "one", "opb": "two", "opc": None, "opd": " ", "label": "B"}
    by_list = mapped({**MC, "option_columns": ["opa", "opb", "opc", "opd"]}, row)
    by_dict = mapped({**MC, "option_columns": {"A": "opa", "B": "opb", "C": "opc", "D": "opd"}}, row)
    assert by_list == by_dict and by_list["options"] == '{"A": "one", "B": "two"}' and by_list["answer"] == "two"


def test_option_prefix_stripped_only_when_it_is_the_options_own_letter():
    row = {"img": png(), "q": "Which?", "a": " A:CT", "b": "(B) MRI", "c": "A: not C's prefix", "label": "B"}
    out = mapped({**MC, "option_columns": ["a", "b", "c"], "strip_option_prefix": True}, row)
    assert out["options"] == '{"A": "CT", "B": "MRI", "C": "A: not C\'s prefix"}'


@pytest.mark.parametrize("value", [["one", "two", "three"], '["one", "two", "three"]'])
def test_options_as_a_list_get_letters_in_order(value):
    out = mapped({**MC, "option_list": "opts"}, {"img": png(), "q": "Which?", "opts": value, "label": "C"})
    assert out["options"] == '{"A": "one", "B": "two", "C": "three"}' and out["answer"] == "three"


@pytest.mark.parametrize("form,label,letter", [("index0", 0, "A"), ("index0", "2", "C"), ("index1", 1, "A"),
                                                ("index1", "3", "C"), ("text", "two", "B"), ("text", " TWO ", "B")])
def test_label_as_index_or_option_text(form, label, letter):
    row = {"img": png(), "q": "Which?", "opts": ["one", "two", "three"], "label": label}
    assert mapped({**MC, "option_list": "opts", "label_form": form}, row)["answer_label"] == letter


@pytest.mark.parametrize("form,label,why", [("index0", 3, "answer_label_not_in_options"),
                                            ("index1", 0, "answer_label_not_in_options"),
                                            ("index0", "B", "answer_label_not_in_options"),
                                            ("index0", True, "answer_label_not_in_options"),
                                            ("index1", None, "answer_label_missing"),
                                            ("text", "four", "answer_label_not_in_options")])
def test_bad_index_or_text_labels_are_drops(form, label, why):
    row = {"img": png(), "q": "Which?", "opts": ["one", "two", "three"], "label": label}
    assert reason({**MC, "option_list": "opts", "label_form": form}, row) == why


def test_label_from_the_answer_text_when_there_is_no_label_column():
    cols = {"image": "img", "question": "q", "option_list": "opts", "answer": "ans"}
    assert mapped(cols, {"img": png(), "q": "Which?", "opts": ["x", "y"], "ans": "y"})["answer_label"] == "B"
    assert reason(cols, {"img": png(), "q": "Which?", "opts": ["x", "y"], "ans": "z"}) == "answer_not_in_options"
    assert reason(cols, {"img": png(), "q": "Which?", "opts": ["x", "x"], "ans": "x"}) == "answer_not_in_options"
    assert reason(cols, {"img": png(), "q": "Which?", "opts": ["x", "y"], "ans": None}) == "answer_missing"


def test_answer_conflict_rule():
    cols = {**MC, "option_list": "opts", "answer": "ans"}
    row = {"img": png(), "q": "Which?", "opts": ["liver", "kidney"], "label": "B", "ans": "Liver"}
    assert mapped(cols, row)["answer_label"] == "B"  # keep (default): the label is the truth, counted as a mismatch
    assert reason({**cols, "answer_conflict": "drop"}, row) == "answer_conflicts_with_label"
    ok = mapped({**cols, "answer_conflict": "drop"}, {**row, "ans": "the kidney"})  # a rephrasing is no conflict
    assert ok["answer_label"] == "B"


@pytest.mark.parametrize("question,stem,options", [
    ("What is shown? A: CT B: MRI C: PET", "What is shown?", {"A": "CT", "B": "MRI", "C": "PET"}),
    ("What is shown?\n(A) CT scan (B) MRI", "What is shown?", {"A": "CT scan", "B": "MRI"}),
    ("Which finding?\nAnswer Choices: (A) effusion (B) mass", "Which finding?", {"A": "effusion", "B": "mass"}),
    ("Ratio of A:B? Options: (A) 1:2 (B) 2:1", "Ratio of A:B?", {"A": "1:2", "B": "2:1"}),
])
def test_options_embedded_in_the_question(question, stem, options):
    assert parse_embedded_options(question) == (stem, options)
    out = mapped({"image": "img", "question": "q", "options_in_question": True, "answer_label": "label"},
                 {"img": png(), "q": question, "label": "B"})
    assert out["question"] == stem and out["answer"] == options["B"]


@pytest.mark.parametrize("question", [
    "What is shown?",  # no options
    "Pick one: A: CT",  # a single marker
    "Pick: (A) CT (C) MRI",  # a gap
    "Pick: (A) CT (B) MRI (A) again",  # a repeat
    "Pick: A: CT B: MRI (A) x (B) y",  # two styles fit
    "A: CT B: MRI",  # no stem
    "Pick: (A) CT (B)",  # a blank option
])
def test_ambiguous_embedded_options_are_dropped_never_guessed(question):
    cols = {"image": "img", "question": "q", "options_in_question": True, "answer_label": "label"}
    assert reason(cols, {"img": png(), "q": question, "label": "A"}) == "options_unparseable"


def test_image_forms():
    base = {"question": "q", "answer": "a"}
    row = {"q": "What?", "a": "yes", "i1": png(), "i2": None, "i3": {"bytes": jpeg(), "path": None}, "lst": [png(), jpeg()]}
    assert mapped({**base, "images": "lst"}, row)["images"] == row["lst"]
    assert mapped({**base, "image": "i1"}, row)["images"] == [row["i1"]]
    assert mapped({**base, "image": "i2"}, row)["images"] is None  # -> no_image in hf_bytes
    assert mapped({**base, "image_columns": ["i1", "i2", "i3"]}, row)["images"] == [row["i1"], row["i3"]]


def test_open_and_yes_no_questions():
    cols = {"image": "img", "question": "q", "answer": "a", "reasoning": "r"}
    for answer, qtype in [("Yes", "yesno"), (" no. ", "yesno"), ("Left lung", "open"), ("yes, left", "open")]:
        out = mapped(cols, {"img": png(), "q": "Is it?", "a": answer, "r": "because"})
        assert (out["question_type"], out["options"], out["answer_label"], out["answer"]) == (qtype, None, None, answer)
    assert reason(cols, {"img": png(), "q": "Is it?", "a": "  "}) == "answer_missing"


def test_name_fills_dataset_name_and_misc_from_several_columns():
    cols = {"image": "img", "question": "q", "answer": "a", "dataset_name": "src", "misc": ["x", "y"]}
    out = mapped(cols, {"img": png(), "q": "?", "a": "b", "src": None, "x": 1, "y": "z"}, name="mine")
    assert out["dataset_name"] == "mine" and out["misc"] == '{"x": 1, "y": "z"}'
    assert mapped(cols, {"img": png(), "q": "?", "a": "b", "src": "theirs"}, name="mine")["dataset_name"] == "theirs"


@pytest.mark.parametrize("columns,message", [
    ({"question": "q", "answer": "a"}, "exactly one of images / image / image_columns"),
    ({"question": "q", "image": "i", "images": "l", "answer": "a"}, "exactly one of images"),
    ({"question": "q", "image": "i", "options": "o", "option_list": "l", "answer_label": "x"}, "at most one options source"),
    ({"question": "q", "image": "i", "options": "o"}, "needs answer_label or answer"),
    ({"question": "q", "image": "i"}, "needs answer"),
    ({"question": "q", "image": "i", "answer": "a", "label_form": "index0"}, "label_form needs answer_label"),
    ({"question": "q", "image": "i", "answer": "a", "optional": ["zz"]}, "optional names columns"),
    ({"question": "q", "image": "i", "answer": "a", "colour": "x"}, "Extra inputs are not permitted"),
    ({"question": "q", "image": "i", "answer": "a", "label_form": "letters"}, "label_form"),
])
def test_bad_mappings_are_params_errors(tmp_path, columns, message):
    (tmp_path / "params.yaml").write_text(__import__("yaml").safe_dump({"inputs": {"train": [{"path": "x.csv", "columns": columns}]}}))
    with pytest.raises(ParamsError) as e:
        load_input("train", tmp_path / "params.yaml")
    assert "inputs.train[0]" in str(e.value) and message in str(e.value)


@pytest.mark.parametrize("entry,message", [
    ({"path": "x.csv"}, "exactly one of preset / columns"),
    ({"path": "x.csv", "preset": "pmc-vqa"}, "inputs.train[0].preset"),
    ({"path": "x.csv", "preset": "slake", "columns": {"question": "q", "image": "i", "answer": "a"}}, "exactly one of preset"),
    ({"path": "x.csv", "preset": "slake", "image_root": 3}, "inputs.train[0].image_root"),
])
def test_bad_entries_are_params_errors(tmp_path, entry, message):
    import yaml

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"inputs": {"train": [entry]}}))
    with pytest.raises(ParamsError) as e:
        load_input("train", tmp_path / "params.yaml")
    assert message in str(e.value)


def test_a_plain_string_spec_is_still_a_string(tmp_path):
    (tmp_path / "params.yaml").write_text("inputs: {train: data/raw/train}\n")
    assert load_input("train", tmp_path / "params.yaml") == "data/raw/train"
    (tmp_path / "params.yaml").write_text("inputs: {train: [{path: a, preset: slake, name: s}]}\n")
    assert load_input("train", tmp_path / "params.yaml") == [InputEntry(path="a", preset="slake", name="s")]


def test_new_drop_reasons_are_in_the_documented_table():
    from test_drop_reasons import bad_input_table
    from vlprep.core.metrics import DROP_REASONS

    table = bad_input_table()
    for reason in ("answer_missing", "row_malformed", "options_unparseable", "answer_not_in_options",
                   "answer_conflicts_with_label", "question_type_excluded"):
        assert reason in DROP_REASONS and f"`{reason}`" in table, reason
