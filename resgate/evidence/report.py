"""report.md and the latency plot of a gate run: the human summary with the key figures."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from resgate.checks.result import UNKNOWN, CheckResult
from resgate.evidence.scorecard import leader_summary
from resgate.evidence.why import anomaly_lines, figures_with_limits, passes_when


def _fmt(v: Any) -> str:
    """Numbers for humans: floats to 3 significant digits (the JSON evidence keeps full precision)."""
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _counts(counts: dict[str, Any], limit: int | None = None) -> str:
    items = [(k, v) for k, v in counts.items() if not isinstance(v, dict | list)]
    return ", ".join(f"{k}={_fmt(v)}" for k, v in items[:limit])


def _mark(v: Any) -> str:
    return {True: "PASS", False: "FAIL"}.get(v, "UNKNOWN") if v != UNKNOWN else "UNKNOWN"


def example_note(example: Any, width: int = 100) -> str:
    """One example as a console line: its ``reason`` (or ``message``) in full, then the other fields as
    JSON, cut at a field boundary (``…``) when longer than ``width``, never in the middle of a value."""
    if not isinstance(example, dict):
        text = json.dumps(example, default=str)
        return text if len(text) <= width else text[: width - 1] + "…"
    reason = example.get("reason") or example.get("message")
    rest = {k: v for k, v in example.items() if k not in ("reason", "message")}
    parts: list[str] = []
    used = 0
    for k, v in rest.items():
        part = f"{json.dumps(k)}: {json.dumps(v, default=str)}"
        if parts and used + len(part) > width:
            parts.append("…")
            break
        parts.append(part)
        used += len(part) + 2
    fields = "{" + ", ".join(parts) + "}" if parts else ""
    return f"{reason} {fields}".strip() if reason else fields


def _fault_role(kind: str) -> str:
    """How a fault's ``target`` reads in the report: the service it acts on (process faults) or the one
    its recovery is judged on (the rest: a redelivery, a database outage do not act on that service)."""
    return "target" if kind in ("stop_task", "hang") else "recovery judged on"


def verdict_table(results: Iterable[CheckResult]) -> str:
    """A plain-text table: check, result, key counts, first example or error."""
    rows = []
    for r in results:
        shown = r.counts
        if r.valid is not True:  # a failing check leads with the anomalies it found
            nonzero = {k: v for k, v in r.counts.items() if isinstance(v, int | float) and v}
            shown = {**nonzero, **r.counts}
        counts = _counts(shown, 6)
        note = r.error or (example_note(r.examples[0]) if r.examples and r.valid is not True else "")
        rows.append((r.name, _mark(r.valid), counts, note))
    w0 = max([5] + [len(r[0]) for r in rows])
    lines = [f"{'check':<{w0}}  result   figures", f"{'-' * w0}  -------  -------"]
    for name, mark, counts, note in rows:
        lines.append(f"{name:<{w0}}  {mark:<7}  {counts}")
        if note:
            lines.append(f"{'':<{w0}}           ↳ {note}")
    return "\n".join(lines)


def _cell(v: Any) -> str:
    return "-" if v is None else _fmt(v)


def phases_table(phases: list[dict[str, Any]], golden: dict[str, Any] | None = None) -> list[str]:
    """The report's per-phase lines: a markdown table of each phase's figures (the ``phases`` table rows)
    and, when the SLO check compared the run with a golden profile, which one and each judged phase's p95
    ratio."""
    out = [
        "| phase | fault kind | seconds | requests | error ratio | throughput rps | p50 ms | p95 ms "
        "| p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        out.append(
            f"| {p['key']} | {p.get('fault_kind') or '-'} | {_cell(p.get('duration_s'))} | {p['requests']} "
            f"| {_cell(p.get('error_ratio'))} | {_cell(p.get('throughput_rps'))} | {_cell(p.get('p50_ms'))} "
            f"| {_cell(p.get('p95_ms'))} | {_cell(p.get('p99_ms'))} |"
        )
    if golden is not None:
        out.append("")
        if golden.get("status") == "no baseline":
            out.append("Golden profile: none set (`resgate baseline set`): no baseline, not judged.")
        else:
            out.append(f"Golden profile: run `{golden.get('baseline_run_id')}`.")
            for row in golden.get("phases") or ():
                if not row.get("judged"):
                    continue
                p95 = row["deltas"]["p95_ms"]
                mark = "REGRESSED" if row.get("regressed") else "ok"
                out.append(
                    f"- {row['key']}: p95 {_cell(p95['current'])} ms vs {_cell(p95['baseline'])} ms "
                    f"(x{_cell(p95['ratio'])}, p={_cell(row.get('p_value'))}) {mark}"
                )
    return out


def _s(v: Any) -> str:
    return "-" if v is None else f"{v:.1f}"


def recovery_table(results: list[CheckResult]) -> list[str]:
    """Report lines: per fault, when it started and was in effect, detection, time to healthy and whether
    it serves again (ok requests/s after recovery against the baseline's, error ratio), with the recovery
    anomalies that name it (``throughput_not_back``, ``rto_missed``…); nothing without a recovery result."""
    r = next((r for r in results if r.name == "recovery"), None)
    details = (r.details or {}) if r is not None else {}
    rows = details.get("faults") or []
    if not rows:
        return []
    base = details.get("baseline_ok_per_s")
    out = [
        "",
        f"### Recovery per fault (baseline {_s(base)} ok requests/s; RTO {details.get('rto_s')} s)",
        "",
        "| fault | injection started → in effect | detected (s) | healthy (s) | ok/s after | errors after "
        "| window after recovery | anomalies |",
        "|---|---|---|---|---|---|---|---|",
    ]
    named: dict[str, list[str]] = {}
    for ex in r.examples if r is not None else []:
        if ex.get("fault_id"):
            named.setdefault(ex["fault_id"], []).append(ex["kind"])
    for f in rows:
        start, effect = f.get("started_ts"), f.get("injected_ts")
        lag = "-" if start is None or effect is None else f"+{effect - start:.3f} s"
        ratio = f.get("error_ratio_after")
        errors = "-" if ratio is None else f"{ratio:.1%}"
        kinds = ", ".join(named.get(f["fault_id"], []))
        window = f.get("after_window")
        span = "-" if not window else f"{window[1] - window[0]:.1f} s (cut by {f.get('after_cut_by')})"
        out.append(
            f"| `{f['fault_id']}` ({f['kind']}) | {lag} | {_s(f.get('time_to_detect_s'))} "
            f"| {_s(f.get('time_to_healthy_s'))} | {_s(f.get('ok_per_s_after'))} "
            f"| {errors} | {span} | {kinds} |"
        )
    handovers = [f"- `{f['fault_id']}`: {leader_summary(f['leader'])}" for f in rows if f.get("leader")]
    if handovers:
        out += ["", "Leader handovers (the lease group the samples followed):", "", *handovers]
    return out


def report_markdown(
    *,
    gate: str,
    run_id: str,
    verdict: dict[str, Any],
    results: list[CheckResult],
    figures: dict[str, Any],
    faults: list[dict[str, Any]],
    plot: str | None,
    links: dict[str, str] | None = None,
    phases: list[dict[str, Any]] | None = None,
) -> str:
    """Return the report.md text: verdict, links (e.g. ``{"dashboard": url}`` on AWS), key figures, faults
    with recovery, the figures per phase (``phases``: the ``phases`` table rows), each check with
    examples."""
    out = [f"# ResilienceGate run `{run_id}` — gate `{gate}`", ""]
    out.append(
        f"**Verdict: {verdict['result']}**" + (f" — {verdict['reason']}" if verdict.get("reason") else "")
    )
    if links:
        out += [""] + [f"- {name}: <{url}>" for name, url in links.items()]
    out += ["", "## Key figures", "", "| figure | value |", "|---|---|"]
    for k, v in figures.items():
        out.append(f"| {k} | {v} |")
    out += [
        "",
        "## Checks",
        "",
        "| check | result | seconds | passes when | figures |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        counts = figures_with_limits(r, _counts(r.counts))
        took = "-" if r.duration_s is None else f"{r.duration_s:.1f}"
        out.append(f"| {r.name} | {_mark(r.valid)} | {took} | {passes_when(r)} | {counts} |")
    counted = anomaly_lines(results)
    if counted:
        out += ["", "### Counted, not failing", "", *counted]
    out += ["", "## Faults", ""]
    if not faults:
        out.append("No fault was injected.")
    for ev in faults:
        detail = json.dumps(ev.get("detail") or {}, default=str)
        if ev["event"] == "leader_samples":  # the raw samples stay in faults.jsonl; recovery has the figures
            n = len((ev.get("detail") or {}).get("samples") or [])
            detail = f"({n} leader figure changes sampled; see faults.jsonl)"
        out.append(
            f"- `{ev['fault_id']}` ({ev['kind']}, {_fault_role(ev['kind'])} `{ev.get('target') or '-'}`): "
            f"{ev['event']} {detail}"
        )
    if phases:
        slo = next((r for r in results if r.name == "slo" and isinstance(r.details, dict)), None)
        golden = slo.details.get("golden") if slo is not None else None
        out += ["", "## Phases", "", *phases_table(phases, golden if isinstance(golden, dict) else None)]
    out += recovery_table(results)
    if plot:
        out += ["", f"![throughput, errors, p95 and health over the run]({plot})"]
    for r in results:
        if r.valid is True and not r.error:
            continue
        out += ["", f"### {r.name}: {_mark(r.valid)}", ""]
        if r.error:
            out.append(f"Error: {r.error}")
        for ex in r.examples[:10]:
            out.append(f"- `{json.dumps(ex, default=str)}`")
    return "\n".join(out) + "\n"
