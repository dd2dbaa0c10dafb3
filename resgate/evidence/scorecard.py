"""A run's recovery scorecard: per fault and for the run, the figures a resilience review asks for.

One row per run (verdict, score and band, slowest detection and recovery against the RTO, integrity
anomalies, replay parity, the retryable share of failures) and one row per fault (detection, time to
healthy, goodput during the fault and in its recovery phase as a share of the baseline's). Built from the
run's check results and its ``phases`` rows (the same phases the SLO check judges), alike for a local run
(printed at the end of ``resgate run``), for the verdict on AWS and for the resilience report
(``benchmarks/resilience``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resgate.checks.result import CheckResult
from resgate.contract.constants import DEFAULT_RTO_SECONDS
from resgate.evidence.score import ANOMALY_KEYS, FaultFigures, Score, resilience_score


def goodput_rps(row: Mapping[str, Any]) -> float | None:
    """Successful requests per second of one ``phases`` row (:mod:`resgate.checks.slo.phases`): a phase
    that served nothing for its whole duration is 0.0; a phase of no length is None."""
    duration = float(row.get("duration_s") or 0.0)
    if duration <= 0:
        return None
    return (int(row.get("requests") or 0) - int(row.get("failures") or 0)) / duration


def phase_goodput(rows: Iterable[Mapping[str, Any]]) -> dict[str, float | None]:
    """``{phase key: goodput_rps}`` of a run's ``phases`` rows (``baseline``, ``during:<fault>``,
    ``recovery:<fault>``, ``steady``)."""
    return {str(r["key"]): goodput_rps(r) for r in rows if "key" in r}


@dataclass(frozen=True)
class Scorecard:
    """``run``: the run's row; ``faults``: one row per fault; ``score``: :class:`Score`."""

    run: dict[str, Any]
    faults: list[dict[str, Any]]
    score: Score

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "faults": self.faults, "score": self.score.to_dict()}


def _recovery_rows(results: Sequence[CheckResult]) -> tuple[list[dict[str, Any]], float]:
    rec = next((r for r in results if r.name == "recovery"), None)
    if rec is None:
        return [], DEFAULT_RTO_SECONDS
    d = rec.details or {}
    return list(d.get("faults") or []), float(d.get("rto_s") or DEFAULT_RTO_SECONDS)


def _share(x: float | None, base: float | None, duration_s: float) -> float | None:
    """``x`` as a share of the baseline's goodput ``base``; None (not measured) without either, or for a
    phase so short that the baseline would have served less than one request in it: an instant fault's
    *during* phase of a few milliseconds holds no request at any rate, which says nothing of its goodput."""
    if x is None or base is None or base <= 0 or base * duration_s < 1:
        return None
    return x / base


