"""An ``overload`` on AWS (issue 25, item 5): with ``factor`` it is a step of the Fargate load task's own
load shape, not an FIS experiment; with ``rps`` (a burst process beside the local load, which the load task
cannot be) it is refused at synth naming the field. One stack of an overload gate is built for the module
(no cdk-nag synth: the template is read with ``Template.from_stack``): the run's profile record carries the
shape's steps, the load task gets them as ``RESGATE_LOAD_SHAPE``, no FIS template exists for the surge, the
timeline's role may read the evidence (the shape's ``load_shape.jsonl``) and the backpressure check has its
Lambda and its state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

import app as cdk_app
from infra import constants as c
from infra.network_faults import LoadStep, plan_fault
from resgate.config.schema import load_config_text
from resgate.contract.env import ENV_LOAD_SHAPE
from resgate.contract.errors import ConfigError
from resgate.contract.shape import ShapeStep, decode_steps
from tests.infra.support.validators import definition_of, states

pytestmark = pytest.mark.infra

CONFIG = """
gate: {name: pb-surge}
target:
  environment: dev
  tags: {app: paperbroker}
  local:
    services:
      - {name: gateway, command: [python3], expose: true, replicas: 2}
  aws:
    cluster: pb-cluster
    services: {gateway: pb-gateway}
    target_tags: {app: paperbroker}
load: {users: 20, spawn_rate: 20, duration_s: 60, baseline_s: 10}
faults:
  - {name: kill-gateway, kind: stop_task, target: gateway, percent: 50, at_s: 40}
  - {name: surge, kind: overload, factor: 4, duration_s: 8, at_s: 20}
checks: {integrity: false, replay: false}
profiles:
  nightly:
    load: {users: 50}
    faults: [{name: surge, at_s: 30}]
