"""The Step Functions history quota (25,000 events per execution; Step Functions developer guide, "Step
Functions service quotas", https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html): the
rehearsal projects a rehearsed execution's history to a run as long as the state machine's timeout
(support/rehearsal.py ``history_projection``), and the short rehearsal in ``make test`` fails when the
projection exceeds the quota."""

from __future__ import annotations

from typing import Any

from tests.rehearsal.support.rehearsal import HISTORY_LIMIT, history_projection


def _state(name: str, kind: str, events: int) -> list[dict[str, Any]]:
    """One state's events: its ``<kind>StateEntered`` (with its name) and ``events - 1`` more."""
    entered = {"type": f"{kind}StateEntered", "stateEnteredEventDetails": {"name": name}}
    return [entered] + [{"type": "Other"}] * (events - 1)


def _history(polls: int, once: int = 10) -> list[dict[str, Any]]:
    out = [{"type": "ExecutionStarted"}, *_state("Init", "Pass", once - 1)]
    for _ in range(polls):
        out += _state("Wait for load", "Wait", 2) + _state("Get load task", "Task", 3)
    return out


def test_the_loop_events_per_poll_are_projected_over_the_timeout_at_the_poll_interval() -> None:
    h = history_projection(_history(polls=2), timeout_s=100, poll_s=10)
    assert (h["events"], h["once"], h["loop_events"], h["polls"]) == (20, 10, 10, 2)
    assert h["projected"] == 10 + 5 * 10
    assert h["margin"] == HISTORY_LIMIT - 60


def test_a_projection_exactly_at_the_quota_has_no_margin_and_one_more_poll_a_negative_one() -> None:
    # 10 once + 5 per poll: (25,000 - 10) / 5 = 4,998 polls fit exactly.
    at_limit = history_projection(_history(polls=3), timeout_s=4_998, poll_s=1)
    assert at_limit["projected"] == HISTORY_LIMIT and at_limit["margin"] == 0
    over = history_projection(_history(polls=3), timeout_s=4_999, poll_s=1)
    assert over["margin"] == -5


def test_a_history_without_polling_loops_projects_to_itself() -> None:
    events = [{"type": "ExecutionStarted"}, *_state("Init", "Pass", 4), *_state("Wait once", "Wait", 2)]
    h = history_projection(events, timeout_s=14_400, poll_s=15)
    assert h["polls"] == 0 and h["projected"] == len(events) == 7
