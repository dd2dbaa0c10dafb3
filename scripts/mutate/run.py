"""``make mutate``: mutation testing of the pure checker and evidence code, and of the SQL detectors.

Reads ``scripts/mutate/targets.toml``:

- ``[[python]]`` targets: a module, optionally the functions to mutate, and the tests that must kill its
  mutants. Every mutant :mod:`scripts.mutate.mutants` writes is run against those tests in a child
  forked from this process (pytest and the libraries preloaded, nothing of resgate), where an import hook
  (``scripts/mutate/child.py``) serves the mutant's source for the module; nothing on disk changes.
  Integration tests share one embedded Postgres started for the run.
- ``[[sql]]`` mutants: hand-made semantic changes of a detector's SQL (a join on the wrong columns, a
  boundary moved, a rule dropped) that a generic tool cannot write; each replaces one exact text of its
  module and runs the integration tests of its detector.
- ``[[equivalent]]``: mutants that cannot change any verdict, each with the reason; they are left out of
  the score and listed.

A mutant is killed when its tests fail (or run past the timeout), survives when they pass. The score is
killed / (mutants - equivalent). Prints the score per target and overall, the survivors, the run time,
and writes everything to ``benchmarks/results/mutate.json`` (``--out``). Exit code 0 when the score is at
least ``--min-score`` (default 90), 1 below it, 2 when the unmutated tests fail (nothing can be judged).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.mutate.child import install  # noqa: E402
from scripts.mutate.mutants import mutants  # noqa: E402

# -x: the first failing test kills the mutant. Each run also gets ``--timeout`` (pytest-timeout, seconds per
# test): a mutant that loops forever fails its test. Unit tests get 20 s, integration tests 300 s (a
# target's ``test_timeout`` overrides it).
PYTEST_FLAGS = ["-q", "-x", "-p", "no:xdist", "-p", "no:cacheprovider", "--no-header"]


@dataclass
class Outcome:
    id: str
    target: str
    kind: str  # python | sql
    line: int
    operator: str
    before: str
    after: str
    status: str  # killed | survived | timeout | equivalent
    seconds: float
    why: str = ""


def _module_path(module: str) -> str:
    """The module's file, found without importing it into this process: children are forked from it,
    and a module already imported here could not be replaced by a mutant there."""
    base = ROOT / Path(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return str(path)
    raise SystemExit(f"mutate: cannot find module {module}")


def _preload() -> None:
    """Import pytest, its plugins, the heavy third-party libraries and the test fixtures' own modules once
    (the embedded-service fixtures import only resgate.contract and resgate.local, which no target is);
    each forked child then starts in a fraction of the time."""
    from importlib.metadata import entry_points

    import hypothesis.strategies  # noqa: F401
    import psycopg
    import psycopg.rows  # noqa: F401
    import pytest  # noqa: F401

    import resgate.testing.fixtures  # noqa: F401

    for ep in entry_points(group="pytest11"):
        if not ep.value.startswith(("resgate", "scripts", "tests")):
            try:
                ep.load()
            except Exception:  # a plugin that cannot load here will not load in the child either
                pass


def _fork_child(module: str, source: str, tests: list[str]) -> int:
    """Fork a child that serves ``source`` for ``module`` and runs pytest on ``tests``; return its pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 3
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.chdir(ROOT)
        install(module, source)
        import pytest

        code = int(pytest.main([*PYTEST_FLAGS, *tests]))
    finally:
        os._exit(code)


def _run_all(items: list[tuple[str, str, list[str], float]], jobs: int) -> list[tuple[str, float]]:
    """Run ``(module, source, tests, timeout_s)`` items, ``jobs`` at a time; ``[(status, seconds)]``."""
    results: list[tuple[str, float] | None] = [None] * len(items)
    running: dict[int, tuple[int, float, float]] = {}  # pid -> (index, started, timeout)
    nxt = 0
    while nxt < len(items) or running:
        while nxt < len(items) and len(running) < max(1, jobs):
            module, source, tests, timeout_s = items[nxt]
            running[_fork_child(module, source, tests)] = (nxt, time.monotonic(), timeout_s)
            nxt += 1
        pid, status = os.waitpid(-1, os.WNOHANG)
        now = time.monotonic()
        if pid == 0:
            for p, (i, t0, limit) in list(running.items()):
                if now - t0 > limit:
                    os.killpg(p, signal.SIGKILL)
                    os.waitpid(p, 0)
                    del running[p]
                    results[i] = ("timeout", now - t0)
            time.sleep(0.05)
            continue
        if pid not in running:
            continue
        i, t0, _limit = running.pop(pid)
        rc = os.waitstatus_to_exitcode(status)
        if rc == 5:
            raise SystemExit(f"mutate: no tests collected from {items[i][2]}")
        results[i] = ("survived" if rc == 0 else "killed", now - t0)
    return [r for r in results if r is not None]