"""
BURST = "{name: burst, kind: overload, rps: 400, duration_s: 8, at_s: 20}"
RPS_CONFIG = CONFIG.replace(
    "{name: surge, kind: overload, factor: 4, duration_s: 8, at_s: 20}", BURST
).replace("faults: [{name: surge, at_s: 30}]", "faults: [kill-gateway]")


def _build(config_text: str, tmp: Path) -> Any:
    path = tmp / "gate.yaml"
    path.write_text(config_text)
    app = cdk.App(
        outdir=str(tmp / "cdk.out"), context={c.CTX_SKIP_BUNDLING: "true", c.CTX_GATE_CONFIG: str(path)}
    )
    return cdk_app.build(app)


@pytest.fixture(scope="module")
def surge(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    stack = _build(CONFIG, tmp_path_factory.mktemp("surge"))
    template = Template.from_stack(stack).to_json()
    return {"stack": stack, "template": template, "definition": definition_of(template)}


def test_an_overload_by_factor_plans_as_a_load_step_and_one_by_rps_is_refused_naming_rps() -> None:
    surge = next(f for f in load_config_text(CONFIG, "gate.yaml").faults if f.name == "surge")
    plan = plan_fault(surge, ecs_services={"gateway": "pb-gateway"}, region="us-east-1", service_tag="t")
    assert isinstance(plan, LoadStep) and "x 4 (80)" in plan.description
    burst = next(f for f in load_config_text(RPS_CONFIG, "gate.yaml").faults if f.name == "burst")
    with pytest.raises(ConfigError) as e:
        plan_fault(burst, ecs_services={"gateway": "pb-gateway"}, region="us-east-1", service_tag="t")
    assert e.value.where == "faults.burst.rps" and "factor" in str(e.value)


def test_a_gate_with_an_overload_by_rps_does_not_synthesize(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        _build(RPS_CONFIG, tmp_path)
    assert e.value.where == "faults.burst.rps"


def _pass_result(definition: dict[str, Any], name: str) -> dict[str, Any]:
    state = dict(states(definition))[name]
    return state["Result"]


def test_each_profile_record_carries_its_shape_steps(surge) -> None:
    own = _pass_result(surge["definition"], "Config's own load and faults")
    nightly = _pass_result(surge["definition"], "Profile nightly")
    step = ShapeStep(name="surge", at_s=20.0, duration_s=8.0, factor=4.0, target="gateway")
    assert decode_steps(own["load"]["shape"]) == (step,)
    assert nightly["load"]["users"] == "50"
    assert decode_steps(nightly["load"]["shape"]) == (ShapeStep(**{**step.__dict__, "at_s": 30.0}),)


def test_the_load_task_gets_the_profiles_shape_and_the_surge_has_no_fis_template(surge) -> None:
    run = dict(states(surge["definition"]))["Start load task"]
    (override,) = run["Parameters"]["Overrides"]["ContainerOverrides"]
    env = {e["Name"]: e.get("Value.$") for e in override["Environment"]}
    assert env[ENV_LOAD_SHAPE] == "$.profile.load.shape"
    templates = [
        r["Properties"]["Tags"]["Name"]
        for r in surge["template"]["Resources"].values()
        if r["Type"] == "AWS::FIS::ExperimentTemplate"
    ]
    assert templates == ["resgate-pb-surge-kill-gateway"]
    assert [f.name for f in surge["stack"].faults.load_steps] == ["surge"]
    assert surge["stack"].faults.skipped == []


def _role_actions(template: dict[str, Any], role_fragment: str) -> set[str]:
    actions: set[str] = set()
    for r in template["Resources"].values():
        if r["Type"] == "AWS::IAM::Policy" and any(
            role_fragment in json.dumps(x) for x in r["Properties"]["Roles"]
        ):
            for s in r["Properties"]["PolicyDocument"]["Statement"]:
                actions |= set([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    return actions


def test_the_timeline_may_read_the_shapes_rows_and_backpressure_runs_in_its_lambda(surge) -> None:
    assert {"s3:GetObject", "s3:ListBucket", "s3:PutObject"} <= _role_actions(surge["template"], "Timeline")
    assert "backpressure" in surge["stack"].functions.functions
    check_states = [n for n, _ in states(surge["definition"]) if n == "Check backpressure"]
    assert check_states == ["Check backpressure"]


# The surge's target (gateway) is not the experiment's (matcher): the leader/overload rehearsal's finding.
MIXED_CONFIG = (
    CONFIG.replace(
        "      - {name: gateway, command: [python3], expose: true, replicas: 2}",
        "      - {name: gateway, command: [python3], expose: true, replicas: 2}\n"
        "      - {name: matcher, command: [python3]}",
    )
    .replace("services: {gateway: pb-gateway}", "services: {gateway: pb-gateway, matcher: pb-matcher}")
    .replace(
        "{name: kill-gateway, kind: stop_task, target: gateway,",
        "{name: kill-gateway, kind: stop_task, target: matcher,",
    )
)


def _described_services(template: dict[str, Any], role_fragment: str) -> set[str]:
    """The service names the role's ``ecs:DescribeServices`` statements name (their ARNs' last segment)."""
    out: set[str] = set()
    for r in template["Resources"].values():
        if r["Type"] == "AWS::IAM::Policy" and any(
            role_fragment in json.dumps(x) for x in r["Properties"]["Roles"]
        ):
            for s in r["Properties"]["PolicyDocument"]["Statement"]:
                if s["Action"] == "ecs:DescribeServices":
                    arns = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
                    out |= {json.dumps(a).rsplit("/", 1)[-1].split('"')[0] for a in arns}
    return out


def test_the_timeline_reads_the_health_of_an_overloads_target_that_no_experiment_targets(
    tmp_path: Path,
) -> None:
    # The overload rehearsal (tests/rehearsal/test_rehearsal_leader_overload.py) found recovery unknown ("no
    # health observation of gateway after injection"): the timeline was given the experiments' targets only,
    # and an overload starts no experiment. Its target is the timeline's too, and the timeline role (and the
    # quiesce step's) may describe that service, and no other.
    stack = _build(MIXED_CONFIG, tmp_path)
    template = Template.from_stack(stack).to_json()
    timeline = dict(states(definition_of(template)))["Write timeline"]
    assert timeline["Parameters"]["Payload"]["services"] == {"matcher": "pb-matcher", "gateway": "pb-gateway"}
    assert _described_services(template, "Timeline") == {"pb-matcher", "pb-gateway"}
