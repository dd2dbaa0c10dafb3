"""What the CDK app deploys for one gate: the gate config plus the deployment values from the CDK context.

This is the one place that reads the environment of a deployment (``-c key=value`` or ``cdk.json``'s
``context``): :meth:`DeploymentSettings.from_context` resolves every value as *context, then the gate
config's* ``target.aws`` *section, then a placeholder* (see :mod:`infra.constants`), and validates it
before any construct exists. Invalid values raise :class:`resgate.contract.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra import constants as c
from infra.data_faults import check_data_faults
from infra.network_faults import check_refused
from resgate.checks.replay import EcsTaskSpec
from resgate.config.schema import GateConfig, check_blast_radius, load_config
from resgate.contract.errors import ConfigError
from resgate.sections.kafka import BROKER_PORTS, KafkaSettings

_SUBNET_RE = re.compile(r"^subnet-[0-9a-z]+$")
_VPC_RE = re.compile(r"^vpc-[0-9a-z]+$")
_ECS_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_SECRET_ARN_RE = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_CRON_RE = re.compile(r"^(cron|rate)\(.+\)$")


def _as_map(value: Any, key: str) -> dict[str, str]:
    """A context map given as a JSON object or ``k=v,k2=v2``."""
    if isinstance(value, Mapping):
        items = dict(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError(f"is not a JSON object: {e}", where=f"context.{key}") from None
        else:
            items = {}
            for part in filter(None, (p.strip() for p in text.split(","))):
                k, sep, v = part.partition("=")
                if not sep or not k.strip():
                    raise ConfigError(f"must be key=value pairs, got {part!r}", where=f"context.{key}")
                items[k.strip()] = v.strip()
    else:
        raise ConfigError(f"must be a map, got {value!r}", where=f"context.{key}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in items.items()):
        raise ConfigError(f"must map strings to strings, got {items!r}", where=f"context.{key}")
    return items


def _as_list(value: Any, key: str) -> list[str]:
    """A context list given as a JSON list or ``a,b,c``."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError(f"is not a JSON list: {e}", where=f"context.{key}") from None
        else:
            value = [p.strip() for p in text.split(",") if p.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"must be a list of strings, got {value!r}", where=f"context.{key}")
    return value


def _as_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise ConfigError(f"must be true or false, got {value!r}", where=f"context.{key}")


def stack_name_for(gate: str) -> str:
    """The default CloudFormation stack name of a gate: ``ResGate-<gate>`` with ``_`` as ``-``."""
    return "ResGate-" + gate.replace("_", "-")


