"""A ``leader_loss`` on AWS is watched by the load task (issue 25, item 5): the FIS action reboots the lease
store, and the load task samples the leader figure of the target's ECS tasks around it
(:mod:`loadgen.leader_watch`), which the timeline attaches to ``faults.jsonl``. One stack with a leader loss
and one without are built for the module (the first synthesised with cdk-nag, which must find nothing
unreviewed): each profile record
carries its watches, the load task gets them as ``RESGATE_LEADER_WATCH``, the load task's role may list and
describe the target cluster's tasks (that cluster only) and the timeline's role may read
``leader_samples.jsonl``, both only with a leader loss; without the fault's ``port`` synth is refused naming
it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

import app as cdk_app
from infra import constants as c
from loadgen.leader_watch import LeaderWatch, decode_watches
from resgate.contract.env import ENV_LEADER_WATCH
from resgate.contract.errors import ConfigError
from tests.infra.support.validators import definition_of, states

pytestmark = pytest.mark.infra

LEADER = "{name: lose-leader, kind: leader_loss, target: matcher, port: 8081, duration_s: 6, at_s: 20}"
CONFIG = f"""
gate: {{name: pb-leader}}
target:
  environment: dev
  tags: {{app: paperbroker}}
  local:
    services:
      - {{name: gateway, command: [python3], expose: true}}
      - {{name: matcher, command: [python3], replicas: 2}}
  aws:
    cluster: pb-cluster
    services: {{gateway: pb-gateway, matcher: pb-matcher}}
    target_tags: {{app: paperbroker}}
    database: {{instance: pb-db}}
load: {{users: 20, spawn_rate: 20, duration_s: 60, baseline_s: 10}}
faults:
  - {{name: kill-gateway, kind: stop_task, target: gateway, percent: 50, at_s: 15}}
  - {LEADER}
checks: {{integrity: false, replay: false}}
profiles:
  nightly:
    faults: [{{name: lose-leader, at_s: 30}}]
  smoke:
    faults: [kill-gateway]
"""
WITHOUT = CONFIG.replace(f"  - {LEADER}\n", "").replace(
    "    faults: [{name: lose-leader, at_s: 30}]", "    faults: [kill-gateway]"
)


def _arn(suffix: str) -> dict[str, Any]:
    """An ECS ARN in the stack's partition, region and account, as CDK writes it."""
    parts = [
        "arn:",
        {"Ref": "AWS::Partition"},
        ":ecs:",
        {"Ref": "AWS::Region"},
        ":",
        {"Ref": "AWS::AccountId"},
    ]
    return {"Fn::Join": ["", [*parts, suffix]]}


TASKS = _arn(":task/pb-cluster/*")
INSTANCES = _arn(":container-instance/pb-cluster/*")
ON_CLUSTER = {"ArnEquals": {"ecs:cluster": _arn(":cluster/pb-cluster")}}


def _build(config_text: str, tmp: Path, *, nag: bool = False) -> Any:
    path = tmp / "gate.yaml"
    path.write_text(config_text)
    app = cdk.App(
        outdir=str(tmp / "cdk.out"), context={c.CTX_SKIP_BUNDLING: "true", c.CTX_GATE_CONFIG: str(path)}
    )
    stack = cdk_app.build(app)
    if nag:
        app.synth()  # raises on an unacknowledged cdk-nag finding
    return stack


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = {}
    for name, text in (("leader", CONFIG), ("without", WITHOUT)):
        stack = _build(text, tmp_path_factory.mktemp(name), nag=name == "leader")
        template = Template.from_stack(stack).to_json()
        out[name] = {"stack": stack, "template": template, "definition": definition_of(template)}
    return out


def _record(definition: dict[str, Any], state: str) -> dict[str, Any]:
    return dict(states(definition))[state]["Result"]


