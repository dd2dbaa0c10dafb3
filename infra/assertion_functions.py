"""The gate's Lambdas and how they are built: the six assertion Lambdas (slo, recovery, retryable,
integrity, replay, verdict), the timeline step (FIS and ECS state → ``faults.jsonl``/``health.jsonl``)
and the cleanup after an aborted or timed-out execution (stops the run's load task and experiments).

Each function's asset holds the project's own packages (``resgate``, ``lambdas``) and its third-party
requirements (:data:`infra.constants.LAMBDA_BASE_REQUIREMENTS` plus the function's extras), installed by
:class:`PipLocalBundling`: ``pip install --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64
--only-binary=:all: --python-version 3.12 --implementation cp --no-compile --target <asset>`` on this
machine, so synth needs no Docker (the bundling options' Docker image is never used while local bundling
succeeds). Functions with the same requirements share one asset (a custom asset hash of the sources and
the requirement list). manylinux_2_28 wheels run on the 3.12 runtime (Amazon Linux 2023, glibc 2.34).

``-c resgate:skip_bundling=true`` (the infra tests) uses the sources only, without the pip install, so no
network is needed; such a stack synthesises and validates but its functions would not import.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, Duration, ILocalBundling, RemovalPolicy, Size
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import constants as c
from resgate.contract.errors import GateError

# Per function: (memory MB, timeout s, ephemeral storage MB). integrity/replay COPY the ledger into
# Postgres and rebuild read models from the topics; the others read small files.
SIZING: dict[str, tuple[int, int, int]] = {
    "slo": (1024, 300, 512),
    "recovery": (512, 300, 512),
    "retryable": (1024, 300, 512),
    "integrity": (2048, 900, 2048),
    "replay": (2048, 900, 2048),
    "verdict": (512, 120, 512),
    "timeline": (512, 120, 512),
    "cleanup": (256, 120, 512),
}
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def requirements_for(name: str) -> tuple[str, ...]:
    """The pip requirement specifiers of function ``name``."""
    return (*c.LAMBDA_BASE_REQUIREMENTS, *c.LAMBDA_EXTRA_REQUIREMENTS.get(name, ()))


def copy_sources(root: Path, out: Path, packages: Iterable[str] = c.LAMBDA_SOURCE_PACKAGES) -> None:
    """Copy the project's own packages from ``root`` into ``out`` (no caches)."""
    for pkg in packages:
        shutil.copytree(root / pkg, out / pkg, ignore=_IGNORE, dirs_exist_ok=True)


@functools.cache
def source_fingerprint(root: Path, packages: tuple[str, ...] = c.LAMBDA_SOURCE_PACKAGES) -> str:
    """SHA-256 over the relative paths and contents of the packages' files (caches excluded)."""
    h = hashlib.sha256()
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                h.update(str(f.relative_to(root)).encode())
                h.update(b"\0")
                h.update(f.read_bytes())
    return h.hexdigest()


