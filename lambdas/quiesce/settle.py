"""The quiesce step's work: :func:`resgate.evidence.quiesce.wait_quiet`, the function ``resgate run``'s
quiesce calls, with the target's ECS services as the health probe and the target's database and brokers
(the same secret and bootstrap as integrity and replay) as the drained probe.

Event (besides the run fields of :class:`lambdas.common.event.RunEvent`)::

    {
      "cluster": "pb-cluster",                              # ECS cluster of the target services
      "services": {"gateway": "pb-gateway", ...},           # gate config name -> ECS service name
      "consumer_groups": [{"group": "g", "topics": ["t"]}], # the config's quiesce.consumer_groups
      "drained_queries": ["select count(*) ..."],           # the config's quiesce.drained_queries
      "timeout_s": 75,                                      # the wait's bound ($.waits.quiesce_s)
      "poll_s": 2                                           # optional
    }

A service is healthy now when it runs its desired count of tasks and each of them counts as healthy by
the timeline's rule (:meth:`lambdas.timeline.health.ServiceView.healthy_at`: a steady state after its
start, or no health check), so quiesce and recovery's ``health.jsonl`` mean the same by healthy. The wait
is bounded by ``timeout_s`` and by :data:`MAX_WAIT_S` (the function's own timeout less a margin). Output:
:meth:`resgate.evidence.quiesce.QuiesceResult.to_dict`, which the state machine hands to integrity and
replay as their ``quiesce``. Invalid input raises ConfigError before anything is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lambdas.common.aws import pages
from lambdas.common.event import RunEvent
from lambdas.common.secrets import db_secret_arn, dsn_from_secret, kafka_bootstrap
from lambdas.common.sources import kafka_settings
from lambdas.timeline.health import ServiceView, describe_services, describe_tasks
from lambdas.timeline.inputs import _name
from resgate.config.model import ConsumerGroup
from resgate.contract.errors import ConfigError
from resgate.evidence.quiesce import QuiesceResult, drained_lag, wait_quiet
from resgate.sections.fields import Section

DEFAULT_POLL_S = 2.0
# The wait's upper bound: the function's timeout (900 s, infra.gate_function.SIZING) less a margin
# for the answer.
MAX_WAIT_S = 840.0


@dataclass(frozen=True)
class QuiesceInputs:
    """The quiesce event's own fields (module docstring), validated."""

    cluster: str
    services: dict[str, str]
    groups: tuple[ConsumerGroup, ...]
    drained_queries: tuple[str, ...]
    timeout_s: float
    poll_s: float

    @classmethod
    def from_event(cls, event: RunEvent) -> QuiesceInputs:
        cluster = _name(event.get("cluster"), "event.cluster")
        services_in = event.mapping("services") or {}
        services = {str(k): _name(v, f"event.services.{k}") for k, v in services_in.items()}
        groups_in = event.get("consumer_groups") or []
        if not isinstance(groups_in, list):
            raise ConfigError("must be a list", where="event.consumer_groups")
        groups = []
        for i, item in enumerate(groups_in):
            cg = Section(item, f"event.consumer_groups[{i}]")
            groups.append(ConsumerGroup(group=cg.str("group"), topics=cg.str_list("topics")))
            cg.done()
        queries = event.get("drained_queries") or []
        if not isinstance(queries, list) or not all(isinstance(q, str) and q.strip() for q in queries):
            raise ConfigError("must be a list of SQL queries", where="event.drained_queries")
        timeout_s = event.number("timeout_s")
        if timeout_s is None or timeout_s < 0:
            raise ConfigError(f"must be a number >= 0, got {timeout_s!r}", where="event.timeout_s")
        poll_s = event.number("poll_s", positive=True) or DEFAULT_POLL_S
        return cls(cluster, services, tuple(groups), tuple(queries), timeout_s, poll_s)


def services_healthy(ecs: Any, cluster: str, services: Mapping[str, str]) -> bool:
    """True when every service runs its desired count of tasks and each counts as healthy (module)."""
    if not services:
        return True
    described = describe_services(ecs, cluster, list(services.values()))
    for name, ecs_name in services.items():
        arns: list[str] = []
        for page in pages(
            f"list the running tasks of ECS service {ecs_name} in {cluster}",
            ecs,
            "list_tasks",
            cluster=cluster,
            serviceName=ecs_name,
            desiredStatus="RUNNING",
        ):
            arns += page.get("taskArns") or []
        tasks, _ = describe_tasks(ecs, cluster, arns)
        running = [t for t in tasks if t.left is None]
        view = ServiceView.from_service(name, described[ecs_name], tasks)
        if len(running) < view.desired_count or any(view.healthy_at(t) is None for t in running):
            return False
    return True


def quiesce(run: RunEvent, *, ecs: Any) -> QuiesceResult:
    """Wait until the target is healthy and its data drained (bounded; module docstring)."""
    inputs = QuiesceInputs.from_event(run)
    bootstrap = kafka_bootstrap(run)
    if inputs.groups and not bootstrap:
        raise ConfigError("is required to read the consumer groups' lag", where="event.kafka_bootstrap")
    kafka = kafka_settings(run)
    dsn = dsn_from_secret(db_secret_arn(run)) if inputs.drained_queries else ""
    return wait_quiet(
        lambda: services_healthy(ecs, inputs.cluster, inputs.services),
        lambda: drained_lag(
            bootstrap or "", inputs.groups, dsn=dsn, drained_queries=inputs.drained_queries, kafka=kafka
        ),
        min(inputs.timeout_s, MAX_WAIT_S),
        poll_s=inputs.poll_s,
    )
