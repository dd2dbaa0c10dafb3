"""The cloud assembly a rehearsal executes: the gate stack synthesized *with* its Lambda bundling, read back
from ``cdk.out`` (template, state machine definition, each function's asset folder).

The synth runs ``app.build`` in a subprocess (the node process of jsii stays out of the test process) into
a folder under :func:`cache_root` keyed by the config text and every source file the stack is built from,
so an unchanged tree reuses it. A function's asset is found the way CloudFormation finds it: the
function's ``Code.S3Key`` (``<hash>.zip``) names an entry of the assembly's asset manifest, whose
``source.path`` is the folder ``infra/lambda_bundling.py`` produced.

Those folders hold wheels for the Lambda runtime (manylinux, CPython 3.12). When this machine's Python is
another version, :func:`runnable_asset` bundles the same asset again with the same bundling code
(:class:`infra.lambda_bundling.PipLocalBundling`, the asset's own ``resgate``/``lambdas`` as the sources)
for this interpreter's version, into a cached sibling folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from tests.infra.support.cfn import render

ROOT = Path(__file__).resolve().parents[3]
# What the stack is built from: a change to any of these is a new assembly.
_SOURCES = ("app.py", "infra", "lambdas", "resgate", "loadgen", "fis_templates")
_SYNTH = """
import json, sys, aws_cdk as cdk, app
from infra import constants as c
a = cdk.App(outdir=sys.argv[1], context={**json.loads(sys.argv[3]), c.CTX_GATE_CONFIG: sys.argv[2]})
app.build(a)
a.synth()
"""
SYNTH_TIMEOUT_S = 600  # the first synth pip-installs the Lambda wheels


def cache_root() -> Path:
    """``$RESGATE_REHEARSAL_CACHE``, else ``<tmp>/resgate-rehearsal`` (assemblies, host bundles)."""
    p = Path(os.environ.get("RESGATE_REHEARSAL_CACHE") or Path(tempfile.gettempdir()) / "resgate-rehearsal")
    p.mkdir(parents=True, exist_ok=True)
    return p


def _tree_hash(config_text: str) -> str:
    h = hashlib.sha256(config_text.encode())
    for name in _SOURCES:
        base = ROOT / name
        files = [base] if base.is_file() else sorted(base.rglob("*"))
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:20]


@dataclass(frozen=True)
class Function:
    """One Lambda function of the template: its handler, environment (rendered), timeout and asset folder."""

    logical_id: str
    name: str  # the gate's name of the function: lambdas.<name>.handler.handler
    handler: str
    environment: dict[str, str]
    timeout_s: int
    memory_mb: int
    asset: Path


@dataclass
class Assembly:
    """A synthesized gate stack: ``outdir`` (cdk.out), its template and the rendered definition."""

    outdir: Path
    template: dict[str, Any]
    assets: dict[str, Any]

    @property
    def resources(self) -> dict[str, Any]:
        return self.template["Resources"]

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == rtype}

    @cached_property
    def definition(self) -> str:
        """The state machine's ``DefinitionString`` with its tokens rendered to fake ARNs (support/cfn.py)."""
        (machine,) = self.of_type("AWS::StepFunctions::StateMachine").values()
        return render(machine["Properties"]["DefinitionString"], self.resources)

    def render(self, value: Any) -> Any:
        return render(value, self.resources)

    @cached_property
    def functions(self) -> dict[str, Function]:
        """``{logical id: Function}`` of every Lambda with a file asset (CDK's own helpers have none)."""
        out = {}
        for lid, res in self.of_type("AWS::Lambda::Function").items():
            p = res["Properties"]
            key = p.get("Code", {}).get("S3Key")
            if not isinstance(key, str) or key.removesuffix(".zip") not in self.assets:
                continue
            source = self.assets[key.removesuffix(".zip")]["source"]
            handler = p["Handler"]
            env = self.render(p.get("Environment", {}).get("Variables", {}))
            out[lid] = Function(
                logical_id=lid,
                name=handler.split(".")[1],
                handler=handler,
                environment={k: str(v) for k, v in env.items()},
                timeout_s=int(p.get("Timeout", 3)),
                memory_mb=int(p.get("MemorySize", 128)),
                asset=self.outdir / source["path"],
            )
        return out