def test_each_profile_record_carries_the_watch_of_the_leader_losses_it_runs(built) -> None:
    definition = built["leader"]["definition"]
    watch = LeaderWatch(
        fault_id="lose-leader",
        target="matcher",
        cluster="pb-cluster",
        service="pb-matcher",
        port=8081,
        path="/health",
        at_s=20.0,
        duration_s=6.0,
        observe_s=10.0,
    )
    own = _record(definition, "Config's own load and faults")
    assert decode_watches(own["load"]["leader_watch"]) == (watch,)
    nightly = _record(definition, "Profile nightly")
    assert decode_watches(nightly["load"]["leader_watch"]) == (
        LeaderWatch(**{**watch.__dict__, "at_s": 30.0}),
    )
    assert _record(definition, "Profile smoke")["load"]["leader_watch"] == ""
    assert (
        _record(built["without"]["definition"], "Config's own load and faults")["load"]["leader_watch"] == ""
    )


def test_the_load_task_gets_the_profiles_leader_watch(built) -> None:
    run = dict(states(built["leader"]["definition"]))["Start load task"]
    (override,) = run["Parameters"]["Overrides"]["ContainerOverrides"]
    env = {e["Name"]: e.get("Value.$") for e in override["Environment"]}
    assert env[ENV_LEADER_WATCH] == "$.profile.load.leader_watch"


def _statements(template: dict[str, Any], role_fragment: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in template["Resources"].values():
        if r["Type"] == "AWS::IAM::Policy" and any(
            role_fragment in json.dumps(x) for x in r["Properties"]["Roles"]
        ):
            out += r["Properties"]["PolicyDocument"]["Statement"]
    return out


def _ecs(statements: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted(
        (
            s["Action"],
            json.dumps(s["Resource"], sort_keys=True),
            json.dumps(s.get("Condition"), sort_keys=True),
        )
        for s in statements
        if str(s["Action"]).startswith("ecs:")
    )


def test_the_load_task_may_list_and_describe_the_target_clusters_tasks_only_with_a_leader_loss(built) -> None:
    """Amazon ECS service authorization reference: ``ListTasks`` is authorised on container instances and
    ``DescribeTasks`` on tasks, both with the ``ecs:cluster`` condition key."""
    role = "LoadGeneratorTaskTaskRole"
    assert _ecs(_statements(built["leader"]["template"], role)) == sorted(
        [
            ("ecs:DescribeTasks", json.dumps(TASKS, sort_keys=True), json.dumps(ON_CLUSTER, sort_keys=True)),
            ("ecs:ListTasks", json.dumps(INSTANCES, sort_keys=True), json.dumps(ON_CLUSTER, sort_keys=True)),
        ]
    )
    assert _ecs(_statements(built["without"]["template"], role)) == []


def _leader_samples_reads(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        s
        for s in _statements(template, "Timeline")
        if s["Action"] == "s3:GetObject" and "leader_samples.jsonl" in json.dumps(s["Resource"])
    ]


def test_the_timeline_may_read_the_leader_samples_only_with_a_leader_loss(built) -> None:
    (read,) = _leader_samples_reads(built["leader"]["template"])
    assert "dt=*/run_id=*/leader_samples.jsonl" in json.dumps(read["Resource"])
    assert _leader_samples_reads(built["without"]["template"]) == []


def test_the_load_tasks_security_group_is_an_output_only_with_a_leader_loss(built) -> None:
    """The stack does not own the target service's security group: the user lets this one in on the health
    port (README, "Data-path and process faults on AWS")."""
    assert "LoadTasksSecurityGroup" in built["leader"]["template"]["Outputs"]
    assert "LoadTasksSecurityGroup" not in built["without"]["template"]["Outputs"]


def test_the_leader_watchs_grants_leave_cdk_nag_nothing_unreviewed(built) -> None:
    assert built["leader"]["stack"].unreviewed_findings == []


def test_a_leader_loss_without_its_health_port_does_not_synthesize(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        _build(CONFIG.replace(" port: 8081,", ""), tmp_path)
    assert e.value.where == "faults.lose-leader.port"
    assert "health port" in str(e.value)
