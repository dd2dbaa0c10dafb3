"""How each fault kind of the gate config runs on AWS (infra/network_faults.py, pure): the FIS action and
its parameters (a hang as a blackhole of the service's port, a Kafka latency on the clients' tasks), the kinds
FIS cannot run and a configuration AWS would run differently (both refused naming the field and why), and the
schedule rule that FIS runs one network action at a time (AWS FIS Actions reference:
https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html)."""

from __future__ import annotations

import pytest

from infra.data_faults import FaultResources
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
    ("body", "name"),
    [
        ("{kind: bandwidth, between: [gateway, clients], kbps: 64, duration_s: 5, at_s: 6}", "bandwidth-1"),
        ("{kind: connection_reset, between: [gateway, clients], at_s: 6}", "connection_reset-1"),
        ("{kind: rate_limit_spike, percent: 30, duration_s: 5, at_s: 6}", "rate_limit_spike-1"),
    ],
)
def test_kinds_no_fis_action_runs_are_refused_naming_the_kind_and_why(body, name):
    """No silent skip (issue 21): FIS's ECS task network actions are blackhole-port, latency and packet-loss
    (AWS FIS Actions reference, https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html):
    none limits bandwidth or resets connections, and FIS cannot make an ALB answer 429s."""
    with pytest.raises(ConfigError) as e:
        _plan(body)
    assert e.value.where == f"faults.{name}.kind"
    assert "cannot run on AWS" in str(e.value) and "local gate only" in str(e.value)


def test_a_hang_freezes_the_traffic_to_the_services_port_on_its_percent_of_tasks_for_its_duration():
    """AWS FIS Actions reference: no action pauses a process (``aws:ecs:task-kill-process`` sends SIGTERM or
    SIGKILL); ``aws:ecs:task-network-blackhole-port`` drops a port's ``ingress`` packets for ``duration``."""
    p = _plan("{kind: hang, target: gateway, percent: 50, port: 8080, duration_s: 2.5, at_s: 6}")
    assert isinstance(p, AwsFault) and p.network
    assert p.template_file == "task_network_blackhole_port.json"
    assert p.selection_mode == "PERCENT(50)" and p.service_tags == {SERVICE_TAG: "pb-gateway"}
    assert p.values == {"DURATION": "PT3S", "PORT": "8080", "TRAFFIC_TYPE": "ingress"}
    assert p.task_services == ("pb-gateway",)


def test_a_hang_without_the_port_it_freezes_is_refused_naming_the_port():
    with pytest.raises(ConfigError) as e:
        _plan("{kind: hang, target: gateway, duration_s: 2, at_s: 6}")
    assert e.value.where == "faults.hang-1.port"
    assert "aws:ecs:task-kill-process" in str(e.value) and "blackhole-port" in str(e.value)


@pytest.mark.parametrize(("percent", "selection"), [(1, "PERCENT(1)"), (100, "PERCENT(100)")])
def test_a_hang_selects_one_to_a_hundred_percent_of_the_tasks(percent, selection):
    p = _plan(f"{{kind: hang, target: gateway, percent: {percent}, port: 80, duration_s: 2, at_s: 6}}")
    assert isinstance(p, AwsFault) and p.selection_mode == selection


def test_a_hang_of_no_task_is_refused_naming_its_percent():
    with pytest.raises(ConfigError) as e:
        _plan("{kind: hang, target: gateway, percent: 0.4, port: 80, duration_s: 2, at_s: 6}")
    assert e.value.where == "faults.hang-1.percent"


MSK = ",".join(f"b-{i}.trading.abc.c2.kafka.us-east-1.amazonaws.com:9098" for i in (1, 2))
KAFKA = FaultResources(kafka_bootstrap=MSK)
LATENCY = "{kind: kafka_latency, broker: 2, rtt_ms: 150, duration_s: 4, at_s: 6}"


