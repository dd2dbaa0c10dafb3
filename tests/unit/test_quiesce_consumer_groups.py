"""The quiesce list of consumer groups judged against the groups the target's services name on /health.

paperbroker's matcher with ``PB_SYMBOL_GROUPS=N`` commits to ``paperbroker-matcher`` when N is 1 and to
``paperbroker-matcher.symbols-<i>-of-<N>`` per group when N > 1; a quiesce list that keeps the one-group
name would wait its whole timeout for a group nobody commits to, and one that names only some groups would
judge a state that has not settled. Each rule at its boundary: N = 1 and N = 2, listed and not listed.
"""

from __future__ import annotations

from typing import Any

import pytest

from resgate.config.model import ConsumerGroup, GateConfig
from resgate.config.schema import parse_config
from resgate.contract.errors import ConfigError, ConfigErrors
from resgate.runner.consumer_groups import (
    advertised_by,
    advertised_groups,
    preflight_consumer_groups,
    quiesce_group_errors,
)
from resgate.sections.yamlpos import Located

ORDERS, EXECUTIONS = "pb.orders", "pb.executions"
PROJECTOR = {"paperbroker-projector": [ORDERS, EXECUTIONS]}


def _matcher(n: int) -> dict[str, list[str]]:
    """What the matcher with ``PB_SYMBOL_GROUPS=n`` names on /health."""
    if n == 1:
        return {"paperbroker-matcher": [ORDERS]}
    return {f"paperbroker-matcher.symbols-{i}-of-{n}": [ORDERS] for i in range(n)}


def _target(n: int) -> dict[str, Any]:
    return {"gateway": {}, "matcher": _matcher(n), "projector": PROJECTOR}


def _listed(*groups: str) -> list[ConsumerGroup]:
    return [ConsumerGroup(g, [ORDERS, EXECUTIONS] if "projector" in g else [ORDERS]) for g in groups]


def _wheres(listed: list[ConsumerGroup], advertised: dict[str, Any]) -> list[str | None]:
    return [e.where for e in quiesce_group_errors(listed, advertised)]


def test_one_symbol_group_with_the_matcher_and_projector_listed_is_right():
    assert _wheres(_listed("paperbroker-matcher", "paperbroker-projector"), _target(1)) == []


def test_two_symbol_groups_with_both_groups_listed_is_right():
    listed = _listed("paperbroker-matcher.symbols-0-of-2", "paperbroker-matcher.symbols-1-of-2",
                     "paperbroker-projector")  # fmt: skip
    assert _wheres(listed, _target(2)) == []


def test_two_symbol_groups_with_the_one_group_name_listed_is_an_error_naming_that_entry():
    listed = _listed("paperbroker-matcher", "paperbroker-projector")
    errors = quiesce_group_errors(listed, _target(2))
    assert [e.where for e in errors] == ["quiesce.consumer_groups[0].group"]
    assert "'paperbroker-matcher'" in str(errors[0])
    assert "paperbroker-matcher.symbols-0-of-2, paperbroker-matcher.symbols-1-of-2" in str(errors[0])


def test_one_symbol_group_with_the_per_group_names_listed_is_an_error_naming_each_entry():
    listed = _listed("paperbroker-matcher.symbols-0-of-2", "paperbroker-matcher.symbols-1-of-2")
    assert _wheres(listed, _target(1)) == [
        "quiesce.consumer_groups[0].group",
        "quiesce.consumer_groups[1].group",
    ]


def test_two_symbol_groups_with_one_of_them_listed_is_an_error_naming_the_missing_one():
    listed = _listed("paperbroker-matcher.symbols-0-of-2", "paperbroker-projector")
    errors = quiesce_group_errors(listed, _target(2))
    assert [e.where for e in errors] == ["quiesce.consumer_groups"]
    assert str(errors[0]).endswith("add paperbroker-matcher.symbols-1-of-2")


def test_a_service_none_of_whose_groups_is_listed_is_not_waited_for_by_choice():
    assert _wheres(_listed("paperbroker-matcher"), _target(1)) == []
    assert _wheres(_listed("paperbroker-projector"), _target(2)) == []


