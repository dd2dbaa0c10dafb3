"""The `resgate` command: run a gate, validate a config, query evidence, print a past run's report.

Exit codes: 0 pass, 1 gate failed, 2 could not run (bad config, missing dependency, gate error).
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from resgate.contract.constants import EXIT_CANNOT_RUN, EXIT_PASS
from resgate.contract.errors import ConfigError, ConfigErrors, GateError

if TYPE_CHECKING:
    from resgate.evidence.store import FolderStore
    from resgate.scaffold import InitOptions

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
    from resgate.evidence.scorecard import render_scorecard
    from resgate.runner.gate import run_gate
    from resgate.runner.progress import Progress

    try:
        cfg, text = _load(args.config)
        cfg = cfg.with_profile(args.profile)  # type: ignore[attr-defined]
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
    if outcome.scorecard is not None and outcome.scorecard.faults:
        print(render_scorecard(outcome.scorecard))
        print()
    v = outcome.verdict
    print(f"VERDICT: {v['result']}" + (f" — {v['reason']}" if v.get("reason") else ""))
    if outcome.evidence_dir:
        print(f"evidence: {outcome.evidence_dir}")
        print(f"report:   {outcome.evidence_dir / 'report.md'}")
    return outcome.exit_code


def cmd_validate(args: argparse.Namespace) -> int:
    from resgate.config.runnable import check_runnable

    try:
        cfg, _ = _load(args.config)
        check_runnable(cfg)  # type: ignore[arg-type]
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
    store = _run_store(args.root, run)
    print(store.read_text("report") if store.exists("report") else f"(no report.md in {run})")
    if store.exists("verdicts"):
        from resgate.evidence.verdict import exit_code_of

        return exit_code_of(json.loads(store.read_text("verdicts")))
    return EXIT_CANNOT_RUN


def _run_store(root: str, run: Path) -> FolderStore:
    """The store of a run folder found under ``root`` (its verdict is in the ``verdicts`` table's folder)."""
    from resgate.contract.layout import RunKey
    from resgate.evidence.store import FolderStore

    return FolderStore(root, RunKey.parse(run.relative_to(root))[1], create=False)


def cmd_runs(args: argparse.Namespace) -> int:
    from resgate.contract.layout import list_runs

    for run in list_runs(args.root):
        store = _run_store(args.root, run)
        verdict = json.loads(store.read_text("verdicts")) if store.exists("verdicts") else {}
        result = verdict.get("result", "?")
        print(f"{run.name.removeprefix('run_id='):<28} {result:<7} {run}")
    return EXIT_PASS


def _find_run(root: str, run_id: str, gate: str | None = None) -> Path | None:
    """A run folder by id, or the newest run (of ``gate`` when given) for ``latest``/``last``."""
    from resgate.contract.layout import find_run, list_runs

    if run_id in ("latest", "last"):
        runs = [r for r in list_runs(root) if gate is None or r.parent.parent.name == f"gate={gate}"]
        return runs[-1] if runs else None
    return find_run(root, run_id)


def cmd_baseline_set(args: argparse.Namespace) -> int:
    """Record a passing run's phases as its gate's golden profile."""
    from resgate.evidence.golden import profile_of_run, write_golden

    run = _find_run(args.root, args.run_id, args.gate)
    if run is None:
        print(f"resgate: no run {args.run_id!r} under {args.root}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    store = _run_store(args.root, run)
    profile = profile_of_run(store)
    where = write_golden(store, profile)
    n = len(profile.phases)
    print(f"golden profile of gate {profile.gate}: run {profile.run_id} ({n} phases) -> {where}")
    return EXIT_PASS


def cmd_baseline_show(args: argparse.Namespace) -> int:
    """Print a gate's golden profile (the only gate with one when --gate is not given)."""
    from resgate.checks.slo.golden import GoldenProfile
    from resgate.contract.layout import GOLDEN_PROFILE_FILE
    from resgate.evidence.golden import golden_path, profile_text

    if args.gate:
        paths = [golden_path(args.root, args.gate)]
    else:
        paths = sorted(Path(args.root).glob(f"gate=*/golden/{GOLDEN_PROFILE_FILE}"))
        if len(paths) > 1:
            gates = [p.parent.parent.name.removeprefix("gate=") for p in paths]
            raise ConfigError(f"several gates have a golden profile {gates}: name one", where="--gate")
    if not paths or not paths[0].is_file():
        print(f"no golden profile under {args.root}: no baseline (runs are not judged against one)")
        return EXIT_PASS
    profile = GoldenProfile.from_dict(json.loads(paths[0].read_text()), where=str(paths[0]))
    print(profile_text(profile, str(paths[0]), as_json=args.json))
    return EXIT_PASS


def add_baseline_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``resgate baseline set RUN|latest`` and ``resgate baseline show``."""
    b = sub.add_parser("baseline", help="the gate's golden profile: set it from a passing run, show it")
    b_sub = b.add_subparsers(dest="baseline_command", required=True)
    bs = b_sub.add_parser(
        "set", help="record a passing run (RUN_ID or 'latest') as its gate's golden profile"
    )
    bs.add_argument("run_id")
    bs.add_argument("--root", default="evidence")
    bs.add_argument("--gate", help="with 'latest': the newest run of this gate")
    bs.set_defaults(fn=cmd_baseline_set)
    bw = b_sub.add_parser("show", help="print the golden profile")
    bw.add_argument("--root", default="evidence")
    bw.add_argument("--gate", help="the gate (needed when several gates have one)")
    bw.add_argument("--json", action="store_true")
    bw.set_defaults(fn=cmd_baseline_show)


def _ask(question: str, default: str = "") -> str:
    answer = input(f"{question}{f' [{default}]' if default else ''}: ").strip()
    return answer or default


def _init_options(args: argparse.Namespace) -> InitOptions:
    from resgate.scaffold import InitOptions, parse_service

    services = [parse_service(s) for s in args.service]
    name, database = args.name, args.database
    if not services:
        if not sys.stdin.isatty():
            raise ConfigError("give at least one service (NAME=COMMAND)", where="--service")
        name = name or _ask("gate name (lowercase letters, digits, - and _)", "myservice")
        svc = _ask("the service to put under load: its name", "web")
        command = _ask(
            f"the command that starts {svc} (write ${{port}} for the port it must listen on)",
            "${python} app.py --port ${port}",
        )
        services = [(svc, command)]
        database = database or _ask("does it use a Postgres database? (y/n)", "n").lower().startswith("y")
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}", where="--env")
        env[key] = value
    return InitOptions(
        name=name or "myservice",
        services=tuple(services),
        expose=args.expose,
        replicas=args.replicas,
        health_path=args.health_path,
        database=database,
        locustfile=args.locustfile,
        users=args.users,
        duration_s=args.duration,
        p95_ms=args.p95_ms,
        env=env,
    )


def cmd_init(args: argparse.Namespace) -> int:
    from resgate.scaffold import scaffold

    out = Path(args.out)
    try:
        cfg = scaffold(_init_options(args), out, force=args.force, write_locustfile=args.write_locustfile)
    except ConfigError as e:
        print(_config_errors(e), file=sys.stderr)
        print("nothing was written.", file=sys.stderr)
        return EXIT_CANNOT_RUN
    print(out.read_text(), end="")
    services = ", ".join(s.name for s in cfg.target.services)
    print(f"\nwrote {out}: gate {cfg.name!r}, services {services}, {len(cfg.faults)} faults")
    if args.write_locustfile:
        print(f"wrote {out.parent / args.locustfile}: a starter locustfile")
    print(f"next: resgate run {out}")
    return EXIT_PASS


def cmd_aws(args: argparse.Namespace) -> int:
    from resgate import aws_cli

    clients = aws_cli.Clients.create(region=args.region, aws_profile=args.aws_profile)
    outputs = aws_cli.stack_outputs(clients.cloudformation, args.stack)
    if args.aws_command == "start":
        extra = json.loads(args.input) if args.input else None
        return aws_cli.start(
            clients, outputs, out=sys.stdout, profile=args.profile, wait=args.wait, extra_input=extra
        )
    if args.aws_command == "report":
        return aws_cli.report(clients, outputs, args.run_id, out=sys.stdout)
    if args.aws_command == "baseline-set":
        return aws_cli.set_baseline(clients, outputs, args.run_id, out=sys.stdout)
    if args.aws_command == "baseline-show":
        return aws_cli.show_baseline(clients, outputs, out=sys.stdout, as_json=args.json)
    return aws_cli.query(clients, outputs, args.sql, out=sys.stdout, as_json=args.json)


def add_aws_parser(sub: argparse._SubParsersAction) -> None:
    """``resgate aws start|report|query --stack NAME``: the gate on a stack (:mod:`resgate.aws_cli`)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack", required=True, help="the gate stack (ResGate-<gate>)")
    common.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    common.add_argument("--aws-profile", help="AWS named profile for credentials")
    aws = sub.add_parser("aws", help="run, report and query the gate on a deployed stack")
    aws_sub = aws.add_subparsers(dest="aws_command", required=True)
    st = aws_sub.add_parser("start", parents=[common], help="start a gate execution (--wait: follow it)")
    st.add_argument("--profile", help="the gate config's load/fault profile (e.g. nightly)")
    st.add_argument("--wait", action="store_true", help="print the phases; exit 0/1/2 with the verdict")
    st.add_argument("--input", help='more execution input, JSON (e.g. \'{"waits": {"lock_wait_s": 900}}\')')
    rep = aws_sub.add_parser("report", parents=[common], help="print a run's report.md (RUN_ID or 'latest')")
    rep.add_argument("run_id")
    bl = aws_sub.add_parser(
        "baseline-set",
        parents=[common],
        help="record a passing run (RUN_ID or 'latest') as the golden profile",
    )
    bl.add_argument("run_id")
    bw = aws_sub.add_parser("baseline-show", parents=[common], help="print the stack's golden profile")
    bw.add_argument("--json", action="store_true")
    q = aws_sub.add_parser("query", parents=[common], help="SQL over the evidence with Athena")
    q.add_argument("sql")
    q.add_argument("--json", action="store_true")
    aws.set_defaults(fn=cmd_aws)


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of the gate config (generated from the parser's typed model)."""
    from resgate.config.json_schema import gate_config_schema

    print(json.dumps(gate_config_schema(), indent=2))
    return EXIT_PASS


def add_schema_and_version(p: argparse.ArgumentParser, sub: argparse._SubParsersAction) -> None:
    """``resgate --version`` (the installed package's version) and ``resgate schema``."""
    from importlib.metadata import version

    p.add_argument("--version", action="version", version=f"resgate {version('resgate')}")
    s = sub.add_parser("schema", help="print the JSON Schema of the gate config (for editors and CI)")
    s.set_defaults(fn=cmd_schema)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="resgate", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    add_schema_and_version(p, sub)
    r = sub.add_parser("run", help="run the gate (default: the packaged paperbroker config)")
    r.add_argument("config", nargs="?", help="gate config YAML (default: paperbroker)")
    r.add_argument("--evidence-root", help="where to write evidence (default: the config's evidence.root)")
    r.add_argument("--quiet", action="store_true", help="print only the verdict")
    r.add_argument("--profile", help="a named load/fault profile of the config (profiles:), e.g. nightly")
    r.set_defaults(fn=cmd_run)
    v = sub.add_parser(
        "validate",
        help="validate a gate config and check what `run` needs here (programs, locustfile); then exit",
    )
    v.add_argument("config", nargs="?")
    v.set_defaults(fn=cmd_validate)
    q = sub.add_parser(
        "query",
        help="SQL over the evidence with DuckDB (tables: ledger, checks, faults, health, "
        "verdicts, load_stats, phases)",
    )
    q.add_argument("sql")
    q.add_argument("--root", default="evidence")
    q.add_argument("--json", action="store_true")
    q.set_defaults(fn=cmd_query)
    rep = sub.add_parser("report", help="print a past run's report (RUN_ID or 'latest')")
    rep.add_argument("run_id")
    rep.add_argument("--root", default="evidence")
    rep.set_defaults(fn=cmd_report)
    i = sub.add_parser(
        "init",
        help="write a first gate config for your own services (asks when no --service)",
        description="Write a first gate config for your own services. A service's command is run without a "
        "shell: write ${port} where the replica's port goes (each replica gets its own; it is also in the "
        "replica's PORT environment variable), ${python} for this Python, ${env:NAME} for an environment "
        "variable of the gate, $$ for a literal $. A shell-style $PORT is refused.",
        epilog="example: resgate init shop --service 'web=gunicorn -w 1 -b 127.0.0.1:${port} app:app' "
        "--health-path / --write-locustfile",
    )
    i.add_argument("name", nargs="?", help="the gate's name (lowercase letters, digits, - and _)")
    i.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="a service and the command that starts it listening on ${port} (repeatable; the first is "
        "exposed)",
    )
    i.add_argument("--expose", help="the service that receives the load (default: the first)")
    i.add_argument("--replicas", type=int, default=2, help="replicas per service (default 2)")
    i.add_argument("--health-path", default="/ready", help="each replica's health path (default /ready)")
    i.add_argument(
        "--database",
        action="store_true",
        help="the services use the embedded Postgres (DATABASE_URL); adds a database outage fault",
    )
    i.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="environment of every service"
    )
    i.add_argument("--locustfile", default="locustfile.py", help="your locustfile (default locustfile.py)")
    i.add_argument("--write-locustfile", action="store_true", help="also write a starter locustfile")
    i.add_argument("--users", type=int, default=10)
    i.add_argument("--duration", type=int, default=30, help="load duration in seconds (default 30)")
    i.add_argument("--p95-ms", type=int, default=500, help="the SLO's p95 limit in ms (default 500)")
    i.add_argument("--out", default="gate.yaml", help="where to write the config (default gate.yaml)")
    i.add_argument("--force", action="store_true", help="replace existing files")
    i.set_defaults(fn=cmd_init)
    add_aws_parser(sub)
    add_baseline_parser(sub)
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
