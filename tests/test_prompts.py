from vlprep.prompting.prompts import problem_text, response_text, verl_prompt_content

EXPECTED = (
    "<image><image>"
    "You will solve a problem/request. You should provide your thoughts within <think> </think> tags "
    "before providing the answer.\n"
    "Write your final answer within <answer> </answer> tags.\n\n"
    "Question: Which lobe?\n\n"
    "Options:\n\n"
    "A. left\n\n"
    "B. right\n\n"
    "C. both\n\n"
    "E. none\n\n"
    "Z. other\n\n"
    "F. unsure"
)


def test_exact_verl_prompt_with_real_newlines_and_option_order():
    # keys deliberately out of order: A-E first in letter order, then others in their original order
    options = {"Z": "other", "C": "both", "A": "left", "F": "unsure", "E": "none", "B": "right"}
    content = verl_prompt_content(2, "Which lobe?", options)
    assert content == EXPECTED
    assert "\\n" not in content


def test_json_options_give_the_same_text():
    assert problem_text("q", '{"B": "b", "A": "a"}') == problem_text("q", {"A": "a", "B": "b"})


def test_response_format():
    assert response_text("  I looked.\n", "C") == "<think> I looked. </think>\n<answer> C </answer>"


def test_open_and_yes_no_prompts_have_no_options_block_and_answer_with_the_text():
    from vlprep.prompting.prompts import INSTRUCTION, final_answer

    for options in (None, {}, "{}"):
        assert verl_prompt_content(1, "Is it normal?", options) == f"<image>{INSTRUCTION}\n\nQuestion: Is it normal?"
    assert final_answer({"question_type": "yesno", "answer": " Yes ", "answer_label": None}) == "Yes"
    assert final_answer({"question_type": "open", "answer": "a nodule", "answer_label": None}) == "a nodule"
    assert final_answer({"question_type": "mcq", "answer": "beta", "answer_label": "B"}) == "B"
