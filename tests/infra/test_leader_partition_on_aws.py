"""A ``leader_loss`` with ``mode: partition`` on AWS (issue 25, item 5): FIS cannot pick the task that leads,
so the partition is ``aws:ecs:task-network-blackhole-port`` on EVERY task of the target service, egress TCP
on the lease store's port, for ``duration_s`` (infra/network_faults.py). Every replica loses the store while
its sessions stay open: the leader cannot renew and must pause, and after the heal a replica takes the
expired lease with the next token, while an unfenced leader leads beside it
(tests/integration/test_matcher_lease.py, every replica cut). One stack of a gate with such a fault is
synthesized for the module; everything is read from its CloudFormation template."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from infra import constants as c
from infra.network_faults import NETWORK_ACTION_GAP_S, AwsFault, check_network_schedule, plan_fault
from infra.settings import DeploymentSettings
from resgate.config.model import Fault
from resgate.contract.errors import ConfigError
from tests.infra.support.aws_rules import fis_permission_errors
from tests.infra.support.synth import synthesize
from tests.infra.support.validators import fis_template_errors

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
FAULT = (
    "{name: cut-leader, kind: leader_loss, mode: partition, target: matcher, port: 8081, duration_s: 6, "
    "at_s: 20}"
)
CONFIG = """
gate: {{name: pb-lease}}
target:
  environment: dev
  tags: {{app: paperbroker}}
  local:
    services:
      - {{name: gateway, command: [python3], expose: true}}
      - {{name: matcher, command: [python3], replicas: 2, health_path: /health,
         env: {{PB_DSN: "${{pg.dsn}}"}}}}
  aws:
    cluster: pb-cluster
    services: {{gateway: pb-gateway, matcher: pb-matcher}}
    target_tags: {{app: paperbroker}}
load: {{users: 5, duration_s: 60, baseline_s: 5}}
faults:
  - {fault}
checks: {{integrity: false, replay: false}}
"""


def _write(tmp_path: Path, fault: str = FAULT, extra: str = "") -> Path:
    p = tmp_path / "gate.yaml"
    p.write_text(CONFIG.format(fault=fault) + extra)
    return p


def _settings(path: Path) -> DeploymentSettings:
    return DeploymentSettings.from_context({c.CTX_GATE_CONFIG: str(path)}.get, root=ROOT, env={})


@pytest.fixture(scope="module")
def lease(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The stack of a gate whose only fault is a leader loss by partition, synthesized once (no database:
    a partition needs none)."""
    tmp = tmp_path_factory.mktemp("lease")
    path = _write(tmp)
    return synthesize(tmp / "cdk.out", {c.CTX_GATE_CONFIG: str(path)})


def _template(lease: dict[str, Any]) -> dict[str, Any]:
    (props,) = [
        r["Properties"]
        for r in lease["template"]["Resources"].values()
        if r["Type"] == "AWS::FIS::ExperimentTemplate"
    ]
    return props


def test_a_leader_partition_blackholes_the_lease_stores_port_on_every_task_of_the_service(lease):
    """AWS FIS user guide, "AWS FIS Actions reference"
    (https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html),
    ``aws:ecs:task-network-blackhole-port``: target ``Tasks`` (``aws:ecs:task``), parameters ``duration``,
    ``port``, ``protocol`` (tcp|udp), ``trafficType`` (ingress|egress), ``useEcsFaultInjectionEndpoints``.
    Egress TCP 5432 (Postgres, the lease store) of ALL the matcher tasks (no leader can be chosen) for the
    fault's 6 s; the template passes botocore's CreateExperimentTemplate validation."""
    assert lease["error"] is None, lease["error"]
    props = _template(lease)
    (action,) = [a for a in props["Actions"].values() if a["ActionId"] != "aws:fis:wait"]
    assert action["ActionId"] == "aws:ecs:task-network-blackhole-port"
    assert action["Parameters"] == {
        "duration": "PT6S",
        "port": "5432",
        "protocol": "tcp",
        "trafficType": "egress",
        "useEcsFaultInjectionEndpoints": "true",
    }
    ((key, target_name),) = action["Targets"].items()
    target = props["Targets"][target_name]
    assert key == "Tasks" and target["ResourceType"] == "aws:ecs:task"
    assert target["SelectionMode"] == "ALL"
    assert target["ResourceTags"] == {
        "app": "paperbroker",
        c.ECS_TAG_CLUSTER: "pb-cluster",
        c.ECS_TAG_SERVICE: "pb-matcher",
    }
    assert props["StopConditions"] and all(
        s["Source"] == "aws:cloudwatch:alarm" for s in props["StopConditions"]
    )
    assert fis_template_errors(lease["template"]) == []