@dataclass(frozen=True)
class DeploymentSettings:
    """Everything one gate stack needs; ``placeholders`` lists the context keys left at a placeholder."""

    config: GateConfig
    config_path: Path
    config_text: str
    stack_name: str
    account: str | None
    region: str | None
    target_cluster: str
    target_services: dict[str, str]
    target_tags: dict[str, str]
    target_url: str
    target_load_balancer: str
    vpc_id: str
    subnet_ids: list[str]
    availability_zones: list[str]
    db_secret_arn: str | None
    kafka_bootstrap: str
    loadgen_image: str | None
    notify_email: str | None
    nightly_schedule: str
    skip_bundling: bool
    placeholders: list[str] = field(default_factory=list)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    kafka_topics: tuple[str, ...] = ()
    streaming_topic: str | None = None
    replay_tasks: tuple[EcsTaskSpec, ...] = ()
    ops_items: bool = False

    @property
    def gate(self) -> str:
        return self.config.name

    def ecs_service(self, service: str) -> str:
        """The ECS service name of a gate-config service name."""
        return self.target_services.get(service, service)

    @classmethod
    def from_context(
        cls, get: Callable[[str], Any], *, root: Path, env: Mapping[str, str] | None = None
    ) -> DeploymentSettings:
        """Resolve and validate the settings; ``get(key)`` returns a context value or ``None``.

        ``root`` is the repository root (relative config paths are resolved against it); ``env`` supplies
        ``CDK_DEFAULT_ACCOUNT`` / ``CDK_DEFAULT_REGION`` when the context names no account or region.
        """
        env = env or {}
        placeholders: list[str] = []

        def ctx(key: str) -> Any:
            v = get(key)
            return None if v is None or (isinstance(v, str) and not v.strip()) else v

        path = Path(ctx(c.CTX_GATE_CONFIG) or c.DEFAULT_GATE_CONFIG)
        if not path.is_absolute():
            path = root / path
        if not path.is_file():
            raise ConfigError(f"no gate config at {path}", where=f"context.{c.CTX_GATE_CONFIG}")
        cfg = load_config(path)
        check_blast_radius(cfg)
        undeployed = [n for n in cfg.enabled_checks() if n not in c.DEPLOYABLE_CHECKS]
        if undeployed:  # a check with no Lambda would be silently left out of the state machine
            raise ConfigError(
                "has no assertion Lambda in this stack yet (it runs with `resgate run` only); set it to false"
                " to deploy",
                where=f"checks.{undeployed[0]}",
            )
        aws = cfg.target.aws

        account = ctx(c.CTX_ACCOUNT) or env.get("CDK_DEFAULT_ACCOUNT") or None
        if account is not None and not _ACCOUNT_RE.match(str(account)):
            raise ConfigError(f"must be a 12-digit account id, got {account!r}", where="context.account")
        region = ctx(c.CTX_REGION) or (aws.region if aws else None) or env.get("CDK_DEFAULT_REGION") or None

        cluster = ctx(c.CTX_TARGET_CLUSTER) or (aws.cluster if aws else None)
        if cluster is None:
            cluster = cfg.name
            placeholders.append(c.CTX_TARGET_CLUSTER)
        if not _ECS_NAME_RE.match(cluster):
            raise ConfigError(f"is not an ECS cluster name: {cluster!r}", where="context.target_cluster")

        services = {s.name: s.name for s in cfg.target.services}
        if aws:
            services.update(aws.services)
        if ctx(c.CTX_TARGET_SERVICES) is not None:
            services.update(_as_map(ctx(c.CTX_TARGET_SERVICES), c.CTX_TARGET_SERVICES))
        elif not aws or not aws.services:
            placeholders.append(c.CTX_TARGET_SERVICES)
        for name, svc in services.items():
            if not _ECS_NAME_RE.match(svc):
                raise ConfigError(
                    f"{name}: is not an ECS service name: {svc!r}", where="context.target_services"
                )

        if ctx(c.CTX_TARGET_TAGS) is not None:
            tags = _as_map(ctx(c.CTX_TARGET_TAGS), c.CTX_TARGET_TAGS)
        elif aws and aws.target_tags:
            tags = dict(aws.target_tags)
        else:
            tags = dict(cfg.target.tags)
        if not tags:
            raise ConfigError(
                "FIS selects the target's tasks by tag: give target.aws.target_tags, target.tags or "
                "-c target_tags=key=value",
                where="context.target_tags",
            )

        def value(key: str, placeholder: str) -> str:
            v = ctx(key)
            if v is None:
                placeholders.append(key)
                return placeholder
            return str(v)

        target_url = value(c.CTX_TARGET_URL, cfg.load.host or c.PLACEHOLDER_TARGET_URL)
        if not target_url.startswith(("http://", "https://")):
            raise ConfigError(f"must be an http(s) URL, got {target_url!r}", where="context.target_url")
        load_balancer = value(c.CTX_TARGET_LOAD_BALANCER, c.PLACEHOLDER_LOAD_BALANCER)
        if not load_balancer.startswith("app/") or load_balancer.count("/") != 2:
            raise ConfigError(
                f"must be an ALB's CloudWatch dimension app/<name>/<id>, got {load_balancer!r}",
                where="context.target_load_balancer",
            )
        vpc_id = value(c.CTX_VPC_ID, c.PLACEHOLDER_VPC_ID)
        if not _VPC_RE.match(vpc_id):
            raise ConfigError(f"is not a VPC id: {vpc_id!r}", where="context.vpc_id")
        if ctx(c.CTX_SUBNET_IDS) is None:
            placeholders.append(c.CTX_SUBNET_IDS)
            subnets = list(c.PLACEHOLDER_SUBNET_IDS)
        else:
            subnets = _as_list(ctx(c.CTX_SUBNET_IDS), c.CTX_SUBNET_IDS)
        bad = [s for s in subnets if not _SUBNET_RE.match(s)]
        if bad or not subnets:
            raise ConfigError(f"must be subnet ids, got {subnets!r}", where="context.subnet_ids")
        if ctx(c.CTX_AVAILABILITY_ZONES) is None:
            azs = [c.PLACEHOLDER_AZS[i % len(c.PLACEHOLDER_AZS)] + str(i) for i in range(len(subnets))]
        else:
            azs = _as_list(ctx(c.CTX_AVAILABILITY_ZONES), c.CTX_AVAILABILITY_ZONES)
            if len(azs) != len(subnets):
                raise ConfigError(
                    f"needs one zone per subnet ({len(subnets)}), got {azs!r}",
                    where="context.availability_zones",
                )

        secret = ctx(c.CTX_DB_SECRET_ARN)
        if secret is None:
            placeholders.append(c.CTX_DB_SECRET_ARN)
        elif not _SECRET_ARN_RE.match(secret):
            raise ConfigError(
                f"is not a Secrets Manager secret ARN: {secret!r}", where="context.db_secret_arn"
            )
        kafka = value(c.CTX_KAFKA_BOOTSTRAP, c.PLACEHOLDER_KAFKA_BOOTSTRAP)
        check_kafka_on_aws(cfg.kafka, kafka)
        # Every fault of the config runs on AWS or the deployment is refused here, naming the field and why.
        check_refused(cfg.faults)
        check_data_faults(cfg.faults, database=aws.database if aws else None, kafka=cfg.kafka)
        replay_tasks = replay_tasks_on_aws(cfg)

        schedule = str(ctx(c.CTX_NIGHTLY_SCHEDULE) or c.DEFAULT_NIGHTLY_SCHEDULE)
        if not _CRON_RE.match(schedule):
            raise ConfigError(
                f"must be cron(...) or rate(...), got {schedule!r}", where="context.nightly_schedule"
            )
        skip = ctx(c.CTX_SKIP_BUNDLING)
        ops_items = ctx(c.CTX_OPS_ITEMS)

        return cls(
            config=cfg,
            config_path=path,
            config_text=path.read_text(encoding="utf-8"),
            stack_name=str(ctx(c.CTX_STACK_NAME) or stack_name_for(cfg.name)),
            account=str(account) if account else None,
            region=str(region) if region else None,
            target_cluster=cluster,
            target_services=services,
            target_tags=tags,
            target_url=target_url,
            target_load_balancer=load_balancer,
            vpc_id=vpc_id,
            subnet_ids=subnets,
            availability_zones=azs,
            db_secret_arn=secret,
            kafka_bootstrap=kafka,
            loadgen_image=ctx(c.CTX_LOADGEN_IMAGE),
            notify_email=ctx(c.CTX_NOTIFY_EMAIL),
            nightly_schedule=schedule,
            skip_bundling=_as_bool(skip, c.CTX_SKIP_BUNDLING) if skip is not None else False,
            placeholders=placeholders,
            kafka=cfg.kafka,
            kafka_topics=topics_read(cfg),
            streaming_topic=streaming_topic(cfg),
            replay_tasks=replay_tasks,
            ops_items=_as_bool(ops_items, c.CTX_OPS_ITEMS) if ops_items is not None else False,
        )


