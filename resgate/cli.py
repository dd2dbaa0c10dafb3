"""The `resgate` command: run a gate, validate a config, query evidence, print a past run's report.

Exit codes: 0 pass, 1 gate failed, 2 could not run (bad config, missing dependency, gate error).
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

from resgate.contract.constants import EXIT_CANNOT_RUN, EXIT_FAIL, EXIT_PASS
from resgate.contract.errors import ConfigError, ConfigErrors, GateError

DEFAULT_CONFIG = "paperbroker.yaml"


def default_config_path() -> Path:
    """The packaged gate config for paperbroker, used when `resgate run` gets no config."""
    return Path(str(resources.files("resgate") / "configs" / DEFAULT_CONFIG))


def _load(path: str | None) -> tuple[object, str]:
    from resgate.config import load_config

    p = Path(path) if path else default_config_path()
    cfg = load_config(p)
    return cfg, p.read_text()


def _config_errors(e: ConfigError) -> str:
    """Every error of an invalid config, one a line."""
    errors = e.errors if isinstance(e, ConfigErrors) else [e]
    head = f"resgate: invalid gate config ({len(errors)} error{'s' if len(errors) != 1 else ''}):"
    return "\n".join([head, *(f"  {err}" for err in errors)])


def cmd_run(args: argparse.Namespace) -> int:
    from resgate.evidence.report import verdict_table
    from resgate.runner.gate import run_gate
    from resgate.runner.progress import Progress

    try:
        cfg, text = _load(args.config)
    except ConfigError as e:
        print(_config_errors(e), file=sys.stderr)
        print("nothing was started.", file=sys.stderr)
        return EXIT_CANNOT_RUN
    outcome = run_gate(
        cfg,
        evidence_root=args.evidence_root,
        progress=Progress(quiet=args.quiet),  # type: ignore[arg-type]
        config_text=text,
    )
    print()
    if outcome.results:
        print(verdict_table(outcome.results))
        print()
    v = outcome.verdict
    print(f"VERDICT: {v['result']}" + (f" — {v['reason']}" if v.get("reason") else ""))
    if outcome.evidence_dir:
        print(f"evidence: {outcome.evidence_dir}")
        print(f"report:   {outcome.evidence_dir / 'report.md'}")
    return outcome.exit_code


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        cfg, _ = _load(args.config)
    except ConfigError as e:
        print(_config_errors(e), file=sys.stderr)
        return EXIT_CANNOT_RUN
    print(f"ok: gate {cfg.name!r} ({len(cfg.faults)} faults, checks: {', '.join(cfg.enabled_checks())})")  # type: ignore[attr-defined]
    return EXIT_PASS


def cmd_query(args: argparse.Namespace) -> int:
    from resgate.evidence.query import format_table, run_query

    try:
        cols, rows = run_query(args.root, args.sql)
    except ConfigError as e:
        print(f"resgate: {e}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    if args.json:
        print(json.dumps([dict(zip(cols, r, strict=True)) for r in rows], default=str, indent=2))
    else:
        print(format_table(cols, rows))
    return EXIT_PASS


def cmd_report(args: argparse.Namespace) -> int:
    from resgate.contract.layout import find_run, list_runs

    if args.run_id in ("latest", "last"):
        runs = list_runs(args.root)
        run = runs[-1] if runs else None
    else:
        run = find_run(args.root, args.run_id)
    if run is None:
        print(f"resgate: no run {args.run_id!r} under {args.root}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    report = run / "report.md"
    print(report.read_text() if report.exists() else f"(no report.md in {run})")
    verdict = run / "verdict.json"
    if verdict.exists():
        v = json.loads(verdict.read_text())
        return {"PASS": EXIT_PASS, "FAIL": EXIT_FAIL}.get(v.get("result"), EXIT_CANNOT_RUN)
    return EXIT_CANNOT_RUN


def cmd_runs(args: argparse.Namespace) -> int:
    from resgate.contract.layout import list_runs

    for run in list_runs(args.root):
        verdict = run / "verdict.json"
        result = json.loads(verdict.read_text()).get("result", "?") if verdict.exists() else "?"
        print(f"{run.name.removeprefix('run_id='):<28} {result:<7} {run}")
    return EXIT_PASS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="resgate", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the gate (default: the packaged paperbroker config)")
    r.add_argument("config", nargs="?", help="gate config YAML (default: paperbroker)")
    r.add_argument("--evidence-root", help="where to write evidence (default: the config's evidence.root)")
    r.add_argument("--quiet", action="store_true", help="print only the verdict")
    r.set_defaults(fn=cmd_run)
    v = sub.add_parser("validate", help="validate a gate config and exit")
    v.add_argument("config", nargs="?")
    v.set_defaults(fn=cmd_validate)
    q = sub.add_parser(
        "query",
        help="SQL over the evidence with DuckDB (tables: ledger, checks, faults, health, "
        "verdicts, load_stats)",
    )
    q.add_argument("sql")
    q.add_argument("--root", default="evidence")
    q.add_argument("--json", action="store_true")
    q.set_defaults(fn=cmd_query)
    rep = sub.add_parser("report", help="print a past run's report (RUN_ID or 'latest')")
    rep.add_argument("run_id")
    rep.add_argument("--root", default="evidence")
    rep.set_defaults(fn=cmd_report)
    ls = sub.add_parser("runs", help="list past runs")
    ls.add_argument("--root", default="evidence")
    ls.set_defaults(fn=cmd_runs)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except (ConfigError, GateError) as e:
        print(f"resgate: {e}", file=sys.stderr)
        return EXIT_CANNOT_RUN


if __name__ == "__main__":
    sys.exit(main())
