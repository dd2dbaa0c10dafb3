"""A run's recovery scorecard: per fault and for the run, the figures a resilience review asks for.

One row per run (verdict, score and band, slowest detection and recovery against the RTO, integrity
anomalies, replay parity, the retryable share of failures) and one row per fault (detection, time to
healthy, goodput during and after the fault as a share of the baseline's). Built from the run's check
results and its ledger, alike for a local run (printed at the end of ``resgate run``), for the verdict on
AWS and for the resilience report (``benchmarks/resilience``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resgate.checks.ledger import LedgerRecord
from resgate.checks.result import CheckResult
from resgate.contract.constants import DEFAULT_RTO_SECONDS
from resgate.contract.errors import GateError
from resgate.evidence.score import ANOMALY_KEYS, FaultFigures, Score, resilience_score

DEFAULT_AFTER_WINDOW_S = 10.0


@dataclass(frozen=True)
class Window:
    """A half-open time window ``[start, end)`` in epoch seconds."""

    start: float
    end: float

    @property
    def length(self) -> float:
        return max(0.0, self.end - self.start)


def fault_windows(
    rows: Sequence[Mapping[str, Any]], *, rto_s: float, after_window_s: float
) -> list[tuple[Window | None, Window | None]]:
    """For each recovery row (``details.faults`` of the recovery result), its *during* window (injection
    until lifted for a held fault, until healthy again for an instantaneous one, at most the RTO when it
    never recovered) and its *after* window (``after_window_s`` from healthy again, ended by the next
    injection). Both are cut at the next injection, so no fault is charged with the next one's effect. A
    window of no length is None."""
    starts = sorted(float(r["injected_ts"]) for r in rows if r.get("injected_ts") is not None)
    out: list[tuple[Window | None, Window | None]] = []
    for r in rows:
        if r.get("injected_ts") is None:
            out.append((None, None))
            continue
        t0 = float(r["injected_ts"])
        healthy = r.get("recovered_ts")
        end = r.get("lifted_ts") or healthy or t0 + rto_s
        during = Window(t0, min([float(end), *(s for s in starts if s > t0)]))
        after = None
        if healthy is not None:
            h = float(healthy)
            after = Window(h, min([h + after_window_s, *(s for s in starts if s > h)]))
        out.append((during if during.length > 0 else None, after if after and after.length > 0 else None))
    return out


def goodput(
    ledger: Iterable[LedgerRecord], windows: Sequence[Window | None], baseline_end: float | None
) -> tuple[float | None, list[float | None]]:
    """One pass over the ledger: successful requests per second in the baseline (the first request until
    ``baseline_end``) and in each window, each window cut at the load's last request (after it nothing
    was asked, so nothing can be judged). Returns ``(baseline_rps | None, [rps | None])``: None for a
    window that is None or has no length within the load."""
    counts = [0] * len(windows)
    first: float | None = None
    last: float | None = None
    base = 0
    for rec in ledger:
        ts = rec.ts
        if first is None or ts < first:
            first = ts
        if last is None or ts > last:
            last = ts
        if rec.outcome != "ok":
            continue
        if baseline_end is not None and ts < baseline_end:
            base += 1
        for i, w in enumerate(windows):
            if w is not None and w.start <= ts < w.end:
                counts[i] += 1
    base_len = None if first is None or baseline_end is None else baseline_end - first
    base_rps = base / base_len if base_len and base_len > 0 else None
    rps: list[float | None] = []
    for i, w in enumerate(windows):
        span = None if w is None or last is None else min(w.end, last) - w.start
        rps.append(counts[i] / span if span and span > 0 else None)
    return base_rps, rps


@dataclass(frozen=True)
class Scorecard:
    """``run``: the run's row; ``faults``: one row per fault; ``score``: :class:`Score`."""

    run: dict[str, Any]
    faults: list[dict[str, Any]]
    score: Score

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "faults": self.faults, "score": self.score.to_dict()}


def _recovery_rows(results: Sequence[CheckResult]) -> tuple[list[dict[str, Any]], float, float]:
    rec = next((r for r in results if r.name == "recovery"), None)
    if rec is None:
        return [], DEFAULT_RTO_SECONDS, DEFAULT_AFTER_WINDOW_S
    d = rec.details or {}
    after = float(d.get("after_window_s") or DEFAULT_AFTER_WINDOW_S)
    return list(d.get("faults") or []), float(d.get("rto_s") or DEFAULT_RTO_SECONDS), after


def _share(x: float | None, base: float | None) -> float | None:
    if x is None or base is None or base <= 0:
        return None
    return x / base