def test_a_listed_group_lacking_a_topic_its_service_reads_in_it_is_an_error_naming_its_topics():
    listed = [
        ConsumerGroup("paperbroker-matcher", [ORDERS]),
        ConsumerGroup("paperbroker-projector", [ORDERS]),
    ]
    errors = quiesce_group_errors(listed, _target(1))
    assert [e.where for e in errors] == ["quiesce.consumer_groups[1].topics"]
    assert EXECUTIONS in str(errors[0])
    extra = [ConsumerGroup("paperbroker-matcher", [ORDERS, EXECUTIONS])]  # more topics: more lag, no trap
    assert _wheres(extra, _target(1)) == []


def test_an_unused_name_is_judged_only_when_every_service_named_its_groups():
    listed = _listed("paperbroker-matcher", "paperbroker-projector")
    unknown_gateway = {**_target(2), "gateway": None}  # a service that does not say what it consumes
    assert _wheres(listed, unknown_gateway) == []
    assert _wheres(listed, {}) == []
    assert _wheres(listed, {"gateway": None, "matcher": None}) == []
    consumes_nothing = {"gateway": {}, "matcher": {}, "projector": {}}
    assert _wheres(listed, consumes_nothing) == [
        "quiesce.consumer_groups[0].group",
        "quiesce.consumer_groups[1].group",
    ]


def test_a_health_body_names_groups_only_as_a_map_of_topic_lists():
    assert advertised_groups({"consumer_groups": {"g": ["t"]}}) == {"g": ["t"]}
    assert advertised_groups({"consumer_groups": {}}) == {}
    for body in (None, {}, {"consumer_groups": ["g"]}, {"consumer_groups": {"g": "t"}}):
        assert advertised_groups(body) is None


class _Replica:
    def __init__(self, port: int | None, pid: int | None = 1) -> None:
        self.port, self.pid = port, pid


class _Supervisor:
    def __init__(self, replicas: dict[str, list[_Replica]]) -> None:
        self._replicas = replicas

    def replicas(self, service: str) -> list[_Replica]:
        return self._replicas.get(service, [])


def test_the_preflight_reads_each_running_replica_and_raises_the_first_problem(
    monkeypatch: pytest.MonkeyPatch,
):
    bodies = {1: {"consumer_groups": {}}, 2: {"consumer_groups": _matcher(2)}, 3: {"status": "ok"},
              4: {"consumer_groups": PROJECTOR}, 6: {"consumer_groups": {"ghost": [ORDERS]}}}  # fmt: skip

    def probe(port: int | None, timeout_s: float) -> dict[str, Any] | None:
        assert port is not None, "a replica without a port was probed"
        return bodies.get(port)

    monkeypatch.setattr("resgate.runner.consumer_groups.probe", probe)
    # replica 6 has stopped (no process; its last port answers for something else now): not read
    sup = _Supervisor({"gateway": [_Replica(1)], "matcher": [_Replica(2), _Replica(3), _Replica(None)],
                       "projector": [_Replica(4), _Replica(5), _Replica(6, pid=None)]})  # fmt: skip
    assert advertised_by(sup, ["gateway", "matcher", "projector", "feed"]) == {
        "gateway": {},
        "matcher": _matcher(2),
        "projector": PROJECTOR,
        "feed": None,
    }
    services = [{"name": n, "command": ["x"]} for n in ("gateway", "matcher", "projector")]

    def config(groups: list[tuple[str, list[str]]]) -> GateConfig:
        data = {"gate": {"name": "g"}, "target": {"local": {"services": services}},
                "quiesce": {"consumer_groups": [{"group": g, "topics": t} for g, t in groups]}}  # fmt: skip
        return parse_config(data, Located("gate.yaml", {}))

    preflight_consumer_groups(config([*_matcher(2).items(), *PROJECTOR.items()]), sup)
    with pytest.raises(ConfigError) as e:
        preflight_consumer_groups(config([("paperbroker-matcher", [ORDERS])]), sup)
    assert e.value.where == "quiesce.consumer_groups[0].group"
    # one of the two groups listed beside the one-group name: both problems at once
    with pytest.raises(ConfigErrors) as many:
        preflight_consumer_groups(config([("paperbroker-matcher.symbols-0-of-2", [ORDERS]),
                                          ("paperbroker-matcher", [ORDERS])]), sup)  # fmt: skip
    assert [x.where for x in many.value.errors] == [
        "quiesce.consumer_groups",
        "quiesce.consumer_groups[1].group",
    ]
