"""report.md and the latency plot of a gate run: the human summary with the key figures."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from resgate.checks.result import UNKNOWN, CheckResult


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


def verdict_table(results: Iterable[CheckResult]) -> str:
    """A plain-text table: check, result, key counts, first example or error."""
    rows = []
    for r in results:
        shown = r.counts
        if r.valid is not True:  # a failing check leads with the anomalies it found
            nonzero = {k: v for k, v in r.counts.items() if isinstance(v, int | float) and v}
            shown = {**nonzero, **r.counts}
        counts = _counts(shown, 6)
        note = r.error or (
            json.dumps(r.examples[0], default=str)[:100] if r.examples and r.valid is not True else ""
        )
        rows.append((r.name, _mark(r.valid), counts, note))
    w0 = max([5] + [len(r[0]) for r in rows])
    lines = [f"{'check':<{w0}}  result   figures", f"{'-' * w0}  -------  -------"]
    for name, mark, counts, note in rows:
        lines.append(f"{name:<{w0}}  {mark:<7}  {counts}")
        if note:
            lines.append(f"{'':<{w0}}           ↳ {note}")
    return "\n".join(lines)


def latency_plot(ledger: Path, faults: list[dict[str, Any]], out: Path, window_s: float = 1.0) -> Path | None:
    """Plot per-window p50/p95 latency and error counts over time with fault markers; None without data."""
    points: list[tuple[float, float, bool]] = []
    if not ledger.exists():
        return None
    with ledger.open() as f:
        for line in f:
            try:
                r = json.loads(line)
                points.append((float(r["ts"]), float(r["latency_ms"]), r.get("outcome") != "ok"))
            except (ValueError, KeyError, TypeError):
                continue
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = min(p[0] for p in points)
    buckets: dict[int, list[tuple[float, bool]]] = {}
    for ts, lat, err in points:
        buckets.setdefault(int((ts - t0) // window_s), []).append((lat, err))
    xs, p50, p95, errs = [], [], [], []
    for b in sorted(buckets):
        lats = sorted(v[0] for v in buckets[b])
        xs.append(b * window_s)
        p50.append(lats[max(0, int(0.5 * len(lats)) - 1)])
        p95.append(lats[max(0, -(-95 * len(lats) // 100) - 1)])
        errs.append(sum(1 for v in buckets[b] if v[1]))
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(xs, p50, label="p50 ms", linewidth=1)
    ax.plot(xs, p95, label="p95 ms", linewidth=1)
    ax.set_xlabel("seconds since load start")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax2 = ax.twinx()
    ax2.bar(xs, errs, width=window_s, alpha=0.25, color="red", label="failed/indeterminate")
    ax2.set_ylabel("failed requests per window")
    ax2.set_ylim(bottom=0, top=max(1, *errs) * 1.2)
    for ev in faults:
        if ev.get("event") == "injected":
            x = float(ev["ts"]) - t0
            ax.axvline(x, color="black", linestyle="--", linewidth=0.8)
            ax.text(x, ax.get_ylim()[1], f" {ev['fault_id']}", rotation=90, va="top", fontsize=7)
    ax.legend(loc="upper left")
    ax.set_title("latency and failures over the run (dashed: fault injected)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
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
) -> str:
    """Return the report.md text: verdict, links (e.g. ``{"dashboard": url}`` on AWS), key figures, faults
    with recovery, each check with examples."""
    out = [f"# ResilienceGate run `{run_id}` — gate `{gate}`", ""]
    out.append(
        f"**Verdict: {verdict['result']}**" + (f" — {verdict['reason']}" if verdict.get("reason") else "")
    )
    if links:
        out += [""] + [f"- {name}: <{url}>" for name, url in links.items()]
    out += ["", "## Key figures", "", "| figure | value |", "|---|---|"]
    for k, v in figures.items():
        out.append(f"| {k} | {v} |")
    out += ["", "## Checks", "", "| check | result | figures |", "|---|---|---|"]
    for r in results:
        counts = _counts(r.counts)
        out.append(f"| {r.name} | {_mark(r.valid)} | {counts} |")
    out += ["", "## Faults", ""]
    if not faults:
        out.append("No fault was injected.")
    for ev in faults:
        detail = json.dumps(ev.get("detail") or {}, default=str)
        out.append(
            f"- `{ev['fault_id']}` ({ev['kind']}, target `{ev.get('target') or '-'}`): {ev['event']} {detail}"
        )
    out += recovery_table(results)
    if plot:
        out += ["", f"![latency over the run]({plot})"]
    for r in results:
        if r.valid is True and not r.error:
            continue
        out += ["", f"### {r.name}: {_mark(r.valid)}", ""]
        if r.error:
            out.append(f"Error: {r.error}")
        for ex in r.examples[:10]:
            out.append(f"- `{json.dumps(ex, default=str)}`")
    return "\n".join(out) + "\n"