# The replay Lambda's timeout (infra.gate_function.SIZING) less the time it needs around the rebuild
# (the topics' bounds, the live checksums, the comparison): an ECS rebuild must end before this.
REPLAY_LAMBDA_TIMEOUT_S = 900
REPLAY_COMPARE_MARGIN_S = 120


def _check_section(cfg: GateConfig, name: str) -> Any | None:
    """The ``checks.<name>`` section as the config parsed it, or None when the check is disabled."""
    return cfg.thresholds_of(name)


def topics_read(cfg: GateConfig) -> tuple[str, ...]:
    """The topics the integrity and replay Lambdas read (what their MSK IAM permissions name)."""
    out: list[str] = []
    integrity = _check_section(cfg, "integrity")
    if integrity is not None:
        out += integrity.topics
    replay = _check_section(cfg, "replay")
    if replay is not None:
        out += [t for m in replay.read_models for t in m.topics]
    return tuple(dict.fromkeys(out))


def streaming_topic(cfg: GateConfig) -> str | None:
    """The trades topic the streaming Lambda reads (``checks.streaming.topic``), or None when the check is
    off: the stack then deploys no streaming Lambda."""
    streaming = _check_section(cfg, "streaming")
    return None if streaming is None else streaming.topic


def check_kafka_on_aws(kafka: KafkaSettings, bootstrap: str) -> None:
    """The ``kafka`` section as a deployment needs it: MSK IAM names the cluster (its ARN scopes the
    Lambdas' ``kafka-cluster:*`` permissions), and MSK brokers (``*.amazonaws.com``) are addressed on the
    protocol's port (9092 plaintext, 9094 TLS, 9098 IAM). ConfigError naming the field otherwise."""
    if kafka.iam and kafka.cluster_arn is None:
        raise ConfigError(
            "is required with sasl_mechanism AWS_MSK_IAM: the Lambdas' kafka-cluster permissions name it",
            where="kafka.cluster_arn",
        )
    for broker in filter(None, (b.strip() for b in bootstrap.split(","))):
        host, _, port = broker.rpartition(":")
        if host.endswith(".amazonaws.com") and port != str(kafka.broker_port):
            others = {str(p): proto for proto, p in BROKER_PORTS.items()}
            raise ConfigError(
                f"MSK serves {kafka.security_protocol} on port {kafka.broker_port}, but {broker} is the "
                f"{others.get(port, 'unknown')} port: set kafka.security_protocol or the bootstrap to match",
                where="context.kafka_bootstrap",
            )


