"""The FIS twin resolves an ``aws:ecs:task`` target as FIS does (support/fis_twin.py): resource tags, filter
paths in PascalCase over the DescribeTasks output, then the selection mode.

AWS FIS user guide, "Targets for AWS FIS" (https://docs.aws.amazon.com/fis/latest/userguide/targets.html):
"Resource filters" take a path into the resource's Describe output with each element in PascalCase
(``AvailabilityZone``, not ``availabilityZone``); ``selectionMode`` is ``ALL``, ``COUNT(n)`` or
``PERCENT(n)``; with ``emptyTargetResolutionMode: fail`` a target that resolves to nothing fails the
experiment."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.rehearsal.support.fis_twin import FisError, path_value, resolve_targets, select


def _task(n: int, service: str, zone: str, **tags: str) -> dict[str, Any]:
    all_tags = {"app": "pb", "aws:ecs:clusterName": "pb", "aws:ecs:serviceName": service, **tags}
    return {
        "taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/pb/{service}-{n}",
        "availabilityZone": zone,
        "lastStatus": "RUNNING",
        "containers": [{"name": service, "networkInterfaces": [{"privateIpv4Address": f"10.0.0.{n}"}]}],
        "tags": [{"key": k, "value": v} for k, v in all_tags.items()],
        "_service": service,
    }


TASKS = [
    _task(0, "gateway", "us-east-1a"),
    _task(1, "gateway", "us-east-1b"),
    _task(2, "gateway", "us-east-1a"),
    _task(3, "matcher", "us-east-1a"),
]
GATEWAY = {"ResourceType": "aws:ecs:task", "ResourceTags": {"app": "pb", "aws:ecs:serviceName": "gateway"}}


def test_a_filter_path_is_read_in_pascal_case_and_a_camel_case_path_reads_nothing() -> None:
    assert path_value(TASKS[0], "AvailabilityZone") == "us-east-1a"
    assert path_value(TASKS[0], "availabilityZone") is None
    assert path_value(TASKS[0], "LastStatus") == "RUNNING"
    assert path_value(TASKS[0], "Containers") is not None
    assert path_value(TASKS[0], "Missing") is None


def test_a_target_resolves_to_the_tasks_carrying_every_tag() -> None:
    assert [t["_service"] for t in resolve_targets(GATEWAY, TASKS)] == ["gateway"] * 3
    other_app = {**GATEWAY, "ResourceTags": {"app": "other"}}
    assert resolve_targets(other_app, TASKS) == []


def test_a_zone_filter_in_pascal_case_keeps_the_zones_tasks_and_in_camel_case_resolves_nothing() -> None:
    zone = {**GATEWAY, "Filters": [{"Path": "AvailabilityZone", "Values": ["us-east-1a"]}]}
    assert [t["taskArn"][-9:] for t in resolve_targets(zone, TASKS)] == ["gateway-0", "gateway-2"]
    camel = {**GATEWAY, "Filters": [{"Path": "availabilityZone", "Values": ["us-east-1a"]}]}
    assert resolve_targets(camel, TASKS) == []


def test_filters_are_and_ed_and_a_filters_values_or_ed() -> None:
    both = {
        **GATEWAY,
        "Filters": [
            {"Path": "AvailabilityZone", "Values": ["us-east-1a", "us-east-1b"]},
            {"Path": "LastStatus", "Values": ["RUNNING"]},
        ],
    }
    assert len(resolve_targets(both, TASKS)) == 3
    stopped = {**GATEWAY, "Filters": [{"Path": "LastStatus", "Values": ["STOPPED"]}]}
    assert resolve_targets(stopped, TASKS) == []


@pytest.mark.parametrize(
    ("mode", "n", "expected"),
    [
        ("ALL", 3, 3),
        ("COUNT(1)", 3, 1),
        ("COUNT(3)", 3, 3),
        ("COUNT(4)", 3, 3),
        ("PERCENT(50)", 4, 2),
        ("PERCENT(50)", 3, 2),
        ("PERCENT(34)", 3, 2),
        ("PERCENT(33)", 3, 1),
        ("PERCENT(1)", 3, 1),
        ("PERCENT(100)", 3, 3),
    ],
)
def test_the_selection_mode_picks_that_many_of_the_resolved_targets(mode: str, n: int, expected: int) -> None:
    resolved = [{"i": i} for i in range(n)]
    chosen = select(mode, resolved, random.Random(0))
    assert len(chosen) == expected
    assert all(c in resolved for c in chosen) and len({c["i"] for c in chosen}) == expected


def test_an_unknown_selection_mode_is_refused() -> None:
    with pytest.raises(FisError, match="selection mode 'SOME'"):
        select("SOME", [{"i": 0}])
