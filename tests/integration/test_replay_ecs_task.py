"""Replay through the ECS-task rebuild, run locally: the task's container command as a subprocess with the
environment an ECS task would get (the target's own code, as its image runs it), through the same runner
interface the replay Lambda's ECS runner implements."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from resgate.checks.replay import RebuildJob, check, gather, run_container_locally
from resgate.checks.result import UNKNOWN
from tests.integration.test_replay import FIXTURE, FIXTURE_PATH, _config, _history, _shadow_schemas, _world

pytestmark = pytest.mark.integration
TASK = {"task_definition": "fixture-projector", "container": "projector"}


@pytest.fixture
def world(pg_dsn: str, kafka_bootstrap: str, new_topic: Callable[..., str]) -> str:
    topic = new_topic(partitions=3)
    _world(pg_dsn, kafka_bootstrap, topic, _history())
    return topic


def test_an_ecs_task_rebuild_runs_its_container_command_locally_and_replays_exactly(
    pg_dsn: str, kafka_bootstrap: str, world: str
) -> None:
    task = {**TASK, "command": [sys.executable, FIXTURE_PATH, "correct"]}
    config = _config(world, {"ecs_task": task, "timeout_s": 60})
    findings = gather(pg_dsn, config, bootstrap=kafka_bootstrap, run_id="ecs-local")
    result = check(findings, config.thresholds)
    assert result.valid is True, result.to_dict()
    assert findings.models[0].rebuilt_rows == 12
    assert _shadow_schemas(pg_dsn) == 0


def test_an_injected_runner_runs_the_task_instead_of_the_local_callable(
    pg_dsn: str, kafka_bootstrap: str, world: str
) -> None:
    # the callable would replay exactly; the task's command fails: the runner must be what ran
    task = {**TASK, "command": [sys.executable, FIXTURE_PATH, "fail"]}
    config = _config(world, {"callable": f"{FIXTURE}:rebuild_correct", "ecs_task": task})
    jobs: list[RebuildJob] = []

    def runner(job: RebuildJob) -> None:
        jobs.append(job)
        run_container_locally(job)

    result = check(gather(pg_dsn, config, bootstrap=kafka_bootstrap, runner=runner))
    assert result.valid == UNKNOWN
    assert "exited with 3" in (result.error or "")
    assert len(jobs) == 1 and jobs[0].schema.startswith("resgate_replay")
    assert jobs[0].env()["RESGATE_KAFKA_BOOTSTRAP"] == kafka_bootstrap
    assert _shadow_schemas(pg_dsn) == 0


def test_without_a_runner_the_callable_stays_the_local_rebuild(
    pg_dsn: str, kafka_bootstrap: str, world: str
) -> None:
    task = {**TASK, "command": [sys.executable, FIXTURE_PATH, "fail"]}
    config = _config(world, {"callable": f"{FIXTURE}:rebuild_correct", "ecs_task": task})
    assert check(gather(pg_dsn, config, bootstrap=kafka_bootstrap)).valid is True