def build_scorecard(
    results: Sequence[CheckResult],
    phases: Iterable[Mapping[str, Any]],
    *,
    verdict: str,
) -> Scorecard:
    """The scorecard of one run (see the module docstring) from its check results and its ``phases`` rows
    (:func:`resgate.evidence.phases.phase_rows`); ``verdict`` is PASS, FAIL or ERROR."""
    rows, rto_s = _recovery_rows(results)
    phases = list(phases)
    goodput = phase_goodput(phases)
    durations = {str(r["key"]): float(r.get("duration_s") or 0.0) for r in phases if "key" in r}
    base = goodput.get("baseline")
    fault_rows, figures = [], []
    for r in rows:
        fid = str(r.get("fault_id"))
        during = _share(goodput.get(f"during:{fid}"), base, durations.get(f"during:{fid}", 0.0))
        after = _share(goodput.get(f"recovery:{fid}"), base, durations.get(f"recovery:{fid}", 0.0))
        figures.append(
            FaultFigures(
                fault_id=fid,
                kind=str(r.get("kind")),
                rto_s=rto_s,
                time_to_healthy_s=r.get("time_to_healthy_s"),
                goodput_during=during,
                goodput_after=after,
            )
        )
        fault_rows.append(
            {
                "fault_id": fid,
                "kind": r.get("kind"),
                "target": r.get("target"),
                "time_to_detect_s": r.get("time_to_detect_s"),
                "time_to_healthy_s": r.get("time_to_healthy_s"),
                "rto_s": rto_s,
                "goodput_during": during,
                "goodput_after": after,
                "leader": r.get("leader"),
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
        "retryable_share": None
        if retry is None or not retry.counts.get("failed")
        else retry.counts.get("allowed", 0) / retry.counts["failed"],
    }
    return Scorecard(run=run, faults=fault_rows, score=score)


def with_score(record: Mapping[str, Any], card: Scorecard) -> dict[str, Any]:
    """A verdict record with the run's ``score`` (0-100 or None) and ``score_band`` added."""
    return {**record, "score": card.score.value, "score_band": card.score.band}


def figure(v: Any, fmt: str = "{:.1f}", *, missing: str = "-") -> str:
    """A scorecard figure as text: a float through ``fmt``, None as ``missing``."""
    if v is None:
        return missing
    if isinstance(v, float):
        return fmt.format(v)
    return str(v)


def _yes(v: Any) -> str:
    return "yes" if v is True else "no" if v is False else "-"


def leader_summary(leader: Mapping[str, Any]) -> str:
    """One line of a leader loss's handover figures (recovery's ``leader`` of a fault row): the group
    judged, who led under which token, when it paused and when a leader matched again, the flips and the
    highest leader heartbeat age. E.g. ``group symbols-1-of-2: matcher-0 (token 1) paused 0.3 s in;
    matcher-1 leads 6.4 s in (token 2); leader 1→0→1 yes, ready 200→503→200 yes; heartbeat ≤ 0.9 s``."""
    group = leader.get("group")
    head = f"group {group}: " if group else ""
    new = leader.get("new_leader")
    takeover = (
        f"{new} leads {figure(leader.get('time_to_leader_s'))} s in (token {figure(leader.get('new_token'))})"
        if new is not None
        else "no leader again"
    )
    return (
        f"{head}{figure(leader.get('deposed'))} (token {figure(leader.get('deposed_token'))}) paused "
        f"{figure(leader.get('time_to_pause_s'))} s in; {takeover}; leader 1→0→1 "
        f"{_yes(leader.get('leader_flip'))}, ready 200→503→200 {_yes(leader.get('readiness_flip'))}; "
        f"heartbeat ≤ {figure(leader.get('max_leading_heartbeat_age_s'))} s"
    )


def render_scorecard(card: Scorecard) -> str:
    """The scorecard as plain text for the console: one line per fault, then the score."""
    lines = [
        "fault                     kind                detect  healthy  RTO   goodput during/after  points",
        "------------------------  ------------------  ------  -------  ----  --------------------  ------",
    ]
    for r in card.faults:
        lines.append(
            f"{str(r['fault_id'])[:24]:<24}  {str(r['kind'])[:18]:<18}  {figure(r['time_to_detect_s']):>5}s"
            f"  {figure(r['time_to_healthy_s']):>6}s  {figure(r['rto_s'], '{:.0f}'):>3}s"
            f"  {figure(r['goodput_during'], '{:.0%}'):>9} / {figure(r['goodput_after'], '{:.0%}'):<8}"
            f"  {figure(r.get('points')):>6}"
        )
        if r.get("leader"):
            lines.append(f"  ↳ {leader_summary(r['leader'])}")
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
    headline = "**Resilience score: not scored**"
    if s.value is not None:
        headline = f"**Resilience score: {s.value}/100 ({s.band})**"
    out = [
        "## Scorecard",
        "",
        headline + (f" — {'; '.join(s.reasons)}" if s.reasons else ""),
        "",
    ]
    if not card.faults:
        return "\n".join([*out, "No fault was injected.", ""])
    out += [
        "Goodput is successful requests per second as a share of the baseline's, in the fault's *during* "
        "phase (until healthy, or until lifted for a held fault) and in its *recovery* phase (see Phases).",
        "",
        "| fault | kind | detected after (s) | healthy after (s) | RTO (s) | goodput during | goodput after "
        "| points |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in card.faults:
        out.append(
            f"| {r['fault_id']} | {r['kind']} | {figure(r['time_to_detect_s'])} "
            f"| {figure(r['time_to_healthy_s'])} | {figure(r['rto_s'], '{:.0f}')} "
            f"| {figure(r['goodput_during'], '{:.0%}')} "
            f"| {figure(r['goodput_after'], '{:.0%}')} | {figure(r.get('points'))} |"
        )
    return "\n".join([*out, ""])
