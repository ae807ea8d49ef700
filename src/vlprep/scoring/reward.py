"""Reward for vlprep's verl rows: `compute_score`, as verl's custom_reward_function calls it.

verl loads this file by its path on every reward worker, where vlprep may not be installed: so it
uses the standard library only and never imports vlprep.

Rules (docs/trainers.md#the-reward has examples):
- format: `<think>...</think>`, then only whitespace, then one `<answer>...</answer>`, then only
  whitespace; exactly one of each of the four tags (a second <answer> block fails the format).
- answer: the content of the last complete `<answer>...</answer>` block, compared after Unicode NFKC,
  case folding, collapsing whitespace and trimming trailing punctuation.
- multiple choice (extra_info has options and answer_label): correct when the answer is the correct
  letter (`B`, `B.`, `B)`, `(B)`, `Option B`), the correct option's text (or ground_truth), or both
  (`B. <text>`). Every option the answer could name is collected; it is correct only when that is
  exactly the correct one, so "B. <text of A>" or an answer that is both a letter and another option's
  text is wrong. Anything else ("A or B", "The answer is B") is wrong.
- open-ended (no usable options, no answer_label, or question_type "open"/"yesno"): normalized exact
  match with ground_truth, articles (a, an, the) also ignored.
- returns {"score", "acc", "format"} (floats in [0, 1]) on every call. score = (1-w)*acc + w*format,
  w = format_weight (default 0); score = 0 when the format fails and require_format (default true).

Every scan of the response is linear and in C (str.strip/count/find/rfind, and one character-class
regex trimming the answer's end; the other regexes and Unicode normalization only run on answers of
bounded length), so a 1 MB response costs milliseconds, and no input string makes it raise.
"""
from __future__ import annotations

import json
import re
import unicodedata

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
OPEN_ENDED_TYPES = ("open", "yesno")
ARTICLES = frozenset(("a", "an", "the"))


def _trailing_run_re() -> re.Pattern:
    """A run of whitespace and punctuation (Unicode category P*), as ranges of the Basic Multilingual
    Plane (~25 ms to build; all of Unicode takes 0.3 s). Matched on the reversed text, it trims a
    megabyte in a few ms, where str.rstrip with these 848 characters takes up to 45 ms and a
    per-character loop 300 ms."""
    ranges, start, prev = [], None, None
    for code in range(0x10000):
        char = chr(code)
        if char.isspace() or unicodedata.category(char).startswith("P"):
            if prev is None or code != prev + 1:
                if start is not None:
                    ranges.append((start, prev))
                start = code
            prev = code
    ranges.append((start, prev))
    return re.compile("[" + "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges) + "]*")


_TRAILING_RUN = _trailing_run_re()


def _trim_end(text: str) -> str:
    """text without its trailing whitespace and punctuation."""
    return text[: len(text) - _TRAILING_RUN.match(text[::-1]).end()]


# Applied only to answers short enough to be one of the accepted forms (see _short_answer), so their
# cost is bounded whatever the response. Token: an option key such as "b"; "option" prefix optional.
_KEY = r"[^\s()\[\].:]+"
_LETTER_RE = re.compile(rf"(?:option\s*)?[(\[]?\s*({_KEY})\s*[)\]]?")
_LETTER_TEXT_RE = re.compile(rf"(?:option\s*)?[(\[]?\s*({_KEY})\s*(?:[)\]]\s*[.:\-]?|[.:\-])\s*(.+)", re.DOTALL)


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """verl calls this with keywords; kwargs are reward_kwargs (format_weight, require_format). Other
    kwargs are ignored: verl versions pass extra ones of their own."""
    weight = _weight(kwargs.get("format_weight", 0.0))
    require = _flag(kwargs.get("require_format", True))
    text = solution_str if isinstance(solution_str, str) else ""
    info = extra_info if isinstance(extra_info, dict) else {}

    fmt = 1.0 if format_ok(text) else 0.0
    answer = extract_answer(text)
    acc = 1.0 if answer is not None and is_correct(answer, ground_truth, info) else 0.0
    score = 0.0 if require and not fmt else (1.0 - weight) * acc + weight * fmt
    return {"score": score, "acc": acc, "format": fmt}


