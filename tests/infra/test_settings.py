"""Deployment settings: context, then the gate config's target.aws, then placeholders; bad values refused."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from infra import constants as c
from infra.fault_experiments import render_template, state_key
from infra.gate_state_machine import default_waits
from infra.settings import DeploymentSettings
from resgate.config.schema import load_config
from resgate.contract.errors import ConfigError

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / c.DEFAULT_GATE_CONFIG

AWS_SECTION = """
  aws:
    cluster: prod-like-cluster
    region: eu-west-1
    services: {gateway: pb-gateway, matcher: pb-matcher, projector: pb-projector}
    target_tags: {team: trading, resgate: target}
"""


def settings(context: dict[str, object] | None = None, **kw) -> DeploymentSettings:
    ctx = dict(context or {})
    return DeploymentSettings.from_context(ctx.get, root=ROOT, **kw)


def config_with_aws(tmp_path: Path) -> Path:
    text = DEFAULT.read_text().replace(
        "target:\n  environment: local\n", "target:\n  environment: local\n" + AWS_SECTION, 1
    )
    path = tmp_path / "gate.yaml"
    path.write_text(text)
    return path


def test_the_default_config_synthesises_with_placeholders_it_names():
    s = settings()
    assert s.gate == "paperbroker" and s.stack_name == "ResGate-paperbroker"
    assert s.target_tags == {"env": "dev", "app": "paperbroker"}  # target.tags when there is no target.aws
    assert s.vpc_id == c.PLACEHOLDER_VPC_ID
    assert {c.CTX_VPC_ID, c.CTX_SUBNET_IDS, c.CTX_DB_SECRET_ARN, c.CTX_TARGET_CLUSTER} <= set(s.placeholders)
    assert s.account is None


def test_the_target_aws_section_of_the_config_is_used(tmp_path):
    s = settings({c.CTX_GATE_CONFIG: str(config_with_aws(tmp_path))})
    assert s.target_cluster == "prod-like-cluster" and s.region == "eu-west-1"
    assert s.ecs_service("gateway") == "pb-gateway"
    assert s.target_tags == {"team": "trading", "resgate": "target"}
    assert c.CTX_TARGET_CLUSTER not in s.placeholders and c.CTX_TARGET_SERVICES not in s.placeholders


def test_context_values_win_over_the_config(tmp_path):
    s = settings(
        {
            c.CTX_GATE_CONFIG: str(config_with_aws(tmp_path)),
            c.CTX_TARGET_CLUSTER: "other",
            c.CTX_TARGET_TAGS: "a=1,b=2",
            c.CTX_SUBNET_IDS: '["subnet-0abc", "subnet-0def"]',
            c.CTX_ACCOUNT: "111122223333",
            c.CTX_DB_SECRET_ARN: "arn:aws:secretsmanager:eu-west-1:111122223333:secret:pb/db-AbC123",
        }
    )
    assert s.target_cluster == "other" and s.target_tags == {"a": "1", "b": "2"}
    assert s.subnet_ids == ["subnet-0abc", "subnet-0def"] and s.account == "111122223333"
    assert c.CTX_DB_SECRET_ARN not in s.placeholders


def test_cdk_default_account_and_region_are_used_when_the_context_has_none():
    s = settings(env={"CDK_DEFAULT_ACCOUNT": "444455556666", "CDK_DEFAULT_REGION": "us-west-2"})
    assert (s.account, s.region) == ("444455556666", "us-west-2")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (c.CTX_SUBNET_IDS, "not-a-subnet"),
        (c.CTX_VPC_ID, "vpc_123"),
        (c.CTX_ACCOUNT, "12345"),
        (c.CTX_TARGET_URL, "gateway:8080"),
        (c.CTX_TARGET_LOAD_BALANCER, "my-alb"),
        (c.CTX_DB_SECRET_ARN, "resgate/db"),
        (c.CTX_NIGHTLY_SCHEDULE, "every night"),
        (c.CTX_TARGET_TAGS, "no-equals-sign"),
        (c.CTX_SKIP_BUNDLING, "maybe"),
    ],
)
def test_an_invalid_context_value_is_one_config_error_naming_the_key(key, value):
    with pytest.raises(ConfigError) as e:
        settings({key: value})
    assert e.value.where.endswith(key)


def test_a_missing_gate_config_is_a_config_error():
    with pytest.raises(ConfigError, match="no gate config"):
        settings({c.CTX_GATE_CONFIG: "nope/gate.yaml"})


def test_a_production_target_is_refused_before_any_construct_exists(tmp_path):
    path = tmp_path / "gate.yaml"
    path.write_text(
        DEFAULT.read_text().replace("tags: {env: dev, app: paperbroker}", "tags: {env: prod, app: pb}")
    )
    with pytest.raises(ConfigError, match="production"):
        settings({c.CTX_GATE_CONFIG: str(path)})


def test_a_check_without_an_assertion_lambda_is_refused_not_left_out_of_the_state_machine(
    tmp_path, monkeypatch
):
    """Every registry check has its Lambda today; a check added to the registry without one must be
    refused at synth, not silently left out of the state machine (here backpressure's is taken away)."""
    path = tmp_path / "gate.yaml"
    path.write_text(DEFAULT.read_text().replace("\nchecks:\n", "\nchecks:\n  backpressure: {}\n", 1))
    assert "backpressure" in load_config(path).enabled_checks()
    settings({c.CTX_GATE_CONFIG: str(path)})  # deployable: its Lambda is built when enabled
    monkeypatch.setattr(c, "DEPLOYABLE_CHECKS", tuple(n for n in c.DEPLOYABLE_CHECKS if n != "backpressure"))
    with pytest.raises(ConfigError) as e:
        settings({c.CTX_GATE_CONFIG: str(path)})
    assert e.value.where == "checks.backpressure"


def test_a_config_that_enables_streaming_deploys_its_lambda_reading_its_trades_topic(tmp_path):
    text = DEFAULT.read_text().replace(
        "  users: 20\n", "  users: 20\n  env: {RESGATE_STREAM_SUBSCRIBERS: '2'}\n", 1
    )
    path = tmp_path / "gate.yaml"
    path.write_text(text.replace("\nchecks:\n", "\nchecks:\n  streaming: {topic: md.trades}\n", 1))
    assert settings({c.CTX_GATE_CONFIG: str(path)}).streaming_topic == "md.trades"
    assert settings({}).streaming_topic is None  # the default config runs no subscribers: no Lambda


def test_default_waits_give_each_fault_its_offset_from_the_load_start_as_configured():
    cfg = load_config(DEFAULT)

    class Spec:
        def __init__(self, name: str, at_s: float) -> None:
            self.key, self.at_s = state_key(name), at_s

    specs = [Spec(f.name, f.at_s) for f in cfg.faults if f.kind == "stop_task"]
    waits = default_waits(cfg, specs, poll_s=15)  # type: ignore[arg-type]
    # baseline 5 s; faults at 10, 25, 30 s; load 45 s: offsets from the load's start, not gaps
    assert waits == {
        "baseline_s": 5,
        "poll_s": 15,
        "start_poll_s": 2,
        "quiesce_s": 75,
        "load_s": 45,
        "lock_wait_s": 600,
        "at_kill_gateway": 10,
        "at_kill_projector": 25,
        "at_kill_matcher": 30,
    }


def test_a_template_placeholder_that_is_a_whole_string_becomes_the_value():
    out = render_template({"tags": "{{TAGS}}", "mode": "PERCENT({{N}})"}, {"TAGS": {"a": "b"}, "N": 50})
    assert out == {"tags": {"a": "b"}, "mode": "PERCENT(50)"}


def test_a_template_placeholder_without_a_value_or_a_value_without_a_placeholder_is_refused():
    with pytest.raises(ConfigError, match="no value"):
        render_template({"a": "{{MISSING}}"}, {})
    with pytest.raises(ConfigError, match="lacks"):
        render_template({"a": "x"}, {"EXTRA": 1})


def test_the_stop_task_template_file_has_exactly_the_placeholders_the_stack_fills():
    import json

    template = json.loads((ROOT / c.FIS_TEMPLATE_DIR / c.FIS_STOP_TASK_TEMPLATE).read_text())
    values = {
        k: k
        for k in (
            "DESCRIPTION",
            "ROLE_ARN",
            "RESOURCE_TAGS",
            "PERCENT",
            "STOP_CONDITIONS",
            "TAGS",
            "OBSERVATION_WINDOW",
            "REPORT_BUCKET",
            "REPORT_PREFIX",
            "REPORT_DASHBOARD",
        )
    }
    out = render_template(template, values)
    assert out["actions"]["StopTasks"]["actionId"] == "aws:ecs:stop-task"
    assert out["targets"]["Tasks"]["resourceType"] == "aws:ecs:task"


def test_the_most_load_workers_of_the_config_and_its_profiles_sizes_the_distributed_load():
    from infra.load_generator import max_load_workers
    from resgate.config.model import Load, Profile

    cfg = SimpleNamespace(load=Load(users=4, workers=2), profiles={})
    assert max_load_workers(cfg) == 2  # type: ignore[arg-type]
    cfg.profiles = {"big": Profile(name="big", load=Load(users=8, workers=3), faults=[])}
    assert max_load_workers(cfg) == 3  # type: ignore[arg-type]
    cfg.load, cfg.profiles = Load(), {"none": Profile(name="none", load=Load(), faults=[])}
    assert max_load_workers(cfg) == 0  # type: ignore[arg-type]
