"""How each fault kind of the gate config runs on AWS (infra/network_faults.py, pure): the FIS action and
its parameters, the kinds FIS cannot run (skipped with a reason), a configuration AWS would run differently
(refused naming the field), and the schedule rule that FIS runs one network action at a time."""

from __future__ import annotations

import pytest

from infra.network_faults import (
    ALL_TRAFFIC,
    NETWORK_ACTION_GAP_S,
    AwsFault,
    Skipped,
    check_network_schedule,
    plan_fault,
)
from resgate.config.schema import load_config_text
from resgate.contract.errors import ConfigError

SERVICE_TAG = "aws:ecs:serviceName"
ECS = {"gateway": "pb-gateway", "matcher": "pb-matcher"}
SLOW = (
    "{name: slow, kind: network_latency, between: [gateway, clients], delay_ms: 200, duration_s: 10, at_s: 6}"
)
_BASE = """
gate: {name: net}
target:
  local:
    services:
      - {name: gateway, command: [python3], expose: true, replicas: 2, zones: [a, b]}
      - {name: matcher, command: [python3], zones: [a]}
load: {duration_s: 200, baseline_s: 5}
faults:
%s
"""


def _faults(*bodies: str):
    return load_config_text(_BASE % "\n".join(f"  - {b}" for b in bodies), "gate.yaml").faults


def _plan(body: str) -> AwsFault | Skipped:
    return plan_fault(_faults(body)[0], ecs_services=ECS, region="us-east-1", service_tag=SERVICE_TAG)


def test_a_partition_from_postgres_is_a_blackhole_of_its_port_on_every_task_of_the_service():
    p = _plan("{kind: network_partition, between: [gateway, postgres], duration_s: 30, at_s: 6}")
    assert isinstance(p, AwsFault) and p.network
    assert p.template_file == "task_network_blackhole_port.json"
    assert p.selection_mode == "ALL" and p.service == "pb-gateway"
    assert p.service_tags == {SERVICE_TAG: "pb-gateway"}
    assert p.values == {"DURATION": "PT30S", "PORT": "5432", "TRAFFIC_TYPE": "egress"}


def test_a_partition_from_clients_drops_the_services_own_port_inbound():
    p = _plan("{kind: network_partition, between: [gateway, clients], port: 8080, duration_s: 5, at_s: 6}")
    assert isinstance(p, AwsFault)
    assert p.values["PORT"] == "8080" and p.values["TRAFFIC_TYPE"] == "ingress"


def test_a_partition_from_clients_without_a_port_is_refused_naming_the_field():
    with pytest.raises(ConfigError) as e:
        _plan("{kind: network_partition, between: [gateway, clients], duration_s: 5, at_s: 6}")
    assert e.value.where == "faults.network_partition-1.port"


def test_mode_refuse_has_no_fis_equivalent_and_is_refused_naming_the_field():
    with pytest.raises(ConfigError) as e:
        _plan("{kind: network_partition, between: [gateway, postgres], mode: refuse, duration_s: 5, at_s: 6}")
    assert e.value.where == "faults.network_partition-1.mode"
    assert "no FIS equivalent" in str(e.value) and "mode: hang" in str(e.value)


def test_latency_maps_delay_and_jitter_and_defaults_to_all_the_tasks_traffic():
    p = _plan(
        "{kind: network_latency, between: [gateway, clients], delay_ms: 250, jitter_ms: 20,"
        " duration_s: 5, at_s: 6}"
    )
    assert isinstance(p, AwsFault)
    assert p.template_file == "task_network_latency.json"
    assert p.values == {"DURATION": "PT5S", "DELAY_MS": "250", "JITTER_MS": "20", "SOURCES": ALL_TRAFFIC}
    assert p.warnings == []


def test_packet_loss_to_a_dependency_without_sources_warns_that_it_hits_all_traffic():
    p = _plan("{kind: packet_loss, between: [gateway, postgres], percent: 20, duration_s: 5, at_s: 6}")
    assert isinstance(p, AwsFault)
    assert p.values["LOSS_PERCENT"] == "20" and p.values["SOURCES"] == ALL_TRAFFIC
    assert len(p.warnings) == 1 and "sources" in p.warnings[0] and "postgres" in p.warnings[0]


def test_sources_narrow_latency_to_the_dependencys_addresses():
    p = _plan(
        "{kind: packet_loss, between: [gateway, postgres], percent: 20, duration_s: 5, at_s: 6,"
        " sources: [10.0.3.0/24, db.internal]}"
    )
    assert isinstance(p, AwsFault)
    assert p.values["SOURCES"] == "10.0.3.0/24,db.internal" and p.warnings == []


def test_zone_loss_stops_every_target_task_in_the_zone_of_the_stacks_region():
    p = _plan("{kind: zone_loss, zone: a, at_s: 6}")
    assert isinstance(p, AwsFault) and not p.network
    assert p.template_file == "zone_loss.json" and p.selection_mode == "ALL"
    assert p.values == {"AVAILABILITY_ZONE": "us-east-1a"}
    assert p.service_tags == {}  # every task of the target (its tags), not one service's


def test_zone_loss_of_one_service_selects_its_tasks_only():
    p = _plan("{kind: zone_loss, zone: a, target: matcher, at_s: 6}")
    assert isinstance(p, AwsFault) and p.service_tags == {SERVICE_TAG: "pb-matcher"}


