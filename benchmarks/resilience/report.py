"""benchmarks/resilience-report.md from the suite's evidence: reproduction, scorecard, replay, per-fault
figures, one figure per scenario, the detection matrix, the pass rate and the mean score.

Everything in the report is read from each run's evidence (``verdict.json``, ``checks.jsonl``, the
ledger, the fault timeline) through the same functions a single run uses (``resgate.evidence``); nothing
is typed by hand.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from resgate.checks.result import CheckResult
from resgate.contract.layout import RunKey
from resgate.evidence.figure import run_figure
from resgate.evidence.phases import phase_rows
from resgate.evidence.scorecard import Scorecard, build_scorecard, figure
from resgate.evidence.store import FolderStore, read_jsonl

REPO = Path(__file__).resolve().parent.parent.parent


@dataclass
class SuiteRun:
    """One finished gate run of the suite, as ``suite.jsonl`` keeps it."""

    scenario: str
    title: str
    kind: str
    expect: dict[str, str] | None
    exit_code: int
    run_dir: Path | None
    wall_s: float
    log: Path

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir) if self.run_dir else None
        d["log"] = str(self.log)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SuiteRun:
        return cls(
            scenario=d["scenario"],
            title=d["title"],
            kind=d["kind"],
            expect=d.get("expect"),
            exit_code=int(d["exit_code"]),
            run_dir=Path(d["run_dir"]) if d.get("run_dir") else None,
            wall_s=float(d["wall_s"]),
            log=Path(d["log"]),
        )

    def outcome_text(self) -> str:
        ev = read_run(self)
        verdict = ev.verdict.get("result", "ERROR") if ev else "ERROR"
        want = "PASS" if self.expect is None else f"FAIL on {self.expect['check']}"
        return f"{verdict} (expected {want}: {'ok' if expected_met(self, ev) else 'NOT MET'})"


@dataclass
class RunEvidence:
    """What the report reads of one run."""

    verdict: dict[str, Any]
    results: list[CheckResult]
    card: Scorecard
    store: FolderStore


def store_of(run_dir: Path) -> FolderStore:
    """The run store of a run folder ``<root>/gate=<g>/dt=<d>/run_id=<r>``."""
    root, key = RunKey.parse(run_dir)
    return FolderStore(root, key, create=False)


def read_run(run: SuiteRun) -> RunEvidence | None:
    """The run's verdict, check results and scorecard; None when the run left no verdict."""
    if run.run_dir is None:
        return None
    store = store_of(run.run_dir)
    if not store.exists("verdicts"):
        return None
    verdict = json.loads(store.read_text("verdicts"))
    results = (
        [CheckResult.from_dict(r) for r in read_jsonl(store, "checks")] if store.exists("checks") else []
    )
    card = build_scorecard(results, phase_rows(store, results), verdict=verdict.get("result", "ERROR"))
    return RunEvidence(verdict, results, card, store)


def expected_met(run: SuiteRun, ev: RunEvidence | None) -> bool:
    """A scenario must PASS; a matrix row must FAIL on its check (with its count above 0 when named)."""
    if ev is None:
        return False
    if run.expect is None:
        return ev.verdict.get("result") == "PASS"
    check = run.expect["check"]
    if ev.verdict.get("result") != "FAIL" or check not in ev.verdict.get("failed_checks", []):
        return False
    count = run.expect.get("count")
    r = next((r for r in ev.results if r.name == check), None)
    return count is None or bool(r and (r.counts.get(count) or 0) > 0)


def _f(v: Any, fmt: str = "{:.1f}") -> str:
    return figure(v, fmt, missing="–")


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _recovery_rows(ev: RunEvidence) -> list[dict[str, Any]]:
    rec = next((r for r in ev.results if r.name == "recovery"), None)
    return list((rec.details or {}).get("faults") or []) if rec else []


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _pct(v: float | None) -> str:
    return _f(v, "{:.0%}")


