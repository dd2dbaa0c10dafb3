"""Why a run passed: what each check needs to pass, its limits beside its figures, and one line for every
anomaly a passing check counted.

A PASS that shows ``not_detected=1, anomalies=1`` and nothing else leaves a new user guessing whether the
gate missed something. The report answers here, from the check results alone (so the local report and a
report rebuilt from S3 evidence say the same): each kind a check counts without failing has a one-line
meaning, and the example's own reason (the fault, the phase, the window) follows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from resgate.checks.result import CheckResult

# What each kind a check counts *without failing* means, in one line. A kind not listed here is named as
# it is, with the example's own fields.
MEANING: Mapping[tuple[str, str], str] = {
    ("slo", "no_baseline"): "no golden profile is set (`resgate baseline set`), so no phase was compared "
    "with one; the absolute limits still judged the run",
    ("slo", "phase_regression_not_judged"): "this phase could not be compared with the golden profile; "
    "the absolute limits still judged it",
    ("recovery", "not_detected"): "no health probe of the service saw a failure while this fault acted "
    "(its replicas stayed ready: the service absorbed it); its time to healthy and its serving after it "
    "were still judged",
    ("recovery", "serving_unmeasured"): "the window after recovery was too short to measure whether the "
    "service serves again; its time to healthy was still judged against the RTO",
    ("recovery", "aborted"): "the fault was stopped before its planned end (a guardrail or the end of the "
    "run); what it did until then was judged",
}

_LATENCY = ("p50_ms", "p95_ms", "p99_ms")


def slo_limits(result: CheckResult) -> dict[str, str]:
    """The SLO figure → its limit as text (``"≤ 500"``), from the limits the check recorded."""
    limits = ((result.details or {}).get("limits") or {}).get("overall") or {}
    out = {k: f"≤ {limits[k]:g}" for k in _LATENCY if limits.get(k) is not None}
    if limits.get("max_error_ratio") is not None:
        out["error_ratio"] = f"≤ {limits['max_error_ratio']:g}"
    if limits.get("min_throughput_rps") is not None:
        out["throughput_rps"] = f"≥ {limits['min_throughput_rps']:g}"
    return out


def passes_when(result: CheckResult) -> str:
    """What the check needs to pass, with the run's own limits."""
    d = result.details or {}
    if result.name == "slo":
        limits = ", ".join(f"{k} {v}" for k, v in slo_limits(result).items())
        phases = (d.get("limits") or {}).get("phases") or {}
        per_phase = "; ".join(
            f"{phase}: "
            + ", ".join(
                f"{k} ≤ {v:g}" if k != "min_throughput_rps" else f"{k} ≥ {v:g}"
                for k, v in lim.items()
                if v is not None
            )
            for phase, lim in (phases.get("limits") or {}).items()
        )
        return (limits or "no whole-run limit") + (f"; per phase {per_phase}" if per_phase else "")
    if result.name == "recovery":
        text = f"every fault healthy within the RTO ({d.get('rto_s', '?')} s; a held fault from its lift)"
        if d.get("min_throughput_ratio") is not None:
            text += f", then ≥ {d['min_throughput_ratio']:g} × the baseline's ok requests/s"
        return text + " and the error ratio back to the baseline's"
    if result.name == "retryable":
        allowed = ", ".join(d.get("allowed_classes") or []) or "none"
        return f"every failed request of a class a client may retry (allowed: {allowed})"
    if result.name == "integrity":
        return "every anomaly count 0, except the kinds the config allows"
    if result.name == "replay":
        return "every read model rebuilt from the topics equals the live one"
    if result.name == "streaming":
        lim = d.get("limits") or {}
        return (
            f"completeness ≥ {lim.get('min_completeness', '?')} of the trades the topic holds after resume,"
            f" ≥ {lim.get('min_completeness_during', '?')} per fault by its end + the RTO; every reconnect"
            f" ≤ {lim.get('rto_s', '?')} s; no subscriber left on a live connection without its trades"
            f" > {lim.get('max_silence_s', '?')} s; outside the faults connection errors"
            f" ≤ {lim.get('max_connection_error_rate', '?')} and time to first fill p95"
            f" ≤ {lim.get('max_ttff_p95_ms', '?')} ms"
        )
    if result.name == "backpressure":
        lim = d.get("limits") or {}
        return (
            f"under each overload burst ≥ {lim.get('min_clear_shed_ratio', '?')} of the rejected requests"
            f" shed clearly (429, or 503 with Retry-After), the accepted ones' p95"
            f" ≤ {lim.get('max_accepted_p95_ms', '?')} ms, and back to the baseline's latency and throughput"
            f" within {lim.get('recover_within_s', '?')} s of the burst"
        )
    return "no failing anomaly"


def figures_with_limits(result: CheckResult, shown: str) -> str:
    """``shown`` (``k=v, ...``) with each SLO figure's limit after it: ``p95_ms=10 (≤ 500)``."""
    if result.name != "slo":
        return shown
    limits = slo_limits(result)
    parts = []
    for part in shown.split(", "):
        key = part.split("=", 1)[0]
        parts.append(f"{part} ({limits[key]})" if key in limits else part)
    return ", ".join(parts)


def _where(example: Mapping[str, Any]) -> str:
    for key in ("fault_id", "phase", "endpoint"):
        if example.get(key):
            return f"`{example[key]}`"
    return str(example.get("scope") or "the run")


def anomaly_lines(results: Iterable[CheckResult]) -> list[str]:
    """One line for each anomaly a *passing* check counted (its examples; the count says when more were
    cut), and for the failed requests the retryable check allowed; empty when there are none."""
    out: list[str] = []
    for r in results:
        if r.valid is not True:
            continue
        for ex in r.examples:
            kind = ex.get("kind")
            if not kind:
                continue
            meaning = MEANING.get((r.name, kind), "counted, not failing")
            reason = f" ({ex['reason']})" if ex.get("reason") else ""
            out.append(f"- {r.name}: {kind} at {_where(ex)}: {meaning}{reason}.")
        total = r.counts.get("anomalies")
        listed = sum(1 for ex in r.examples if ex.get("kind"))
        if isinstance(total, int) and total > listed:
            out.append(f"- {r.name}: {total - listed} more of the kinds above (the examples are capped).")
        if r.name == "retryable" and r.counts.get("allowed"):
            totals = ("requests", "failed", "allowed", "not_allowed")
            shown = ", ".join(f"{k}={v}" for k, v in r.counts.items() if k not in totals and v)
            out.append(
                f"- retryable: {r.counts['allowed']} of {r.counts.get('requests')} requests failed, each "
                f"of a class a client may retry ({shown}): allowed, not a failure."
            )
        if r.name == "integrity" and r.counts.get("recovered"):
            out.append(
                f"- integrity: recovered={r.counts['recovered']}: orders whose every attempt failed or was "
                "indeterminate landed anyway (the client's retry or the outbox delivered them); allowed by "
                "default, never lost or duplicated."
            )
    return out