def test_a_zone_that_is_no_availability_zone_is_refused_naming_the_field():
    text = _BASE.replace("zones: [a, b]", "zones: [east, b]") % "  - {kind: zone_loss, zone: east, at_s: 6}"
    fault = load_config_text(text, "gate.yaml").faults[0]
    with pytest.raises(ConfigError) as e:
        plan_fault(fault, ecs_services=ECS, region="us-east-1", service_tag=SERVICE_TAG)
    assert e.value.where == "faults.zone_loss-1.zone"


@pytest.mark.parametrize(
    "body",
    [
        "{kind: bandwidth, between: [gateway, clients], kbps: 64, duration_s: 5, at_s: 6}",
        "{kind: connection_reset, between: [gateway, clients], at_s: 6}",
        "{kind: rate_limit_spike, percent: 30, duration_s: 5, at_s: 6}",
        "{kind: hang, target: gateway, duration_s: 2, at_s: 6}",
    ],
)
def test_kinds_without_an_fis_action_are_skipped_with_a_reason(body):
    p = _plan(body)
    assert isinstance(p, Skipped) and p.reason


def test_a_db_blip_without_the_targets_database_is_refused_naming_target_aws_database():
    """A db_blip runs on AWS as an RDS reboot or Aurora failover (issue 21): without ``target.aws.database``
    it is refused, not skipped."""
    fault = load_config_text(_BASE % "  - {kind: db_blip, duration_s: 2, at_s: 6}", "gate.yaml").faults[0]
    with pytest.raises(ConfigError) as e:
        plan_fault(fault, ecs_services=ECS, region="us-east-1", service_tag=SERVICE_TAG)
    assert e.value.where == "target.aws.database"


def test_a_long_network_fault_holds_its_whole_duration_the_watch_budgets_it():
    # The experiment watch counts the network action's hold (infra.state_machine.faults.experiment_wait_s):
    # a hold of minutes is planned as it is, not refused.
    p = _plan("{kind: network_latency, between: [gateway, clients], delay_ms: 200, duration_s: 150, at_s: 6}")
    assert isinstance(p, AwsFault) and p.values["DURATION"] == "PT2M30S"


def test_two_network_faults_that_would_hold_at_once_are_refused_naming_both():
    faults = _faults(
        SLOW,
        "{name: lossy, kind: packet_loss, between: [matcher, kafka], percent: 10, duration_s: 5, at_s: 12}",
    )
    with pytest.raises(ConfigError) as e:
        check_network_schedule(faults)
    assert "slow" in str(e.value) and "lossy" in str(e.value)
    assert e.value.where == "faults.lossy.at_s"


def test_network_faults_need_the_gap_between_them_and_other_kinds_do_not_count():
    ok = _faults(
        SLOW,
        "{name: kill, kind: stop_task, target: gateway, at_s: 8}",
        f"{{name: cut, kind: network_partition, between: [gateway, postgres], duration_s: 5,"
        f" at_s: {16 + NETWORK_ACTION_GAP_S}}}",
    )
    check_network_schedule(ok)
    tight = _faults(
        SLOW,
        "{name: cut, kind: network_partition, between: [gateway, postgres], duration_s: 5, at_s: 17}",
    )
    with pytest.raises(ConfigError, match="slow"):
        check_network_schedule(tight, where="profiles.nightly.faults")


def test_a_network_fault_5_s_after_the_previous_one_is_refused_and_10_s_after_is_accepted():
    """The ECS fault-injection endpoints take one request per 5 s per container and answer 409 to a fault
    that conflicts with a running one, and FIS's SSM document can run a few seconds past the action's
    duration (Amazon ECS developer guide, "Amazon ECS fault injection endpoints"; FIS user guide, "Use the
    AWS FIS aws:ecs:task actions"): 5 s after the previous fault's end is too close, 10 s is the boundary."""
    at_5 = _faults(
        SLOW, "{name: cut, kind: network_partition, between: [gateway, postgres], duration_s: 5, at_s: 21}"
    )
    with pytest.raises(ConfigError) as e:
        check_network_schedule(at_5)
    assert e.value.where == "faults.cut.at_s"
    assert "409" in str(e.value) and "at_s >= 26" in str(e.value)
    just_before = _faults(
        SLOW, "{name: cut, kind: network_partition, between: [gateway, postgres], duration_s: 5, at_s: 25.9}"
    )
    with pytest.raises(ConfigError):
        check_network_schedule(just_before)
    check_network_schedule(
        _faults(
            SLOW,
            "{name: cut, kind: network_partition, between: [gateway, postgres], duration_s: 5, at_s: 26}",
        )
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            "{kind: packet_loss, between: [gateway, postgres], percent: 20, duration_s: 5, at_s: 6,"
            " sources: []}",
            "faults[0].sources",
        ),
        (
            "{kind: network_partition, between: [gateway, clients], port: 70000, duration_s: 5, at_s: 6}",
            "faults[0].port",
        ),
    ],
)
def test_the_aws_fields_of_a_network_fault_are_validated_with_the_config(body, field):
    with pytest.raises(ConfigError) as e:
        _faults(body)
    assert str(e.value).startswith(field)
