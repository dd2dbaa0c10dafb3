"""What the console shows: the ``↳`` line under a failing check keeps its reason whole and cuts the other
fields only between fields; `resgate query` shows a struct column without the null keys DuckDB pads it
with, and does not cut the last column."""

from __future__ import annotations

from resgate.checks.result import CheckResult
from resgate.evidence.query import format_table
from resgate.evidence.report import example_note, report_markdown, verdict_table


def test_the_example_line_keeps_the_whole_reason_and_cuts_only_between_fields() -> None:
    reason = (
        "failure class server_error_5xx is not allowed (allowed: conn_refused, conn_reset, timeout, 409, 429)"
    )
    example = {"kind": "not_retryable", "class": "server_error_5xx", "reason": reason, "body": "x" * 300}

    note = example_note(example)

    assert note.startswith(reason + " {")
    assert '"kind": "not_retryable", "class": "server_error_5xx", …}' in note and "xxx" not in note


def test_a_failing_check_in_the_verdict_table_shows_its_first_example_reason() -> None:
    r = CheckResult(
        name="retryable", valid=False, counts={"failed": 1}, examples=[{"reason": "a full sentence."}]
    )

    assert "↳ a full sentence." in verdict_table([r])


def test_query_tables_drop_null_struct_fields_and_keep_the_last_column_whole() -> None:
    counts = {"requests": 10, "failures": None, "faults": 4}
    long = "y" * 80

    table = format_table(["name", "counts", "note"], [("slo", counts, long)])

    row = table.splitlines()[2]
    assert "requests=10, faults=4" in row and "failures" not in row and row.endswith(long)


def test_the_report_says_a_redelivery_is_judged_on_the_exposed_service_not_aimed_at_it() -> None:
    faults = [
        {"fault_id": "kill", "kind": "stop_task", "target": "gateway", "event": "injected"},
        {"fault_id": "redeliver", "kind": "duplicate_delivery", "target": "gateway", "event": "injected"},
    ]

    text = report_markdown(
        gate="g", run_id="r", verdict={"result": "PASS"}, results=[], figures={}, faults=faults, plot=None
    )

    assert "`kill` (stop_task, target `gateway`)" in text
    assert "`redeliver` (duplicate_delivery, recovery judged on `gateway`)" in text
