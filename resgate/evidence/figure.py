"""The run's figure: throughput, error ratio and p95 over time, the fault windows shaded, the health of
each service as a band; one picture per run (``latency.png`` beside report.md, and the resilience suite's
per-scenario figures).

Everything comes from the run's evidence store (the ledger, ``faults.jsonl`` and ``health.jsonl``), so the
runner and the suite's report draw the same picture from the same rows. Seconds count from the first
request. A second with no completed request is drawn as a hatched gap labelled "no completed request",
never as a line that simply stops; latency is on a log axis with plain labels (``30 ms``, ``3 s``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resgate.evidence.store import RunStore, ledger, read_jsonl

# fault events that open and close the window a fault acts in (resgate/local/faults: injecting → ended)
_OPENS = ("injecting", "injected")
_CLOSES = ("lifting", "ended", "lifted")


@dataclass(frozen=True)
class Second:
    """The requests that completed in one second of the run."""

    ok: int
    failed: int
    p95_ms: float | None

    @property
    def error_ratio(self) -> float | None:
        n = self.ok + self.failed
        return None if n == 0 else self.failed / n


@dataclass(frozen=True)
class Window:
    """When a fault acted, in seconds of the run (``end == start`` for an instantaneous fault)."""

    fault_id: str
    start: float
    end: float


def per_second(records: Iterable[tuple[float, float, bool]]) -> tuple[float, list[Second]] | None:
    """``(t0, seconds)`` from ``(ts, latency_ms, ok)`` records: one :class:`Second` per second from the first
    record's second to the last's (a second with no record is empty); None without records."""
    buckets: dict[int, list[tuple[float, bool]]] = {}
    t0 = math.inf
    for ts, lat, ok in records:
        t0 = min(t0, ts)
        buckets.setdefault(int(ts), []).append((lat, ok))
    if not buckets:
        return None
    first, last = int(t0), max(buckets)
    out = []
    for s in range(first, last + 1):
        rows = buckets.get(s, [])
        lats = sorted(v for v, _ in rows)
        p95 = lats[max(0, -(-95 * len(lats) // 100) - 1)] if lats else None
        out.append(Second(sum(1 for _, ok in rows if ok), sum(1 for _, ok in rows if not ok), p95))
    return float(first), out


def fault_windows(events: Sequence[Mapping[str, Any]], t0: float) -> list[Window]:
    """Each fault's window from its timeline: from its first opening event to its last closing one
    (``end == start`` when it never closes: an instantaneous fault such as a kill)."""
    spans: dict[str, list[float | None]] = {}
    for ev in sorted(events, key=lambda e: float(e.get("ts") or 0)):
        fid, kind, ts = ev.get("fault_id"), ev.get("event"), ev.get("ts")
        if not fid or ts is None:
            continue
        span = spans.setdefault(str(fid), [None, None])
        if kind in _OPENS and span[0] is None:
            span[0] = float(ts)
        elif kind in _CLOSES:
            span[1] = float(ts)
    out = []
    for fid, (start, end) in spans.items():
        if start is not None:
            out.append(Window(fid, start - t0, (end if end is not None else start) - t0))
    return out


def health_bands(rows: Sequence[Mapping[str, Any]], t0: float) -> dict[str, list[tuple[float, float]]]:
    """Per service, ``(seconds, share of its replicas healthy)`` at each health sample (the supervisor's
    rows with a ``healthy`` field; the lifecycle events are not samples)."""
    by_time: dict[tuple[str, float], list[bool]] = {}
    for r in rows:
        if "healthy" not in r or r.get("ts") is None or not r.get("service"):
            continue
        by_time.setdefault((str(r["service"]), float(r["ts"])), []).append(bool(r["healthy"]))
    out: dict[str, list[tuple[float, float]]] = {}
    for (service, ts), states in sorted(by_time.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        out.setdefault(service, []).append((ts - t0, sum(states) / len(states)))
    return out


def plain_ms(value: float, _pos: object = None) -> str:
    """A latency tick as people read it: ``4 ms``, ``30 ms``, ``1.5 s``, ``60 s``."""
    if value >= 1000:
        return f"{value / 1000:g} s"
    return f"{value:g} ms"


def run_figure(store: RunStore, out: Path, *, title: str = "") -> Path | None:
    """Draw the run's figure from its evidence store into ``out`` (PNG); None when the run has no request."""
    records = ((r.ts, r.latency_ms, r.outcome == "ok") for r in ledger(store, required=False))
    seconds = per_second(records)
    if seconds is None:
        return None
    t0, rows = seconds
    faults = read_jsonl(store, "faults") if store.exists("faults") else []
    health = read_jsonl(store, "health") if store.exists("health") else []
    return _draw(t0, rows, fault_windows(faults, t0), health_bands(health, t0), out, title)