def _weight(value) -> float:
    # A wrong reward config must stop training on the first call, not train on a silent default.
    w = float(value)
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"format_weight must be within [0, 1], got {value!r}")
    return w


def _flag(value) -> bool:
    if isinstance(value, str):  # a reward_kwargs value may arrive as text
        if value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if value.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"require_format must be a boolean, got {value!r}")
    return bool(value)


def format_ok(text: str) -> bool:
    body = text.strip()
    if not (body.startswith(THINK_OPEN) and body.endswith(ANSWER_CLOSE)):
        return False
    if any(body.count(tag) != 1 for tag in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)):
        return False
    think_end, answer_start = body.find(THINK_CLOSE), body.find(ANSWER_OPEN)
    return think_end < answer_start and not body[think_end + len(THINK_CLOSE) : answer_start].strip()


def extract_answer(text: str) -> str | None:
    """Content of the last complete <answer>...</answer> block, or None."""
    end = text.rfind(ANSWER_CLOSE)
    if end < 0:
        return None
    start = text.rfind(ANSWER_OPEN, 0, end)
    if start < 0:
        return None
    return text[start + len(ANSWER_OPEN) : end]


def normalize(text: str) -> str:
    """NFKC (full-width letters), case fold, collapse whitespace, trim trailing punctuation."""
    return _trim_end(" ".join(unicodedata.normalize("NFKC", text).casefold().split()))


def _short_answer(answer: str, longest: int) -> str | None:
    """normalize(answer), or None when it is too long to equal a string of `longest` characters.
    The bound is checked on the cheaply trimmed text before normalizing, because NFKC and case folding
    of a megabyte take tens of ms to seconds; 4x leaves room for what NFKC composes (e + accent -> é)
    and for runs of inner whitespace."""
    answer = _trim_end(answer).lstrip()
    if len(answer) > 4 * longest + 64:
        return None
    return normalize(answer)


def _without_articles(text: str) -> str:
    return " ".join(w for w in text.split() if w not in ARTICLES)


def parse_options(info: dict) -> dict[str, str]:
    """{normalized key: normalized text} from extra_info["options"] (a JSON object string, or a dict);
    {} when absent or unusable."""
    raw = info.get("options")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):  # malformed, or nested deeper than json can parse
            return {}
    if not isinstance(raw, dict):
        return {}
    return {normalize(str(k)): normalize(str(v)) for k, v in raw.items() if v is not None and normalize(str(k))}


def is_correct(answer: str, ground_truth, info: dict) -> bool:
    truth = normalize(ground_truth) if isinstance(ground_truth, str) else ""
    label = info.get("answer_label")
    label = normalize(label) if isinstance(label, str) else ""
    options = parse_options(info)
    open_ended = isinstance(info.get("question_type"), str) and info["question_type"] in OPEN_ENDED_TYPES
    if open_ended or not options or label not in options:
        answer = _short_answer(answer, len(truth))
        return bool(answer) and _without_articles(answer) == _without_articles(truth)
    # The longest accepted form: "option (<key>) - <text>".
    answer = _short_answer(answer, max(map(len, options)) + max(len(truth), *map(len, options.values())) + 16)
    return bool(answer) and _named_options(answer, options, label, truth) == {label}  # "" never names one


def _named_options(answer: str, options: dict[str, str], label: str, truth: str) -> set[str]:
    """Every option key the answer can be read as naming, under each accepted form."""
    named = {key for key, text in options.items() if text == answer}  # the option text itself
    if truth and answer == truth:
        named.add(label)  # ground_truth may rephrase the option text; the label stays the truth
    match = _LETTER_RE.fullmatch(answer)
    if match and match.group(1) in options:
        named.add(match.group(1))
    match = _LETTER_TEXT_RE.fullmatch(answer)
    if match and match.group(1) in options:
        key, rest = match.group(1), match.group(2)
        texts = {k for k, text in options.items() if text == rest} | ({label} if truth and rest == truth else set())
        if texts:  # "B. <text>": the letter and whatever option the text names
            named |= {key} | texts
    return named