def _kafka_plan(
    body: str, resources: FaultResources = KAFKA, ecs: dict[str, str] = ECS
) -> AwsFault | Skipped:
    fault = _faults(body)[0]
    return plan_fault(
        fault, ecs_services=ecs, region="us-east-1", service_tag=SERVICE_TAG, resources=resources
    )


def test_kafka_latency_delays_every_client_tasks_traffic_to_its_broker_by_the_round_trip():
    """AWS FIS Actions reference, ``aws:ecs:task-network-latency``: egress latency to ``sources`` (IPv4
    addresses, CIDR blocks or domain names, comma-separated without spaces); FIS has no MSK latency action."""
    p = _kafka_plan(LATENCY)
    assert isinstance(p, AwsFault) and p.network
    assert p.template_file == "task_network_latency.json"
    assert p.selection_mode == "ALL" and p.service_tags == {}  # every task of the target: all are clients
    assert p.task_services == ("pb-gateway", "pb-matcher")
    assert p.values == {
        "DURATION": "PT4S",
        "DELAY_MS": "150",
        "JITTER_MS": "0",
        "SOURCES": "b-2.trading.abc.c2.kafka.us-east-1.amazonaws.com",
    }
    assert p.warnings == []


def test_kafka_latency_delays_every_bootstrap_broker_with_a_warning_when_none_is_named_after_its_broker():
    p = _kafka_plan(LATENCY, FaultResources(kafka_bootstrap="10.0.1.5:9092,10.0.2.5:9092"))
    assert isinstance(p, AwsFault) and p.values["SOURCES"] == "10.0.1.5,10.0.2.5"
    (warning,) = p.warnings
    assert "every bootstrap broker" in warning and "not only broker 2" in warning


def test_kafka_latency_without_the_bootstrap_brokers_is_refused_naming_the_context_key():
    with pytest.raises(ConfigError) as e:
        _kafka_plan(LATENCY, FaultResources())
    assert e.value.where == "context.kafka_bootstrap"


def test_kafka_latency_without_clients_on_ecs_is_refused_naming_the_targets_services():
    with pytest.raises(ConfigError) as e:
        _kafka_plan(LATENCY, KAFKA, {})
    assert e.value.where == "target.aws.services"


def test_kafka_latency_of_no_delay_is_refused_naming_rtt_ms():
    with pytest.raises(ConfigError) as e:
        _kafka_plan("{kind: kafka_latency, rtt_ms: 0, duration_s: 4, at_s: 6}")
    assert e.value.where == "faults.kafka_latency-1.rtt_ms"


def test_a_hang_and_a_kafka_latency_take_their_turn_among_the_network_actions():
    faults = _faults(
        "{name: freeze, kind: hang, target: gateway, port: 80, duration_s: 5, at_s: 6}",
        "{name: slow, kind: kafka_latency, rtt_ms: 100, duration_s: 5, at_s: 15}",
    )
    with pytest.raises(ConfigError) as e:
        check_network_schedule(faults)
    assert e.value.where == "faults.slow.at_s" and "freeze" in str(e.value)


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


@pytest.mark.parametrize(("port", "ok"), [(1, True), (65535, True), (0, False), (65536, False)])
def test_a_hangs_port_is_a_tcp_port(port, ok):
    body = f"{{kind: hang, target: gateway, port: {port}, duration_s: 2, at_s: 6}}"
    if ok:
        assert _faults(body)[0].params["port"] == port
        return
    with pytest.raises(ConfigError) as e:
        _faults(body)
    assert "port" in e.value.where


def test_a_kind_with_no_aws_form_yet_is_refused_not_skipped():
    fault = _faults("{kind: stop_task, target: gateway, at_s: 6}")[0]
    unknown = type(fault)(name="new", kind="brand_new_kind", at_s=6.0, target="gateway", params={})
    with pytest.raises(ConfigError) as e:
        plan_fault(unknown, ecs_services=ECS, region="us-east-1", service_tag=SERVICE_TAG)
    assert e.value.where == "faults.new.kind" and "no AWS implementation" in str(e.value)