def _draw(
    t0: float,
    rows: list[Second],
    windows: list[Window],
    bands: dict[str, list[tuple[float, float]]],
    out: Path,
    title: str,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, PercentFormatter

    xs = [i + 0.5 for i in range(len(rows))]  # each second's middle
    heights = [3, 2, 3, max(1, len(bands))]
    fig, axes = plt.subplots(
        4, 1, figsize=(10, 7), sharex=True, gridspec_kw={"height_ratios": heights, "hspace": 0.12}
    )
    thr, err, lat, hb = axes
    thr.plot(xs, [r.ok for r in rows], color="tab:green", linewidth=1, label="successful requests/s")
    thr.plot(xs, [r.failed for r in rows], color="tab:red", linewidth=1, label="failed or indeterminate/s")
    thr.set_ylabel("requests/s")
    thr.set_ylim(bottom=0)
    gaps = [i for i, r in enumerate(rows) if r.ok + r.failed == 0]
    for n, i in enumerate(gaps):
        for ax in (thr, err, lat):
            ax.axvspan(i, i + 1, facecolor="none", edgecolor="grey", hatch="///", linewidth=0)
        if n == 0 or gaps[n - 1] != i - 1:  # label each run of empty seconds once
            thr.text(i, thr.get_ylim()[1] * 0.5, " no completed request", fontsize=7, color="dimgrey")
    err.plot(xs, [r.error_ratio if r.error_ratio is not None else math.nan for r in rows], color="tab:red")
    err.set_ylim(0, 1.05)
    err.yaxis.set_major_formatter(PercentFormatter(1.0))
    err.set_ylabel("error ratio")
    lat.plot(xs, [r.p95_ms if r.p95_ms is not None else math.nan for r in rows], color="tab:blue")
    lat.set_yscale("log")
    lat.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    lat.yaxis.set_major_formatter(FuncFormatter(plain_ms))
    lat.yaxis.set_minor_formatter(NullFormatter())
    lat.set_ylabel("p95 latency")
    for w in windows:
        for ax in (thr, err, lat, hb):
            if w.end > w.start:
                ax.axvspan(w.start, w.end, color="grey", alpha=0.2)
            else:
                ax.axvline(w.start, color="black", linestyle="--", linewidth=0.8)
        thr.text(w.start, thr.get_ylim()[1], f" {w.fault_id}", rotation=90, va="top", fontsize=7)
    end = float(len(rows))
    names = sorted(bands)
    for row, service in enumerate(names):
        samples = bands[service]
        for (x, share), nxt in zip(samples, [*samples[1:], (end, 0.0)], strict=True):
            colour = "tab:green" if share >= 1 else ("tab:orange" if share > 0 else "tab:red")
            hb.broken_barh([(x, max(0.0, nxt[0] - x))], (row + 0.1, 0.8), facecolors=colour)
    hb.set_yticks([i + 0.5 for i in range(len(names))], names)
    hb.set_ylim(0, max(1, len(names)))
    hb.set_ylabel("health")
    hb.set_xlabel("seconds since the first request (shaded: a fault acting; dashed: an instantaneous fault)")
    hb.set_xlim(0, end)
    thr.legend(loc="lower left", fontsize=7)
    thr.set_title(title or "throughput, errors, p95 and health over the run", fontsize=9)
    fig.text(0.99, 0.005, "health: green all replicas ready, orange some, red none", ha="right", fontsize=7)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return out
