"""Two symbol groups on the embedded Postgres and Kafka: one leader per group, and one group's handover.

Two matcher processes with ``PB_SYMBOL_GROUPS=2`` spread the two groups' leases (each leads one); the
leader of one group is paused (SIGSTOP) past its lease while orders of both groups keep coming; the other
replica takes that group too (under a larger token of that group), the paused one is resumed and stays a
standby. The gate's leader sampler follows the lost group: a clean handover, no second leader of it; and
the trades are exactly an uninterrupted single engine's over the same input, symbol by symbol. The
consumer groups each replica names on /health (one per symbol group) are the ones the leaders commit to:
their lag drains to 0 on the broker, while ``paperbroker-matcher`` (the one-group name) keeps the whole
topic as lag, which the gate's quiesce preflight refuses to wait for.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest

from paperbroker.lease import group_names, group_of
from paperbroker.matching import MatchingEngine
from resgate.checks.recovery.leader import LEADER_FAILING_KINDS, LeaderObservation, leader_anomalies
from resgate.config.model import ConsumerGroup
from resgate.evidence.quiesce import consumer_lag
from resgate.runner.consumer_groups import advertised_groups, quiesce_group_errors
from resgate.runner.leader import LeaderSampler, find_leader, probe
from tests.integration import test_paperbroker_matcher as pb_matcher_tests
from tests.integration.test_matcher_lease import _Matchers
from tests.integration.test_paperbroker_matcher import (
    make_topics,
    produce,
    query,
    random_orders,
    read_topic,
    service_env,
    trade_view,
    wait_until,
)

pytestmark = pytest.mark.integration

services = pb_matcher_tests.services  # the shared fixture (subprocess services, killed after the test)

GROUPS = group_names(2)
SYMBOLS = ("DDD", "AAA")  # one symbol in each group (CRC-32 modulo 2: 0 and 1)
PAUSE_S = 8.0  # past the 3 s lease plus the survivor's one-ttl wait before it takes a second group


def _leaders(svcs: list[Any]) -> dict[str, str]:
    """``{group: replica}`` of the groups some running replica says it leads now."""
    out: dict[str, str] = {}
    for s in svcs:
        body = probe(s.port, timeout_s=1.0)
        for group, figures in ((body or {}).get("groups") or {}).items():
            if figures.get("leader") == 1:
                out[group] = s.env["PB_REPLICA"]
    return out


def _spread(svcs: list[Any]) -> dict[str, str] | None:
    """``{group: replica}`` once every group has a leader and no replica leads two, else None."""
    leaders = _leaders(svcs)
    return leaders if len(leaders) == len(GROUPS) and len(set(leaders.values())) == len(GROUPS) else None


def _done(dsn: str, topic: str, n_input: int) -> bool:
    """Every group consumed all ``n_input`` records of ``topic`` and no outbox row is left."""
    rows = query(
        dsn, "SELECT grp, sum(next_offset) FROM matcher_offsets WHERE topic = %s GROUP BY grp", topic
    )
    if {g: int(n) for g, n in rows} != dict.fromkeys(GROUPS, n_input):
        return False
    return query(dsn, "SELECT count(*) FROM matcher_outbox")[0][0] == 0


def test_the_symbols_split_into_groups_by_a_stable_hash_with_one_group_by_default():
    assert [group_of(s, 2) for s in SYMBOLS] == [0, 1]
    assert group_names(1) == ["all-symbols"] and group_of("AAA", 1) == 0
    assert GROUPS == ["symbols-0-of-2", "symbols-1-of-2"]


def test_two_replicas_each_lead_a_group_and_one_takes_over_the_group_of_a_paused_one(pg_dsn, kafka, services):
    prefix, topics = make_topics(kafka, partitions=2)
    history = random_orders(1500, seed=26, symbols=SYMBOLS)
    chunks = [history[:500], history[500:1000], history[1000:]]
    svcs = []
    for name in ("m-a", "m-b"):
        env = service_env(pg_dsn, kafka.bootstrap, prefix)
        env.update(PB_REPLICA=name, PB_SYMBOL_GROUPS="2")
        svcs.append(services("matcher", env))
    spread = wait_until(lambda: _spread(svcs), 30, "each replica leading a group")
    assert sorted(spread) == GROUPS, spread  # one leader per group, a different replica each
    produce(kafka.bootstrap, topics.orders, chunks[0])
    wait_until(lambda: _done(pg_dsn, topics.orders, len(chunks[0])), 30, "the first orders matched")

    sup = _Matchers(svcs)
    leader, token = find_leader(sup, "matcher")
    lost = next(g for g, r in spread.items() if r == leader)
    sampler = LeaderSampler(sup, "matcher")
    sampler.deposed, sampler.deposed_token = leader, token
    sampler.start()
    assert sampler.group == lost  # the sampler follows the group whose leader is lost
    paused = next(s for s in svcs if s.env["PB_REPLICA"] == leader)
    assert paused.proc is not None
    injected = time.time()
    paused.proc.send_signal(signal.SIGSTOP)
    try:
        produce(kafka.bootstrap, topics.orders, chunks[1])
        wait_until(lambda: len(set(_leaders(svcs).values()) - {leader}) == 1 and len(_leaders(svcs)) == 2,
                   PAUSE_S + 10, "the survivor leading both groups")  # fmt: skip
        time.sleep(max(0.0, injected + PAUSE_S - time.time()))
    finally:
        paused.proc.send_signal(signal.SIGCONT)
    produce(kafka.bootstrap, topics.orders, chunks[2])
    sampler.until_ts = time.time() + 3
    sampler.wait(20)
    sampler.finish()
    wait_until(lambda: _done(pg_dsn, topics.orders, len(history)), 30, "every order matched")

    obs = LeaderObservation.from_event({"fault_id": "leader-loss", "detail": sampler.record()})
    figures, anomalies = leader_anomalies(obs, injected, rto_s=30, max_heartbeat_age_s=5)
    assert [a for a in anomalies if a["kind"] in LEADER_FAILING_KINDS or a["kind"] == "no_data"] == []
    assert figures["leader_flip"] and figures["readiness_flip"], figures
    assert figures["new_leader"] != leader and figures["new_token"] > token, figures
    # the resumed replica is a standby of its old group; the other group never changed hands
    assert _leaders(svcs) == dict.fromkeys(GROUPS, figures["new_leader"])
    # fencing held per group: the trades are exactly those of one uninterrupted engine over the same input
    out = read_topic(kafka.bootstrap, topics.executions)
    expected = MatchingEngine().apply_batch(history, set(), now=0.0).outputs
    assert trade_view(out) == trade_view(expected)
    assert len({e["event_id"] for e in out}) == len(out)  # no event id of one group reused by the other

    # the consumer groups each replica names on /health are the ones the leaders commit to: their lag
    # drains, while the one-group name nobody commits to keeps the whole topic as lag (quiesce's trap)
    named = {f"{prefix}.paperbroker-matcher.{g}": [topics.orders] for g in GROUPS}
    assert [advertised_groups(probe(s.port, timeout_s=1.0)) for s in svcs] == [named, named]
    per_group = [ConsumerGroup(g, [topics.orders]) for g in named]
    wait_until(lambda: set(_lag(kafka.bootstrap, per_group).values()) == {0}, 15, "both groups committed")
    one_group = [ConsumerGroup(f"{prefix}.paperbroker-matcher", [topics.orders])]
    assert _lag(kafka.bootstrap, one_group) == {one_group[0].group: len(history)}
    assert quiesce_group_errors(per_group, {"matcher": named}) == []
    assert [e.where for e in quiesce_group_errors(one_group, {"matcher": named})] == [
        "quiesce.consumer_groups[0].group"
    ]


def _lag(bootstrap: str, groups: list[ConsumerGroup]) -> dict[str, int]:
    """Each consumer group's lag on the embedded Kafka (what quiesce waits on)."""
    return asyncio.run(consumer_lag(bootstrap, groups))
