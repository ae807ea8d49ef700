"""The drop reasons the code can raise are exactly those the bad-input table of docs/failures.md documents
(docs/failures.md#what-happens-to-bad-input), and
an unregistered reason is a bug that stops the stage instead of becoming a silent new category."""
import re

import pytest

from conftest import REPO
from vlprep.engine.batches import map_rows
from vlprep.core.metrics import DROP_REASONS, Rejected
from vlprep.core.schema import REJECTS_SCHEMA


def bad_input_table() -> str:
    """The bad-input table of docs/failures.md, between its markers."""
    text = (REPO / "docs/failures.md").read_text()
    return text[text.index("<!-- drop-reasons"):text.index("<!-- end drop-reasons -->")]


def documented_reasons() -> set[str]:
    table = bad_input_table()
    reasons = set()
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("|") and len(cells) == 3 and cells[2] and cells[2] != "drop reason" and not set(cells[2]) <= {"-"}:
            reasons |= set(re.findall(r"`([a-z_]+)`", cells[2]))
    return reasons


def test_documented_table_and_registry_list_the_same_reasons():
    documented = documented_reasons()
    assert documented, "no reasons parsed from the docs/failures.md table"
    assert documented - set(DROP_REASONS) == set(), "in docs/failures.md, not in DROP_REASONS"
    assert set(DROP_REASONS) - documented == set(), "in DROP_REASONS, not in docs/failures.md"


def test_every_registered_reason_is_raised_somewhere_in_the_code():
    code = "\n".join(p.read_text() for p in (REPO / "src/vlprep").rglob("*.py") if p.name != "metrics.py")
    never = [r for r in DROP_REASONS if f'"{r}"' not in code]
    assert never == [], "registered reasons no code raises"


def test_an_unregistered_reason_is_a_bug_not_a_drop():
    with pytest.raises(ValueError, match="unregistered drop reason 'typo_reason'"):
        Rejected("typo_reason")


@pytest.mark.parametrize("bug", [TypeError("x"), AttributeError("y"), KeyError("z")])
def test_bugs_in_a_row_function_stop_the_stage_naming_file_and_row(bug):
    def row_fn(row, index, stats):
        raise bug

    with pytest.raises(RuntimeError, match=r"data/x\.parquet row 7: " + type(bug).__name__):
        map_rows([{"a": 1}], row_fn, REJECTS_SCHEMA, "data/x.parquet", 7)


def test_a_drop_is_counted_and_recorded_with_the_row_identity():
    def row_fn(row, index, stats):
        if row["dataset_index"] == 2:
            raise Rejected("question_missing", "blank")
        return {"stage": "s"}

    rows = [{"dataset_name": "d", "dataset_index": i} for i in range(3)]
    table, stats = map_rows(rows, row_fn, REJECTS_SCHEMA, "f.parquet", 10)
    assert table.num_rows == 2 and stats.rows_in == 3 and stats.rows_out == 2
    assert dict(stats.dropped) == {"question_missing": 1}
    assert stats.rejects == [{"source": "f.parquet", "row": 12, "dataset_name": "d", "dataset_index": 2,
                              "reason": "question_missing", "detail": "blank"}]
