"""The run's closing files, written alike by the local runner and the verdict Lambda: ``checks.jsonl``,
``phases.jsonl``, ``report.md``, ``junit.xml`` and, last, ``verdict.json`` — so a ``verdict.json`` in a run
means the rest of its evidence is there too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from resgate.checks.result import CheckResult
from resgate.evidence.junit import junit_xml
from resgate.evidence.phases import phase_rows
from resgate.evidence.report import report_markdown
from resgate.evidence.scorecard import Scorecard, build_scorecard, scorecard_markdown, with_score
from resgate.evidence.store import RunStore, jsonable, read_jsonl, write_jsonl

# Counts of these checks shown as the report's key figures when the conductor has no figures of its own.
KEY_FIGURES = {
    "slo": (
        "requests",
        "failures",
        "error_ratio",
        "throughput_rps",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "duration_s",
    ),
    "recovery": ("faults", "max_time_to_healthy_s"),
}


def key_figures(results: Sequence[CheckResult]) -> dict[str, Any]:
    """The report's key figures, ``<check>.<count>``, from the SLO and recovery results' counts."""
    out: dict[str, Any] = {}
    for r in results:
        for key in KEY_FIGURES.get(r.name, ()):
            if r.counts.get(key) is not None:
                out[f"{r.name}.{key}"] = r.counts[key]
    return out


def report_faults(store: RunStore) -> list[dict[str, Any]]:
    """The fault timeline rows the report lists (``faults.jsonl``, empty when the run has none)."""
    rows = read_jsonl(store, "faults") if store.exists("faults") else []
    return [f for f in rows if "fault_id" in f and "event" in f and "kind" in f]


def verdict_json(record: Mapping[str, Any]) -> str:
    """``verdict.json``'s text: the record on one line."""
    return json.dumps(jsonable(record), separators=(",", ":")) + "\n"


def write_run_files(
    store: RunStore,
    *,
    results: Sequence[CheckResult],
    record: Mapping[str, Any],
    figures: Mapping[str, Any] | None = None,
    plot: str | None = None,
    unknown_is_failure: bool = True,
    duration_s: float = 0.0,
    links: Mapping[str, str] | None = None,
    card: Scorecard | None = None,
) -> dict[str, str]:
    """Write ``checks.jsonl``, ``phases.jsonl`` (:func:`resgate.evidence.phases.phase_rows`), ``report.md``,
    ``junit.xml`` and, last, ``verdict.json`` (``record``, see :func:`resgate.evidence.verdict.
    verdict_record`, with the run's resilience ``score`` and ``score_band`` added); return ``{logical name:
    uri}``. The report lists the run's ``faults.jsonl``, its phases and its scorecard, and shows ``figures``
    (default: :func:`key_figures` of the results) and ``links`` (on AWS, the run's dashboard). ``card``:
    the run's scorecard when the caller built it already (default: built here from the results and the
    phases)."""
    key = store.key
    uris = {"checks": write_jsonl(store, "checks", (jsonable(r.to_dict()) for r in results))}
    phases = phase_rows(store, results)
    if card is None:
        card = build_scorecard(results, phases, verdict=str(record.get("result")))
    record = with_score(record, card)
    uris["phases"] = write_jsonl(store, "phases", (jsonable(p) for p in phases))
    report = report_markdown(
        gate=key.gate,
        run_id=key.run_id,
        verdict=dict(record),
        results=list(results),
        figures=dict(figures) if figures is not None else key_figures(results),
        faults=report_faults(store),
        phases=phases,
        plot=plot,
        links=dict(links) if links else None,
    )
    report += "\n" + scorecard_markdown(card)
    uris["report"] = store.write_text("report", report)
    junit = junit_xml(
        key.gate, key.run_id, list(results), unknown_is_failure=unknown_is_failure, duration_s=duration_s
    )
    uris["junit"] = store.write_text("junit", junit)
    uris["verdicts"] = store.write_text("verdicts", verdict_json(record))
    return uris
