"""Run the resilience suite (scenarios.yaml) and write benchmarks/resilience-report.md from its evidence.

Each scenario is a full local gate run (``resgate run``, load on, its own evidence) of base.yaml with the
scenario's faults; then the detection matrix runs each seeded bug under the faults that expose it. Progress
prints scenario i of n, the elapsed time and each verdict as it ends. Ctrl-C stops the current run
cleanly (the gate stops its faults and load on SIGINT) and still writes the report of what finished.

    python benchmarks/resilience/run_suite.py                 # everything (about 40 minutes here)
    python benchmarks/resilience/run_suite.py --only kill-matcher --no-matrix
    python benchmarks/resilience/run_suite.py --report-only   # regenerate the report from the evidence
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

from report import SuiteRun, write_report  # noqa: E402

DEFAULT_EVIDENCE = REPO / "benchmarks" / "resilience" / "evidence"
DEFAULT_REPORT = REPO / "benchmarks" / "resilience-report.md"
RUN_TIMEOUT_S = 900


class SuiteError(Exception):
    """A bad scenarios file or base config: names the entry and what is wrong."""


@dataclass(frozen=True)
class Scenario:
    """One gate run of the suite: ``kind`` is ``scenario`` or ``matrix``; ``expect`` is None (must pass) or
    ``{check, count?}`` (must fail on that check)."""

    name: str
    title: str
    kind: str
    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    expect: dict[str, str] | None = None


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``over`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _config(base: Mapping[str, Any], name: str, entry: Mapping[str, Any], faults: list) -> dict[str, Any]:
    cfg = _merge(base, {"load": entry.get("load") or {}, "checks": entry.get("checks") or {}})
    cfg["faults"] = copy.deepcopy(faults)
    # `services: {service: {...}}` is merged into a base service for this entry (a leader loss needs a
    # standby, and a standby answers /ready with 503 by design); `setup:` replaces the target's setup (an
    # overload needs a database of known capacity: paperbroker.slow_db).
    local = cfg["target"]["local"]
    overrides = dict(entry.get("services") or {})
    unknown = sorted(set(overrides) - {svc["name"] for svc in local["services"]})
    if unknown:
        raise SuiteError(f"{name}.services: {unknown} are not services of the base config")
    local["services"] = [_merge(svc, overrides.get(svc["name"]) or {}) for svc in local["services"]]
    if entry.get("setup"):
        local["setup"] = str(entry["setup"])
    cfg["gate"] = {**cfg["gate"], "name": f"resilience-{name}"}
    # Absolute, so the merged file works from the evidence folder it is written to.
    cfg["load"]["locustfile"] = str((REPO / cfg["load"]["locustfile"]).resolve())
    return cfg


def load_scenarios(path: Path, base_path: Path) -> list[Scenario]:
    """Parse scenarios.yaml over base.yaml into :class:`Scenario` s (scenarios first, then the matrix)."""
    base = yaml.safe_load(base_path.read_text())
    doc = yaml.safe_load(path.read_text()) or {}
    out: list[Scenario] = []
    seen: set[str] = set()
    for i, s in enumerate(doc.get("scenarios") or []):
        where = f"{path.name}: scenarios[{i}]"
        if not isinstance(s, Mapping) or not s.get("name") or not s.get("faults"):
            raise SuiteError(f"{where}: needs a name and a non-empty faults list")
        if s["name"] in seen:
            raise SuiteError(f"{where}: duplicate name {s['name']!r}")
        seen.add(s["name"])
        out.append(
            Scenario(
                s["name"], s.get("title", s["name"]), "scenario", _config(base, s["name"], s, s["faults"])
            )
        )
    named_faults = doc.get("matrix_faults") or {}
    for i, m in enumerate(doc.get("matrix") or []):
        where = f"{path.name}: matrix[{i}]"
        if not isinstance(m, Mapping) or not m.get("bug") or not m.get("check"):
            raise SuiteError(f"{where}: needs bug and check")
        if m.get("faults") not in named_faults:
            raise SuiteError(f"{where}.faults: {m.get('faults')!r} is not one of {sorted(named_faults)}")
        name = f"bug-{m['bug']}"
        env = {"PAPERBROKER_BUGS": m["bug"], **{k: str(v) for k, v in (m.get("env") or {}).items()}}
        expect = {"check": m["check"], **({"count": m["count"]} if m.get("count") else {})}
        cfg = _config(base, name, m, named_faults[m["faults"]])
        out.append(Scenario(name, f"seeded bug `{m['bug']}`", "matrix", cfg, env, expect))
    return out


def _run_dir(output: str) -> Path | None:
    for line in output.splitlines():
        if line.startswith("evidence:"):
            return Path(line.split(":", 1)[1].strip())
    return None


def run_one(s: Scenario, root: Path) -> SuiteRun:
    """Run one scenario as ``resgate run`` in its own process group; SIGINT reaches it, and it cleans up."""
    cfg_path = root / "configs" / f"{s.name}.yaml"
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump(s.config, sort_keys=False))
    log = root / "logs" / f"{s.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "resgate.cli", "run", str(cfg_path), "--evidence-root", str(root / "runs")]
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env={**os.environ, **s.env}, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            rc = proc.wait(timeout=RUN_TIMEOUT_S)
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
            raise
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(timeout=120)
    return SuiteRun(
        scenario=s.name,
        title=s.title,
        kind=s.kind,
        expect=s.expect,
        exit_code=rc,
        run_dir=_run_dir(log.read_text()),
        wall_s=time.monotonic() - t0,
        log=log,
    )


def _index_path(root: Path) -> Path:
    return root / "suite.jsonl"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", type=Path, default=HERE / "scenarios.yaml")
    ap.add_argument("--base", type=Path, default=HERE / "base.yaml")
    ap.add_argument("--evidence", type=Path, default=DEFAULT_EVIDENCE, help="where the runs' evidence goes")
    ap.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    ap.add_argument("--only", nargs="*", default=None, help="scenario names (bug-<name> for a matrix row)")
    ap.add_argument("--no-matrix", action="store_true", help="skip the seeded-bug detection matrix")
    ap.add_argument("--report-only", action="store_true", help="regenerate the report from the evidence")
    args = ap.parse_args(argv)
    try:
        scenarios = load_scenarios(args.scenarios, args.base)
    except (SuiteError, OSError, yaml.YAMLError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.only is not None:
        unknown = sorted(set(args.only) - {s.name for s in scenarios})
        if unknown:
            print(f"error: --only: no scenario named {unknown}", file=sys.stderr)
            return 2
        scenarios = [s for s in scenarios if s.name in args.only]
    if args.no_matrix:
        scenarios = [s for s in scenarios if s.kind != "matrix"]
    root = args.evidence.resolve()
    root.mkdir(parents=True, exist_ok=True)
    index = _index_path(root)
    runs: list[SuiteRun] = []
    interrupted = False
    started = time.monotonic()
    if args.report_only:
        runs = [
            SuiteRun.from_dict(json.loads(line)) for line in index.read_text().splitlines() if line.strip()
        ]
    else:
        index.write_text("")
        for i, s in enumerate(scenarios, 1):
            print(f"[{i}/{len(scenarios)}] {s.name}: {s.title} ...", flush=True)
            try:
                r = run_one(s, root)
            except KeyboardInterrupt:
                print("interrupted: the current run was stopped; writing the report of what finished")
                interrupted = True
                break
            runs.append(r)
            with index.open("a") as f:
                f.write(json.dumps(r.to_dict()) + "\n")
            print(
                f"[{i}/{len(scenarios)}] {s.name}: {r.outcome_text()} in {r.wall_s:.0f}s "
                f"(elapsed {time.monotonic() - started:.0f}s)",
                flush=True,
            )
    ok = write_report(
        runs,
        args.report,
        total_scenarios=len(scenarios),
        interrupted=interrupted,
        suite_s=time.monotonic() - started if not args.report_only else None,
        command=" ".join(["python", "benchmarks/resilience/run_suite.py", *(argv or sys.argv[1:])]),
    )
    print(f"report: {args.report}")
    return 0 if ok and not interrupted else 1


if __name__ == "__main__":
    sys.exit(main())