def replay_tasks_on_aws(cfg: GateConfig) -> tuple[EcsTaskSpec, ...]:
    """The ECS tasks the replay Lambda runs (distinct, in config order). On AWS a rebuild runs the target's
    code in the target's image: every read model's rebuild needs an ``ecs_task`` unless its callable is
    importable from the Lambda's bundle (only the packages in ``LAMBDA_SOURCE_PACKAGES``); a command would
    run inside the Lambda, which has none of the target's code. Raises ConfigError naming the read model,
    when a task's ``timeout_s`` leaves the Lambda no time to compare, and when a task does not name its
    task definition's ``execution_role_arn`` and ``task_role_arn`` (RunTask needs ``iam:PassRole`` on the
    roles already in the task definition, which cannot be looked up without calling AWS at synth)."""
    replay = _check_section(cfg, "replay")
    if replay is None:
        return ()
    tasks: list[EcsTaskSpec] = []
    limit = REPLAY_LAMBDA_TIMEOUT_S - REPLAY_COMPARE_MARGIN_S
    for i, m in enumerate(replay.read_models):
        where = f"checks.replay.read_models[{i}].rebuild"
        spec = m.rebuild
        if spec.ecs_task is not None:
            if spec.timeout_s > limit:
                raise ConfigError(
                    f"must be at most {limit}s on AWS: the replay Lambda runs for {REPLAY_LAMBDA_TIMEOUT_S}s "
                    f"and needs {REPLAY_COMPARE_MARGIN_S}s to compare, got {spec.timeout_s:g}",
                    where=f"{where}.timeout_s",
                )
            for key in ("execution_role_arn", "task_role_arn"):
                if getattr(spec.ecs_task, key) is None:
                    raise ConfigError(
                        f"is required on AWS: ecs:RunTask of {spec.ecs_task.task_definition} passes the task "
                        "definition's own task and execution roles, so the replay Lambda needs iam:PassRole "
                        "on both (granted on the roles named here only); give the task definition's "
                        f"{'executionRoleArn' if key == 'execution_role_arn' else 'taskRoleArn'}",
                        where=f"{where}.ecs_task.{key}",
                    )
            if spec.ecs_task not in tasks:
                tasks.append(spec.ecs_task)
            continue
        if (
            spec.callable is not None
            and spec.callable.split(".")[0].split(":")[0] in c.LAMBDA_SOURCE_PACKAGES
        ):
            continue
        what = f"the callable {spec.callable}" if spec.callable else f"the command {list(spec.command or ())}"
        bundled = list(c.LAMBDA_SOURCE_PACKAGES)
        raise ConfigError(
            f"{what} cannot run in the replay Lambda (its bundle holds only {bundled}): "
            "on AWS the rebuild runs the target's own code in its own image; add ecs_task: {task_definition, "
            "container, command?} naming the task definition (the callable stays the local rebuild)",
            where=where,
        )
    return tuple(tasks)