def synthesize(config_path: Path, *, context: Mapping[str, str] | None = None, log: Any = print) -> Assembly:
    """The assembly of the gate stack for ``config_path`` (placeholders for every deployment value; other
    context values, e.g. ``{"ops_items": "true"}``, from ``context``), synthesized with bundling into the
    cache unless an identical one is there. Raises RuntimeError with the synth's output when it fails."""
    context_json = json.dumps(dict(context or {}), sort_keys=True)
    key = _tree_hash(config_path.read_text() + (context_json if context else ""))
    outdir = cache_root() / f"assembly-{key}"
    if not (outdir / "manifest.json").exists():
        log(f"synthesizing the gate stack with bundling into {outdir}")
        t0 = time.monotonic()
        tmp = outdir.with_name(outdir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
        proc = subprocess.run(
            [sys.executable, "-c", _SYNTH, str(tmp), str(config_path), context_json],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=SYNTH_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"synth failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        tmp.rename(outdir)
        log(f"synthesized in {time.monotonic() - t0:.1f} s")
    os.utime(outdir)  # the most recently used assemblies are the ones prune() keeps
    prune(log=log)
    manifest = json.loads((outdir / "manifest.json").read_text())
    (stack,) = [a for a in manifest["artifacts"].values() if a["type"] == "aws:cloudformation:stack"]
    (assets,) = [a for a in manifest["artifacts"].values() if a["type"] == "cdk:asset-manifest"]
    template = json.loads((outdir / stack["properties"]["templateFile"]).read_text())
    files = json.loads((outdir / assets["properties"]["file"]).read_text())["files"]
    return Assembly(outdir, template, files)


# The default config's, its ops_items variant's, the guardrail and pipeline variants' and one older tree's.
KEEP_ASSEMBLIES = 5


def prune(*, keep: int = KEEP_ASSEMBLIES, log: Any = print) -> None:
    """Delete all but the ``keep`` most recently used assemblies (each about 300 MB: every source change
    is a new one) and the host bundles of assets no kept assembly holds."""
    root = cache_root()
    assemblies = sorted(root.glob("assembly-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in assemblies[keep:]:
        log(f"pruning {old.name}")
        shutil.rmtree(old, ignore_errors=True)
    kept_assets = {a.name for d in assemblies[:keep] for a in d.glob("asset.*")}
    for bundle in (root / "host-assets").glob("asset.*"):
        if bundle.name.split("-py", 1)[0] not in kept_assets:
            shutil.rmtree(bundle, ignore_errors=True)


def _has_foreign_wheels(asset: Path) -> bool:
    """True when the asset holds extension modules built for another CPython than this one."""
    mine = f"cpython-{sys.version_info.major}{sys.version_info.minor}-"
    return any(mine not in so.name for so in asset.rglob("*.cpython-*.so"))


_HOST_BUNDLE = """
import sys
from pathlib import Path
from infra.lambda_bundling import PipLocalBundling, requirements_for
asset, out, name, version, *extra = sys.argv[1:]

class ThisPython(PipLocalBundling):
    def command(self, target):
        cmd = super().command(target)
        cmd[cmd.index("--python-version") + 1] = version
        return cmd

# The asset's own sources are the root: what runs is what was bundled, only the wheels differ.
ThisPython(root=Path(asset), requirements=(*requirements_for(name), *extra)).try_bundle(out)
"""
# Diagnosis only, never set by a test: requirements added to every host bundle (e.g. to see how far a run
# gets past a package missing from an asset). Whatever is named here hides a defect of the real asset.
ENV_EXTRA_REQUIREMENTS = "RESGATE_REHEARSAL_EXTRA_REQUIREMENTS"


def runnable_asset(fn: Function, *, log: Any = print) -> Path:
    """The folder this machine runs ``fn`` from: its asset, or the same asset bundled by the same code
    (:class:`infra.lambda_bundling.PipLocalBundling`, in a subprocess: no jsii in this process) for this
    interpreter's Python version, cached by asset hash and version."""
    extra = os.environ.get(ENV_EXTRA_REQUIREMENTS, "").split()
    if not _has_foreign_wheels(fn.asset) and not extra:
        return fn.asset
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    tag = hashlib.sha256(" ".join(extra).encode()).hexdigest()[:8] if extra else ""
    out = cache_root() / "host-assets" / f"{fn.asset.name}-py{version}{'-' + tag if tag else ''}"
    if not (out / ".complete").exists():
        log(f"bundling {fn.asset.name} ({fn.name}) for Python {version}" + (f" + {extra}" if extra else ""))
        t0 = time.monotonic()
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        proc = subprocess.run(
            [sys.executable, "-c", _HOST_BUNDLE, str(fn.asset), str(out), fn.name, version, *extra],
            cwd=ROOT,
            env={**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"},
            capture_output=True,
            text=True,
            timeout=SYNTH_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"bundling {fn.asset.name} for Python {version} failed:\n{proc.stderr[-3000:]}"
            )
        (out / ".complete").write_text(version)
        log(f"bundled {fn.asset.name} in {time.monotonic() - t0:.1f} s")
    return out