@jsii.implements(ILocalBundling)
class PipLocalBundling:
    """Builds a Lambda asset on this machine: copy the sources, then pip-install wheels for the runtime.

    ``try_bundle`` returns True on success and raises :class:`GateError` with pip's output otherwise (a
    silent False would make CDK fall back to Docker, which is not there).
    """

    def __init__(self, *, root: Path, requirements: Sequence[str], pip: Sequence[str] | None = None) -> None:
        self.root = root
        self.requirements = tuple(requirements)
        self.pip = tuple(pip) if pip else (sys.executable, "-m", "pip")

    def command(self, target: str) -> list[str]:
        """The pip command line that installs the requirements into ``target``."""
        return [
            *self.pip,
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            *(arg for platform in c.LAMBDA_PLATFORMS for arg in ("--platform", platform)),
            "--only-binary=:all:",
            "--python-version",
            c.LAMBDA_PYTHON,
            "--implementation",
            "cp",
            "--no-compile",
            "--target",
            target,
            *self.requirements,
        ]

    def try_bundle(self, output_dir: str, *args: Any, **kwargs: Any) -> bool:
        out = Path(output_dir)
        copy_sources(self.root, out)
        if self.requirements:
            proc = subprocess.run(self.command(str(out)), capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise GateError(
                    f"pip could not install the Lambda requirements {list(self.requirements)}:\n"
                    f"{proc.stdout}\n{proc.stderr}"
                )
        return True


class _SourceOnly:
    """A temp folder with only the project's own packages (the skip-bundling asset), removed at exit."""

    _dirs: dict[Path, Path] = {}

    @classmethod
    def folder(cls, root: Path) -> Path:
        if root not in cls._dirs:
            tmp = Path(tempfile.mkdtemp(prefix="resgate-lambda-src-"))
            atexit.register(shutil.rmtree, tmp, True)
            copy_sources(root, tmp)
            cls._dirs[root] = tmp
        return cls._dirs[root]


def lambda_code(*, root: Path, name: str, skip_bundling: bool) -> lambda_.Code:
    """The asset of function ``name``: bundled with its requirements, or the sources only."""
    if skip_bundling:
        return lambda_.Code.from_asset(str(_SourceOnly.folder(root)))
    requirements = requirements_for(name)
    h = hashlib.sha256()
    for part in (source_fingerprint(root), *c.LAMBDA_PLATFORMS, c.LAMBDA_PYTHON, *sorted(requirements)):
        h.update(part.encode())
        h.update(b"\0")
    return lambda_.Code.from_asset(
        str(root),
        asset_hash=h.hexdigest(),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(
            # Required by the API, used only if local bundling were to decline (it raises instead).
            image=DockerImage.from_registry(f"public.ecr.aws/sam/build-python{c.LAMBDA_PYTHON}"),
            local=PipLocalBundling(root=root, requirements=requirements),
        ),
    )


class AssertionFunctions(Construct):
    """One Lambda per check plus the verdict, the timeline step and the abort cleanup, each with its own
    role, log group and Powertools settings; the stack grants each role what its function reads and writes.

    Attributes: ``functions`` ({name: Function}, in :data:`infra.constants.FUNCTION_NAMES` order),
    ``check_functions`` (the five checks), ``verdict_function``, ``timeline_function``, ``cleanup_function``,
    ``roles`` ({name: Role}), ``log_groups`` ({name: LogGroup}), ``database_security_group`` (the
    integrity/replay functions' security group: allow it into the database and MSK security groups).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        root: Path,
        gate: str,
        evidence_bucket_name: str,
        vpc: ec2.IVpc,
        subnets: Sequence[ec2.ISubnet],
        db_secret_arn: str,
        kafka_bootstrap: str,
        unknown_is_failure: bool,
        skip_bundling: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.database_security_group = ec2.SecurityGroup(
            self,
            "DatabaseClients",
            vpc=vpc,
            description=f"ResilienceGate {gate}: integrity/replay Lambdas (to Postgres and MSK)",
            allow_all_outbound=True,
        )
        self.functions: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        for name in c.FUNCTION_NAMES:
            memory, timeout, storage = SIZING[name]
            env: dict[str, str] = {
                c.ENV_EVIDENCE_BUCKET: evidence_bucket_name,
                c.ENV_EVIDENCE_PREFIX: c.EVIDENCE_PREFIX,
                c.ENV_POWERTOOLS_SERVICE_NAME: f"resgate-{name}",
                c.ENV_POWERTOOLS_METRICS_NAMESPACE: c.METRICS_NAMESPACE,
                "POWERTOOLS_LOG_LEVEL": "INFO",
            }
            if name == c.VERDICT_FUNCTION:
                env[c.ENV_UNKNOWN_IS_FAILURE] = "true" if unknown_is_failure else "false"
            in_vpc = name in c.NEEDS_DATABASE
            if in_vpc:
                env[c.ENV_DB_SECRET_ARN] = db_secret_arn
                env[c.ENV_KAFKA_BOOTSTRAP] = kafka_bootstrap
            log_group = logs.LogGroup(
                self,
                f"{name.title()}Logs",
                retention=logs.RetentionDays.THREE_MONTHS,
                removal_policy=RemovalPolicy.DESTROY,
            )
            what = "step" if name in c.INFRA_FUNCTIONS else "assertion"
            role = iam.Role(
                self,
                f"{name.title()}Role",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description=f"ResilienceGate {gate}: the {name} {what} Lambda",
            )
            # Instead of AWSLambdaBasicExecutionRole (any log group): only this function's own group.
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
                )
            )
            fn = lambda_.Function(
                self,
                f"{name.title()}Function",
                description=f"ResilienceGate {gate}: {name} {what}",
                runtime=lambda_.Runtime.PYTHON_3_12,
                architecture=lambda_.Architecture.X86_64,
                handler=f"lambdas.{name}.handler.handler",
                code=lambda_code(root=root, name=name, skip_bundling=skip_bundling),
                memory_size=memory,
                timeout=Duration.seconds(timeout),
                ephemeral_storage_size=Size.mebibytes(storage),
                tracing=lambda_.Tracing.ACTIVE,
                role=role,
                log_group=log_group,
                environment=env,
                vpc=vpc if in_vpc else None,
                vpc_subnets=ec2.SubnetSelection(subnets=list(subnets)) if in_vpc else None,
                security_groups=[self.database_security_group] if in_vpc else None,
            )
            self.functions[name] = fn
            self.roles[name] = role
            self.log_groups[name] = log_group

    @property
    def check_functions(self) -> Mapping[str, lambda_.Function]:
        return {n: self.functions[n] for n in c.CHECK_FUNCTIONS}

    @property
    def verdict_function(self) -> lambda_.Function:
        return self.functions[c.VERDICT_FUNCTION]

    @property
    def timeline_function(self) -> lambda_.Function:
        return self.functions[c.TIMELINE_FUNCTION]

    @property
    def cleanup_function(self) -> lambda_.Function:
        return self.functions[c.CLEANUP_FUNCTION]