def _scorecard_rows(runs: Sequence[SuiteRun], evs: Mapping[str, RunEvidence | None]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for r in runs:
        ev = evs[r.scenario]
        if ev is None:
            rows.append([r.scenario, f"ERROR (no verdict; log `{r.log.name}`)", *["–"] * 9])
            continue
        c = ev.card.run
        gp = " ; ".join(f"{_pct(f['goodput_during'])} / {_pct(f['goodput_after'])}" for f in ev.card.faults)
        rows.append(
            [
                r.scenario,
                ev.verdict.get("result"),
                f"{_f(c['score'])} ({c['band']})",
                _f(c["max_time_to_detect_s"]),
                f"{_f(c['max_time_to_healthy_s'])} / {_f(c['rto_s'], '{:.0f}')}",
                _f(c["lost"]),
                _f(c["duplicated"]),
                _f(c["other_anomalies"]),
                _f(c["replay"]),
                _pct(c["retryable_share"]),
                gp or "–",
            ]
        )
    return rows


def _fault_rows(runs: Sequence[SuiteRun], evs: Mapping[str, RunEvidence | None]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for r in runs:
        ev = evs[r.scenario]
        for f in ev.card.faults if ev else []:
            rows.append(
                [
                    r.scenario,
                    f["fault_id"],
                    f["kind"],
                    _f(f["time_to_detect_s"]),
                    _f(f["time_to_healthy_s"]),
                    _pct(f["goodput_during"]),
                    _pct(f["goodput_after"]),
                    _f(f.get("points")),
                ]
            )
    return rows


def _replay_rows(runs: Sequence[SuiteRun], evs: Mapping[str, RunEvidence | None]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for r in runs:
        ev = evs[r.scenario]
        rep = next((x for x in ev.results if x.name == "replay"), None) if ev else None
        for model, d in sorted(((rep.details or {}) if rep else {}).items()):
            if isinstance(d, Mapping) and "live_rows" in d:
                rows.append(
                    [
                        r.scenario,
                        model,
                        f"{d.get('live_rows')} / {d.get('rebuilt_rows')}",
                        f"`{d.get('live_checksum')}`",
                        f"`{d.get('rebuilt_checksum')}`",
                        d.get("status"),
                    ]
                )
    return rows


def _matrix_rows(runs: Sequence[SuiteRun], evs: Mapping[str, RunEvidence | None]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for r in runs:
        ev = evs[r.scenario]
        assert r.expect is not None
        check, count = r.expect["check"], r.expect.get("count")
        res = next((x for x in ev.results if x.name == check), None) if ev else None
        figure = "–"
        if res is not None and count:
            figure = f"{count}={res.counts.get(count)}"
        elif res is not None:
            shown = [(k, v) for k, v in res.counts.items() if isinstance(v, int | float) and v]
            figure = ", ".join(f"{k}={_f(v)}" for k, v in shown[:3])
        rows.append(
            [
                f"`{r.scenario.removeprefix('bug-')}`",
                check,
                ev.verdict.get("result") if ev else "ERROR",
                ", ".join(ev.verdict.get("failed_checks", [])) if ev else "–",
                figure,
                "yes" if expected_met(r, ev) else "**NO**",
            ]
        )
    return rows


def write_report(
    runs: Sequence[SuiteRun],
    path: Path,
    *,
    total_scenarios: int,
    interrupted: bool,
    suite_s: float | None,
    command: str,
) -> bool:
    """Write the report; return True when every finished run met its expectation."""
    evs = {r.scenario: read_run(r) for r in runs}
    figures_dir = path.parent / "resilience" / "figures"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()
    dirty = " (with uncommitted changes)" if _git("status", "--porcelain") else ""
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores"
    machine += f", Python {platform.python_version()}"
    scenario_runs = [r for r in runs if r.kind == "scenario"]
    matrix_runs = [r for r in runs if r.kind == "matrix"]
    met = [r for r in runs if expected_met(r, evs[r.scenario])]
    passed = sum(1 for r in scenario_runs if r in met)
    caught = sum(1 for r in matrix_runs if r in met)
    scores = [
        e.card.score.value for r in scenario_runs if (e := evs[r.scenario]) and e.card.score.value is not None
    ]
    mean = _f(sum(scores) / len(scores) if scores else None, "{:.0f}")
    out = [
        "# Resilience report",
        "",
        "Generated by `make resilience-report` (benchmarks/resilience/run_suite.py) from the evidence of the",
        "runs below; never edited by hand. Figures move with the machine: times and throughput are this",
        "machine's on this day; the verdicts and the correctness figures are what must reproduce.",
        "",
        "## How to reproduce",
        "",
        f"- command: `{command}` (from a fresh clone: `make resilience-report`)",
        f"- commit: `{_git('rev-parse', 'HEAD')}`{dirty}",
        f"- machine: {machine}; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}",
        f"- date: {now}",
        f"- suite run time: {_f(suite_s, '{:.0f}')} s for {len(runs)} of {total_scenarios} runs"
        + (" (interrupted: the report covers what finished)" if interrupted else ""),
        "",
        "## Summary",
        "",
        f"- scenarios passed: **{passed} of {len(scenario_runs)}**",
        f"- seeded bugs failed on the check that names them: **{caught} of {len(matrix_runs)}**",
        f"- mean resilience score of the scenarios: **{mean}**/100 (any correctness anomaly scores 0;",
        "  otherwise half from the RTO margin, a quarter each from the goodput kept during and after each",
        '  fault; Pass >= 80, Marginal >= 60: `resgate/evidence/score.py`, README "The resilience score")',
        "",
        "## Scorecard",
        "",
        *_table(
            [
                "scenario",
                "verdict",
                "score",
                "detected after (s)",
                "healthy after (s) / RTO",
                "lost",
                "duplicated",
                "other anomalies",
                "replay parity",
                "retryable share",
                "goodput during / after",
            ],
            _scorecard_rows(scenario_runs, evs),
        ),
        "",
        "## Per fault",
        "",
        "Goodput: successful requests per second as a share of the baseline's, in the fault's *during*",
        "phase (until healthy, or until lifted for a held fault) and in its *recovery* phase (until",
        "healthy again after the lift, plus 5 s to settle): the phases the SLO check judges.",
        "",
        *_table(
            ["scenario", "fault", "kind", "detected (s)", "healthy (s)", "during", "after", "points"],
            _fault_rows(scenario_runs, evs),
        ),
        "",
        "## Replay parity",
        "",
        *_table(
            ["scenario", "read model", "rows live / rebuilt", "checksum live", "checksum rebuilt", "status"],
            _replay_rows(scenario_runs, evs),
        ),
        "",
        "## Detection matrix",
        "",
        *_table(
            ["seeded bug", "must fail on", "verdict", "failed checks", "figure", "as expected"],
            _matrix_rows(matrix_runs, evs),
        ),
        "",
        "## Figures",
        "",
    ]
    for r in scenario_runs:
        ev = evs[r.scenario]
        png = (
            run_figure(ev.store, figures_dir / f"{r.scenario}.png", title=f"{r.scenario}: {r.title}")
            if ev
            else None
        )
        if png:
            rel = png.relative_to(path.parent).as_posix()
            out += [f"### {r.scenario}: {r.title}", "", f"![{r.scenario}]({rel})", ""]
    out += ["## Run times", "", *_table(["run", "wall (s)"], [[r.scenario, f"{r.wall_s:.0f}"] for r in runs])]
    path.write_text("\n".join(out) + "\n")
    return len(met) == len(runs) and len(runs) > 0