def _baseline(module: str, tests: list[str], jobs: int) -> float:
    """Run the tests against the module's own source (through the same hook); return the time taken."""
    source = Path(_module_path(module)).read_text(encoding="utf-8")
    ((status, seconds),) = _run_all([(module, source, tests, 900.0)], jobs)
    if status != "survived":
        print(f"mutate: the unmutated tests fail for {module}: {' '.join(tests)}", file=sys.stderr)
        raise SystemExit(2)
    return seconds


def _jobs(config: dict, only: str | None, select: str | None) -> Iterable[tuple[str, dict]]:
    for kind in ("python", "sql"):
        if only and only != kind:
            continue
        for t in config.get(kind, []):
            name = t.get("id") or t["module"]
            if select and select not in name and select not in t["module"]:
                continue
            yield kind, t


def _shared_postgres() -> tuple[subprocess.Popen[str], str]:
    """One embedded Postgres for every mutant's integration tests (``RESGATE_PG_DSN``), in its own process
    (it stops when its stdin closes), so each run does not start a cluster of its own."""
    code = (
        "import sys\n"
        "from resgate.local.postgres import EmbeddedPostgres\n"
        "with EmbeddedPostgres() as pg:\n"
        "    print(pg.dsn, flush=True)\n"
        "    sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    dsn = proc.stdout.readline().strip()
    if not dsn:
        raise SystemExit("mutate: the shared Postgres did not start")
    return proc, dsn


def _todo(kind: str, target: dict) -> list[tuple[str, int, str, str, str, str]]:
    """``[(id, line, operator, before, after, mutated source)]`` for one target."""
    module = target["module"]
    if kind == "python":
        functions = set(target["functions"]) if "functions" in target else None
        return [
            (m.id, m.line, m.operator, m.before, m.after, m.source)
            for m in mutants(_module_path(module), module, functions)
        ]
    original = Path(_module_path(module)).read_text(encoding="utf-8")
    n = original.count(target["old"])
    if n != 1:
        raise SystemExit(
            f"mutate: SQL mutant {target['id']}: its text occurs {n} times in {module} (must be once)"
        )
    line = original[: original.index(target["old"])].count("\n") + 1
    mutated = original.replace(target["old"], target["new"])
    return [(target["id"], line, "sql", target["old"], target["new"], mutated)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default=str(ROOT / "scripts" / "mutate" / "targets.toml"))
    ap.add_argument("--only", choices=["python", "sql"], help="run only one family of mutants")
    ap.add_argument("--select", help="only targets whose module or id contains this text")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="mutants run in parallel (default 2)")
    ap.add_argument("--min-score", type=float, default=90.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mutate.json"))
    ap.add_argument(
        "--combine",
        nargs="+",
        metavar="JSON",
        help="merge the results of separate runs into --out (later files win), run nothing",
    )
    args = ap.parse_args(argv)
    if args.combine:
        parts = [json.loads(Path(f).read_text(encoding="utf-8")) for f in args.combine]
        # A later file's outcome for the same mutant replaces an earlier one (a target run again).
        by_id = {o["id"]: Outcome(**o) for part in parts for o in part["outcomes"]}
        merged = list(by_id.values())
        return _finish(summarize(merged, sum(p["run_time_s"] for p in parts)), args)

    config = tomllib.loads(Path(args.targets).read_text(encoding="utf-8"))
    equivalent = {e["id"]: e["why"] for e in config.get("equivalent", [])}
    t_start = time.monotonic()
    jobs = list(_jobs(config, args.only, args.select))
    pg = None
    if any(kind == "sql" for kind, _t in jobs) and not os.environ.get("RESGATE_PG_DSN"):
        pg, os.environ["RESGATE_PG_DSN"] = _shared_postgres()
    _preload()
    preloaded = [t["module"] for _k, t in jobs if t["module"] in sys.modules]
    if preloaded:
        raise SystemExit(f"mutate: {preloaded} are imported by the preload; they cannot be mutated")
    outcomes: list[Outcome] = []
    baselines: dict[str, float] = {}
    planned: list[tuple[str, dict, str, list, list[str], float]] = []
    try:
        for kind, target in jobs:
            module = target["module"]
            per_test = target.get("test_timeout", 20 if kind == "python" else 300)
            tests = ["--timeout", str(per_test), *target["tests"]]
            key = f"{module} {' '.join(tests)}"
            if key not in baselines:
                baselines[key] = _baseline(module, tests, args.jobs)
            todo = _todo(kind, target)
            label = module if kind == "python" else target["id"]
            print(f"{label}: {len(todo)} mutant(s), baseline {baselines[key]:.1f}s", flush=True)
            planned.append((kind, target, label, todo, tests, max(45.0, 3 * baselines[key])))
        # Every mutant of every target in one pool, so -j also runs one-mutant (SQL) targets side by side.
        items = [(p[1]["module"], t[5], p[4], p[5]) for p in planned for t in p[3] if t[0] not in equivalent]
        statuses = iter(_run_all(items, args.jobs))
        for kind, target, label, todo, _tests, _timeout in planned:
            why = target.get("why", "") if kind == "sql" else ""
            for mid, line, op, before, after, _source in todo:
                if mid in equivalent:
                    o = Outcome(mid, label, kind, line, op, before, after, "equivalent", 0.0, equivalent[mid])
                else:
                    status, seconds = next(statuses)
                    o = Outcome(mid, label, kind, line, op, before, after, status, round(seconds, 2), why)
                outcomes.append(o)
                if o.status == "survived":
                    print(f"  SURVIVED {o.id}: {o.before!r} -> {o.after!r}", flush=True)
    finally:
        # The results are written before the shared Postgres stops (a slow stop must not lose them).
        code = _finish(summarize(outcomes, time.monotonic() - t_start), args)
        if pg is not None:
            assert pg.stdin is not None
            pg.stdin.close()
            try:
                pg.wait(300)
            except subprocess.TimeoutExpired:
                print(f"mutate: the shared Postgres (pid {pg.pid}) is still stopping", file=sys.stderr)
    return code


def _finish(report: dict, args: argparse.Namespace) -> int:
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_report(report)
    print(f"written to {os.path.relpath(args.out, ROOT)}")
    return 0 if report["score"] is not None and report["score"] >= args.min_score else 1


def summarize(outcomes: list[Outcome], elapsed: float) -> dict:
    """``{score, killed, survived, equivalent, mutants, run_time_s, targets: {name: {...}}, survivors,
    equivalents, outcomes}``."""

    def tally(items: list[Outcome]) -> dict:
        killed = sum(o.status in ("killed", "timeout") for o in items)
        survived = sum(o.status == "survived" for o in items)
        equiv = sum(o.status == "equivalent" for o in items)
        judged = killed + survived
        return {
            "mutants": len(items),
            "killed": killed,
            "survived": survived,
            "equivalent": equiv,
            "score": round(100.0 * killed / judged, 1) if judged else None,
        }

    targets: dict[str, list[Outcome]] = {}
    for o in outcomes:
        targets.setdefault(f"{o.kind}:{o.target}" if o.kind == "python" else "sql", []).append(o)
    return {
        **tally(outcomes),
        "run_time_s": round(elapsed, 1),
        "targets": {name: tally(items) for name, items in targets.items()},
        "survivors": [asdict(o) for o in outcomes if o.status == "survived"],
        "equivalents": [asdict(o) for o in outcomes if o.status == "equivalent"],
        "outcomes": [asdict(o) for o in outcomes],
    }


def print_report(report: dict) -> None:
    print()
    print(f"{'target':<60} {'mutants':>7} {'killed':>6} {'surv.':>5} {'equiv.':>6} {'score':>6}")
    for name, t in report["targets"].items():
        score = "-" if t["score"] is None else f"{t['score']:.1f}%"
        print(
            f"{name:<60} {t['mutants']:>7} {t['killed']:>6} {t['survived']:>5} "
            f"{t['equivalent']:>6} {score:>6}"
        )
    score = "-" if report["score"] is None else f"{report['score']:.1f}%"
    print(
        f"{'TOTAL':<60} {report['mutants']:>7} {report['killed']:>6} {report['survived']:>5} "
        f"{report['equivalent']:>6} {score:>6}"
    )
    print(f"run time: {report['run_time_s']:.0f}s")
    if report["survivors"]:
        print("\nsurvivors:")
        for s in report["survivors"]:
            print(f"  {s['id']}: {s['before']!r} -> {s['after']!r}")
    if report["equivalents"]:
        print("\nequivalent (left out of the score):")
        for s in report["equivalents"]:
            print(f"  {s['id']}: {s['why']}")


if __name__ == "__main__":
    sys.exit(main())
