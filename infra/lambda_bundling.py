"""How the gate's Lambda assets are built: the project's own packages plus each function's wheels.

Each function's asset holds the project's own packages (``resgate``, ``lambdas``) and its third-party
requirements (:data:`infra.constants.LAMBDA_BASE_REQUIREMENTS` plus the function's extras, plus
:data:`KAFKA_REQUIREMENTS` for the functions that read topics), installed by
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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from infra import constants as c
from resgate.contract.errors import GateError

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
# The functions that read topics (IN_VPC, TOPIC_CLIENTS) sign MSK IAM tokens with AWS's signer when the gate's
# kafka section says AWS_MSK_IAM (imported only then); the pin follows constraints.txt.
KAFKA_REQUIREMENTS = ("aws-msk-iam-sasl-signer-python==1.0.2",)


def requirements_for(name: str) -> tuple[str, ...]:
    """The pip requirement specifiers of function ``name``."""
    kafka = KAFKA_REQUIREMENTS if name in (*c.IN_VPC, *c.TOPIC_CLIENTS, *c.FAULT_FUNCTIONS) else ()
    return (*c.LAMBDA_BASE_REQUIREMENTS, *c.LAMBDA_EXTRA_REQUIREMENTS.get(name, ()), *kafka)


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
