"""The matcher's symbol groups without any service: the setting, the split of the symbols, which orders a
group's matcher takes, and the /health figures of a replica over its groups."""

from __future__ import annotations

import time

import pytest

from paperbroker.config import ENV_SYMBOL_GROUPS, MAX_SYMBOL_GROUPS, Settings, load_settings
from paperbroker.lease import DEFAULT_GROUP, group_names, group_of
from paperbroker.matcher import Matcher
from paperbroker.matching import MatchingEngine
from paperbroker.service import HealthState
from resgate.contract.errors import ConfigError

_ENV = {"PB_DSN": "postgresql://x", "PB_KAFKA_BOOTSTRAP": "127.0.0.1:1"}


def test_one_symbol_group_is_the_default_and_the_setting_is_bounded_at_one_and_its_maximum() -> None:
    assert load_settings(_ENV).symbol_groups == 1
    assert load_settings({**_ENV, ENV_SYMBOL_GROUPS: "1"}).symbol_groups == 1
    assert (
        load_settings({**_ENV, ENV_SYMBOL_GROUPS: str(MAX_SYMBOL_GROUPS)}).symbol_groups == MAX_SYMBOL_GROUPS
    )
    for bad in ("0", str(MAX_SYMBOL_GROUPS + 1), "two"):
        with pytest.raises(ConfigError) as e:
            load_settings({**_ENV, ENV_SYMBOL_GROUPS: bad})
        assert e.value.where == ENV_SYMBOL_GROUPS


def test_every_symbol_belongs_to_one_group_by_a_stable_hash() -> None:
    assert group_names(1) == [DEFAULT_GROUP]  # the lease row a single-group matcher always used
    assert group_names(3) == ["symbols-0-of-3", "symbols-1-of-3", "symbols-2-of-3"]
    assert [group_of(s, 2) for s in ("AAPL", "MSFT", "GOOG", "AMZN")] == [0, 1, 0, 0]  # CRC-32, not hash()
    assert group_of("", 2) == 0 and group_of("MSFT", 1) == 0
    with pytest.raises(ValueError):
        group_names(0)


def test_a_group_matcher_takes_only_its_symbols_orders_and_its_events_ids_are_its_own() -> None:
    m = Matcher(Settings(dsn="x", kafka_bootstrap="y", symbol_groups=2), HealthState("matcher"))
    g0, g1 = m.groups
    assert (g0.owns({"symbol": "AAPL"}), g1.owns({"symbol": "AAPL"})) == (True, False)
    assert (g0.owns({"symbol": "MSFT"}), g1.owns({"symbol": "MSFT"})) == (False, True)
    assert g0.owns({}) and not g1.owns({})  # a symbol-less (malformed) event is group 0's to ignore
    assert (g0.group_id, g1.group_id) == (
        "paperbroker-matcher.symbols-0-of-2",
        "paperbroker-matcher.symbols-1-of-2",
    )
    order = {"type": "OrderAccepted", "order_id": "o1", "client_id": "c", "symbol": "AAPL", "side": "buy",
             "qty": 1, "price": "1"}  # fmt: skip
    plain = MatchingEngine().apply_batch([order], set(), 0.0).outputs[0]["event_id"]
    scoped = MatchingEngine(id_scope=g0.group).apply_batch([order], set(), 0.0).outputs[0]["event_id"]
    assert plain != scoped  # the first order rested in each group has arrival 1: the scope keeps ids apart
    single = Matcher(Settings(dsn="x", kafka_bootstrap="y"), HealthState("matcher")).groups[0]
    assert (single.group, single.group_id, single.id_scope) == (DEFAULT_GROUP, "paperbroker-matcher", "")


def test_health_shows_each_groups_figures_and_at_the_top_those_of_a_group_the_replica_leads() -> None:
    health = HealthState("matcher")
    m = Matcher(Settings(dsn="x", kafka_bootstrap="y", replica="m-a", symbol_groups=2), health)
    body = health.body()
    assert (body["ready"], body["leader"], body["fencing_token"], body["lease_group"]) == (
        False, 0, None, "symbols-0-of-2"
    )  # fmt: skip
    g1 = m.groups[1]
    g1.lease.granted(4, time.monotonic())
    g1.state.set_ready()
    g1.state.details["lag"] = 3
    body = health.body()
    assert (body["ready"], body["leader"], body["fencing_token"], body["lease_group"]) == (
        True, 1, 4, "symbols-1-of-2"
    )  # fmt: skip
    assert (
        body["groups"]["symbols-0-of-2"]["leader"] == 0 and body["groups"]["symbols-0-of-2"]["ready"] is False
    )
    assert body["groups"]["symbols-1-of-2"] == {
        **body["groups"]["symbols-1-of-2"],
        "leader": 1,
        "ready": True,
    }
    assert body["lag"] == 3
    g1.lease.lose("renewal failed")  # the lease lapses: not ready at once, whatever the session does
    body = health.body()
    assert (body["ready"], body["leader"], body["groups"]["symbols-1-of-2"]["ready"]) == (False, 0, False)
