"""Quiesce, the local conductor's side: :func:`resgate.evidence.quiesce.wait_quiet` (the function the
state machine's ``quiesce`` Lambda calls too) with the local supervisor's replicas as the health probe and
the target's embedded (or given) brokers and database as the drained probe."""

from __future__ import annotations

from collections.abc import Callable

from resgate.config.schema import ConsumerGroup
from resgate.evidence.quiesce import QuiesceResult, consumer_lag, drained_lag, pending_rows
from resgate.evidence.quiesce import wait_quiet as wait_settled
from resgate.local.supervisor import Supervisor
from resgate.sections.kafka import KafkaSettings

__all__ = ["QuiesceResult", "consumer_lag", "pending_rows", "wait_quiet"]


def wait_quiet(
    supervisor: Supervisor | None,
    bootstrap: str,
    groups: list[ConsumerGroup],
    timeout_s: float,
    *,
    drained_queries: list[str] | None = None,
    dsn: str = "",
    poll_s: float = 0.5,
    tick: Callable[[str], None] | None = None,
    kafka: KafkaSettings | None = None,
) -> QuiesceResult:
    """Wait until every replica is healthy and the data drained, or ``timeout_s``; ``settled`` means
    drained (see :mod:`resgate.evidence.quiesce`). ``kafka``: how to reach the brokers (default
    PLAINTEXT, the embedded ones)."""
    return wait_settled(
        lambda: supervisor.wait_healthy(0.01) if supervisor is not None else True,
        lambda: drained_lag(bootstrap, groups, dsn=dsn, drained_queries=drained_queries or (), kafka=kafka),
        timeout_s,
        poll_s=poll_s,
        tick=tick,
    )