def build_scorecard(
    results: Sequence[CheckResult],
    ledger: Iterable[LedgerRecord] | None,
    *,
    verdict: str,
) -> Scorecard:
    """The scorecard of one run (see the module docstring): ``verdict`` is PASS, FAIL or ERROR."""
    rows, rto_s, after_s = _recovery_rows(results)
    injections = [float(r["injected_ts"]) for r in rows if r.get("injected_ts") is not None]
    windows = fault_windows(rows, rto_s=rto_s, after_window_s=after_s)
    flat: list[Window | None] = [w for pair in windows for w in pair]
    base_rps: float | None = None
    rps: list[float | None] = [None] * len(flat)
    ledger_error = None
    if ledger is not None:
        try:
            base_rps, rps = goodput(ledger, flat, min(injections, default=None))
        except (GateError, ValueError, OSError) as e:
            # A ledger the checks refuse is their finding (integrity fails on it); here the goodput is
            # only left unmeasured, and the verdict is still written.
            ledger_error = str(e)
    fault_rows, figures = [], []
    for i, r in enumerate(rows):
        during, after = _share(rps[2 * i], base_rps), _share(rps[2 * i + 1], base_rps)
        figures.append(
            FaultFigures(
                fault_id=str(r.get("fault_id")),
                kind=str(r.get("kind")),
                rto_s=rto_s,
                time_to_healthy_s=r.get("time_to_healthy_s"),
                goodput_during=during,
                goodput_after=after,
            )
        )
        fault_rows.append(
            {
                "fault_id": r.get("fault_id"),
                "kind": r.get("kind"),
                "target": r.get("target"),
                "time_to_detect_s": r.get("time_to_detect_s"),
                "time_to_healthy_s": r.get("time_to_healthy_s"),
                "rto_s": rto_s,
                "goodput_during": during,
                "goodput_after": after,
            }
        )
    score = resilience_score(results, figures)
    for row, fs in zip(fault_rows, score.faults, strict=False):
        row["points"] = round(fs.points, 1)
    by_name = {r.name: r for r in results}
    integ = by_name.get("integrity")
    replay = by_name.get("replay")
    retry = by_name.get("retryable")
    detects = [r["time_to_detect_s"] for r in fault_rows if r["time_to_detect_s"] is not None]
    heals = [r["time_to_healthy_s"] for r in fault_rows if r["time_to_healthy_s"] is not None]
    anomalies = {
        k: v
        for k, v in (integ.counts.items() if integ else ())
        if k in ANOMALY_KEYS and isinstance(v, int) and v
    }
    run = {
        "verdict": verdict,
        "score": score.value,
        "band": score.band,
        "faults": len(rows),
        "max_time_to_detect_s": max(detects, default=None),
        "max_time_to_healthy_s": max(heals, default=None),
        "rto_s": rto_s,
        "never_recovered": sum(1 for r in fault_rows if r["time_to_healthy_s"] is None),
        "lost": integ.counts.get("lost") if integ else None,
        "duplicated": integ.counts.get("duplicated") if integ else None,
        "other_anomalies": sum(v for k, v in anomalies.items() if k not in ("lost", "duplicated")),
        "replay": None
        if replay is None
        else f"{replay.counts.get('matching', 0)}/{replay.counts.get('read_models', 0)}",
        "ledger_error": ledger_error,
        "retryable_share": None
        if retry is None or not retry.counts.get("failed")
        else retry.counts.get("allowed", 0) / retry.counts["failed"],
    }
    return Scorecard(run=run, faults=fault_rows, score=score)


def with_score(record: Mapping[str, Any], card: Scorecard) -> dict[str, Any]:
    """A verdict record with the run's ``score`` (0-100 or None) and ``score_band`` added."""
    return {**record, "score": card.score.value, "score_band": card.score.band}


def _f(v: Any, fmt: str = "{:.1f}") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return fmt.format(v)
    return str(v)


def render_scorecard(card: Scorecard) -> str:
    """The scorecard as plain text for the console: one line per fault, then the score."""
    lines = [
        "fault                     kind                detect  healthy  RTO   goodput during/after  points",
        "------------------------  ------------------  ------  -------  ----  --------------------  ------",
    ]
    for r in card.faults:
        lines.append(
            f"{str(r['fault_id'])[:24]:<24}  {str(r['kind'])[:18]:<18}  {_f(r['time_to_detect_s']):>5}s"
            f"  {_f(r['time_to_healthy_s']):>6}s  {_f(r['rto_s'], '{:.0f}'):>3}s"
            f"  {_f(r['goodput_during'], '{:.0%}'):>9} / {_f(r['goodput_after'], '{:.0%}'):<8}"
            f"  {_f(r.get('points')):>6}"
        )
    s = card.score
    lines.append("")
    lines.append(
        f"resilience score: {'-' if s.value is None else s.value}/100 ({s.band})"
        + (f" — {'; '.join(s.reasons)}" if s.reasons else "")
    )
    return "\n".join(lines)


def scorecard_markdown(card: Scorecard) -> str:
    """The report.md section: the per-fault table with the RTO beside each time, and the score."""
    s = card.score
    out = [
        "## Scorecard",
        "",
        f"**Resilience score: {'not scored' if s.value is None else f'{s.value}/100'} ({s.band})**"
        + (f" — {'; '.join(s.reasons)}" if s.reasons else ""),
        "",
    ]
    if not card.faults:
        return "\n".join([*out, "No fault was injected.", ""])
    out += [
        "Goodput is successful requests per second as a share of the baseline's: while the fault acted "
        "(until healthy, or until lifted for a held fault) and in the window after it was healthy again.",
        "",
        "| fault | kind | detected after (s) | healthy after (s) | RTO (s) | goodput during | goodput after "
        "| points |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in card.faults:
        out.append(
            f"| {r['fault_id']} | {r['kind']} | {_f(r['time_to_detect_s'])} | {_f(r['time_to_healthy_s'])} "
            f"| {_f(r['rto_s'], '{:.0f}')} | {_f(r['goodput_during'], '{:.0%}')} "
            f"| {_f(r['goodput_after'], '{:.0%}')} | {_f(r.get('points'))} |"
        )
    return "\n".join([*out, ""])
