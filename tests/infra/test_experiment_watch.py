"""The experiment watch is bounded by time, not by a fixed count of polls (``infra/state_machine/faults.py``).

Every experiment ends with an ``aws:fis:wait`` observation window of at least a minute, so a watch that
gave up after 40 polls ended a run polled every second in ``FaultTimeout`` while the window was still
open. The synthesized definition is executed in moto (``poll_s: 0``, which the watch counts like 1 s);
the budget's arithmetic is the JSONata of ``Watch experiments`` evaluated for several poll intervals.
"""

from __future__ import annotations

import math

import jsonata
import pytest

from infra import constants as c
from infra.fault_automation import REDELIVER_TIMEOUT_S
from infra.state_machine.faults import watch_expression, watch_seconds
from tests.infra import test_state_machine as sm
from tests.infra.test_fault_schedule import entered

definition, zero_waits, run_gate = sm.definition, sm.zero_waits, sm.run_gate
experiment_status, happy_path = sm.experiment_status, sm.happy_path

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def watch_s(synth) -> int:
    """The watch's time for the default stack: its observation window plus the margin."""
    return watch_seconds(synth.stack.faults.experiments)


def test_the_watch_may_last_the_longest_experiment_plus_the_margin(synth, watch_s):
    window = synth.stack.faults.observation_window_s
    assert window >= c.OBSERVATION_WINDOW_MIN_S
    # The default config's longest experiment is the duplicate delivery's: its automation's maxDuration
    # (infra.fault_automation) before the observation window; a stop-task's is the window alone.
    assert watch_s == REDELIVER_TIMEOUT_S + 60 + window + c.EXPERIMENT_WATCH_MARGIN_S


def test_an_experiment_polled_every_second_through_its_observation_window_completes(run_gate, watch_s):
    # 75 one-second polls: past the old fixed bound of 40 and past the one-minute window.
    polls = 75
    assert 40 < polls < watch_s
    responses = happy_path(**{"Get kill-gateway": experiment_status(*["running"] * polls, "completed")})
    ex = run_gate("watch-window", responses)
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    assert ex.calls.count("Get kill-gateway") == polls + 1
    assert entered(ex, "Wait for load end")[0]["watch"] == {"seconds": watch_s, "max_polls": watch_s}


def test_an_experiment_that_never_ends_is_a_fault_timeout_once_the_watch_time_is_spent(run_gate, watch_s):
    responses = happy_path(**{"Get kill-gateway": experiment_status("running")})
    ex = run_gate("watch-forever", responses)
    assert ex.status == "FAILED" and ex.error == "GateRunFailed"
    assert ex.cause.startswith("FaultTimeout"), ex.cause
    # One poll per counted second, then the one that finds the budget spent.
    assert ex.calls.count("Get kill-gateway") == watch_s + 1
    assert {f"Stop experiment {f}" for f in sm.FAULTS} <= set(ex.calls)


@pytest.mark.parametrize("poll_s", [0, 1, 2, 15, 16, 3600])
def test_the_watch_counts_its_time_in_polls_of_the_execution_s_interval(poll_s: int):
    out = jsonata.Jsonata(watch_expression(240)[3:-3])
    out.assign("states", {"input": {"waits": {"poll_s": poll_s}, "kept": True}})
    result = out.evaluate(None)
    assert result["kept"] is True and result["loop"] == {"n": 0}
    assert result["watch"] == {"seconds": 240, "max_polls": math.ceil(240 / max(poll_s, 1))}
