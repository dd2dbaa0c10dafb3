"""A leader loss on AWS, its evidence path through the timeline Lambda: the load task uploaded the samples
of the target's replicas around the fault (``leader_samples.jsonl``, one ``leader_samples`` row per leader
loss, its detail :meth:`resgate.runner.leader.LeaderSampler.record`), and the timeline Lambda adds them to
``faults.jsonl`` as the local runner records them, where the recovery check's leader judgement reads
them. S3 is moto; ECS is botocore's Stubber, as in test_timeline_handler."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

import lambdas.timeline.handler as timeline
from resgate.checks.recovery.leader import LeaderObservation, leader_figures
from tests.functional.support import REGION, load_event
from tests.functional.test_timeline_handler import T0, StubbedAws, service, task

AT = T0 + 100


def leader_row(**changes: Any) -> dict[str, Any]:
    """The row the load task wrote for a leader loss at ``AT``: m1 led under token 3, paused, m2 took over
    under token 4 two seconds later."""
    detail = {
        "service": "matcher",
        "group": None,
        "deposed": "m1",
        "deposed_token": 3,
        "started_ts": AT - 5,
        "ended_ts": AT + 40,
        "samples": [
            {"ts": AT - 5, "replica": "m1", "answered": True, "leader": 1, "token": 3, "ready": True},
            {"ts": AT - 5, "replica": "m2", "answered": True, "leader": 0, "token": 3, "ready": False},
            {"ts": AT + 0.5, "replica": "m1", "answered": True, "leader": 0, "token": 3, "ready": False},
            {"ts": AT + 2, "replica": "m2", "answered": True, "leader": 1, "token": 4, "ready": True},
        ],
        "max_leading_heartbeat_age_s": {"m1": 1.0, "m2": 0.4},
        "restarts": {"m1": 0, "m2": 0},
        "truncated": False,
    }
    row = {"ts": AT + 40, "fault_id": "lose_lease", "kind": "leader_loss", "target": "matcher"}
    return {**row, "event": "leader_samples", "detail": detail, **changes}


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubbedAws]:
    ecs = boto3.client("ecs", region_name=REGION)
    fis = boto3.client("fis", region_name=REGION)
    aws = StubbedAws(ecs=ecs, fis=fis, ecs_stub=Stubber(ecs), fis_stub=Stubber(fis))
    monkeypatch.setattr(timeline, "client", {"ecs": ecs, "fis": fis}.__getitem__)
    with aws.ecs_stub, aws.fis_stub:
        yield aws
        aws.ecs_stub.assert_no_pending_responses()
        aws.fis_stub.assert_no_pending_responses()


LEADER_LOSS = {"lose_lease": {"name": "lose_lease", "kind": "leader_loss", "target": "gateway"}}
"""A configured leader loss (not started here: no experiment, so FIS is not asked)."""


def run_timeline(
    evidence: Any, lambda_context: Any, stubbed: StubbedAws, faults: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    stubbed.fleet([task("aaaa1111", -300)], service([-290]))
    event = load_event("timeline", faults=LEADER_LOSS if faults is None else faults, experiments={})
    timeline.handler(event, lambda_context)
    return [json.loads(line) for line in evidence.get("faults.jsonl").splitlines() if line.strip()]


def test_the_timeline_lambda_attaches_the_load_tasks_leader_samples_as_the_faults_event(
    evidence, lambda_context, stubbed
) -> None:
    evidence.put_jsonl("leader_samples.jsonl", [leader_row()])
    faults = run_timeline(evidence, lambda_context, stubbed)
    assert [(f["fault_id"], f["kind"], f["event"], f["ts"]) for f in faults] == [
        ("lose_lease", "leader_loss", "leader_samples", AT + 40)
    ]
    obs = LeaderObservation.from_event(faults[0])
    assert (obs.deposed, obs.deposed_token, len(obs.samples)) == ("m1", 3, 4)
    figures = leader_figures(obs, AT)
    assert (figures["time_to_pause_s"], figures["time_to_leader_s"], figures["new_leader"]) == (
        0.5,
        2.0,
        "m2",
    )


def test_the_timeline_lambda_leaves_out_lines_of_leader_samples_that_are_not_a_leader_losss_samples(
    evidence, lambda_context, stubbed
) -> None:
    evidence.put_jsonl(
        "leader_samples.jsonl",
        [
            leader_row(kind="overload"),
            leader_row(event="injected"),
            leader_row(fault_id=""),
            leader_row(detail=None),
        ],
    )
    assert run_timeline(evidence, lambda_context, stubbed) == []


def test_without_the_leader_samples_file_the_timeline_has_no_leader_samples(
    evidence, lambda_context, stubbed
):
    assert run_timeline(evidence, lambda_context, stubbed) == []


def test_a_run_without_a_leader_loss_never_reads_the_leader_samples(evidence, lambda_context, stubbed):
    """Its timeline role has no grant to (the stack grants the read only with a leader loss), so a HeadObject
    there would be a 403 on AWS and fail every such run; a stray file is not read either."""
    evidence.put_jsonl("leader_samples.jsonl", [leader_row()])
    assert run_timeline(evidence, lambda_context, stubbed, faults={}) == []