def test_the_fis_role_gets_the_blackholes_permissions_and_nothing_of_a_database(lease):
    """The FIS Actions reference lists for ``aws:ecs:task-network-blackhole-port`` ``ecs:DescribeTasks``,
    ``ssm:SendCommand``, ``ssm:ListCommands``, ``ssm:CancelCommand``: the role allows each (evaluated with
    its resource and condition keys); a partition reboots nothing, so no ``rds:`` action is granted."""
    assert fis_permission_errors(lease["template"]) == []
    actions = set()
    for r in lease["template"]["Resources"].values():
        if r["Type"] == "AWS::IAM::Policy" and "FaultsRole" in json.dumps(r["Properties"]["Roles"]):
            for s in r["Properties"]["PolicyDocument"]["Statement"]:
                acts = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
                actions.update(acts)
    assert {"ecs:DescribeTasks", "ssm:SendCommand", "ssm:ListCommands", "ssm:CancelCommand"} <= actions
    assert not [a for a in actions if a.startswith("rds:")], actions


def test_the_matcher_task_definitions_are_checked_for_fis_network_actions_before_a_run(lease):
    # README "What the target must provide": enableFaultInjection, pidMode task, the SSM agent sidecar.
    assert lease["stack"].faults.network_services == ["pb-matcher"]
    assert lease["stack"].faults.preflight_function is not None


def test_the_synth_warns_that_every_replica_is_cut_not_the_leader_alone(lease):
    warnings = [str(m.data) for m in lease["stack"].faults.node.metadata if m.type == "aws:cdk:warning"]
    (warning,) = [w for w in warnings if w.startswith("fault cut-leader (leader_loss)")]
    assert warning == (
        "fault cut-leader (leader_loss) mode partition cuts every pb-matcher task from the lease store on "
        "AWS (aws:ecs:task-network-blackhole-port, egress TCP port 5432), not the leader alone: FIS cannot "
        "pick the task that leads [ack: resgate:fault-scope:cut-leader:0]"
    )


def test_the_lease_port_is_the_one_the_partition_drops():
    fault = Fault(
        name="cut-leader",
        kind="leader_loss",
        at_s=20.0,
        target="matcher",
        params={"mode": "partition", "duration_s": 6.0, "observe_s": 10.0, "port": 8081, "lease_port": 6432},
    )
    plan = plan_fault(fault, ecs_services={"matcher": "pb-matcher"}, region="us-east-1", service_tag="t")
    assert isinstance(plan, AwsFault) and plan.network and plan.task_services == ("pb-matcher",)
    assert plan.values == {"DURATION": "PT6S", "PORT": "6432", "TRAFFIC_TYPE": "egress"}


def test_a_lease_port_on_a_pause_is_refused_naming_the_field(tmp_path):
    fault = FAULT.replace("mode: partition, ", "").replace("port: 8081,", "port: 8081, lease_port: 6432,")
    with pytest.raises(ConfigError) as e:
        _settings(_write(tmp_path, fault))
    assert str(e.value.where).startswith("faults[0].lease_port")
    assert "only mode: partition cuts the lease store's port" in str(e.value)


def test_a_leader_partition_without_a_database_synthesizes_but_a_reboot_needs_one(tmp_path):
    assert _settings(_write(tmp_path)).config.faults[0].params["mode"] == "partition"
    paused = FAULT.replace("mode: partition, ", "")
    with pytest.raises(ConfigError) as e:
        _settings(_write(tmp_path, paused))
    assert e.value.where == "target.aws.database"


def test_a_leader_partition_is_a_network_action_fis_runs_one_at_a_time():
    """FIS user guide, "Use the AWS FIS aws:ecs:task actions": the ECS fault endpoints take one request per
    5 s per container and answer 409 to a conflicting fault; a network fault starting less than 10 s after
    the partition's end is refused naming both, one at exactly 10 s is not."""
    cut = Fault(
        name="cut-leader",
        kind="leader_loss",
        at_s=20.0,
        target="matcher",
        params={"mode": "partition", "duration_s": 6.0, "observe_s": 10.0, "port": 8081},
    )
    boundary = 20 + 6 + NETWORK_ACTION_GAP_S
    slow = Fault(
        name="slow",
        kind="network_latency",
        at_s=boundary,
        target="gateway",
        params={"service": "gateway", "dependency": "clients", "delay_ms": 100.0, "duration_s": 5.0},
    )
    check_network_schedule([cut, slow])
    with pytest.raises(ConfigError) as e:
        check_network_schedule([cut, dataclasses.replace(slow, at_s=boundary - 0.5)])
    assert e.value.where == "faults.slow.at_s" and "cut-leader" in str(e.value)
    # A pause (the store's reboot) is no network action: nothing to keep apart.
    paused = dataclasses.replace(cut, params={**cut.params, "mode": "pause"})
    check_network_schedule([paused, dataclasses.replace(slow, at_s=21.0)])
