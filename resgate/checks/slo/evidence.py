"""The SLO check's evidence: Locust's per-endpoint stats and per-window p95 samples from the ledger.

:class:`SloEvidence` validates Locust's ``--json`` output (``ConfigError`` naming the entry and key);
:func:`window_p95` cuts ledger records into fixed windows for regression mode; :func:`evidence_from_run`
builds the evidence from both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from resgate.checks import histogram as h
from resgate.checks.ledger import LedgerRecord
from resgate.checks.slo.phases import locust_bucket
from resgate.contract.errors import ConfigError, EvidenceMissing

if TYPE_CHECKING:
    from resgate.checks.slo.golden import GoldenProfile
    from resgate.checks.slo.phases import PhaseFigures

DEFAULT_WINDOW_S = 5.0


def _int_field(d: Mapping[str, Any], key: str, where: str, *, default: int | None = None) -> int:
    v = d.get(key, default)
    if v is None:
        raise ConfigError("is required", where=f"{where}.{key}")
    if (
        isinstance(v, bool)
        or not isinstance(v, (int, float))
        or (isinstance(v, float) and not v.is_integer())
    ):
        raise ConfigError(f"must be an integer, got {v!r}", where=f"{where}.{key}")
    if v < 0:
        raise ConfigError(f"must be >= 0, got {v!r}", where=f"{where}.{key}")
    return int(v)


def opt_float(
    d: Mapping[str, Any], key: str, where: str, *, positive: bool = False, at_most: float | None = None
) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"must be a finite number, got {v!r}", where=f"{where}.{key}")
    if v < 0 or (positive and v == 0):
        raise ConfigError(f"must be {'> 0' if positive else '>= 0'}, got {v!r}", where=f"{where}.{key}")
    if at_most is not None and v > at_most:
        raise ConfigError(f"must be <= {at_most:g}, got {v!r}", where=f"{where}.{key}")
    return float(v)


def _samples(v: Any, where: str) -> tuple[float, ...] | None:
    if v is None:
        return None
    if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, Iterable):
        raise ConfigError("must be a list of numbers", where=where)
    out = []
    for i, x in enumerate(v):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise ConfigError(f"must be a finite number, got {x!r}", where=f"{where}[{i}]")
        out.append(float(x))
    return tuple(out)


@dataclass(frozen=True)
class EndpointStats:
    """One Locust stats entry: request and failure counts and the response-time histogram ``{ms: count}``."""

    name: str
    method: str
    num_requests: int
    num_failures: int
    response_times: Mapping[float, int]
    num_none_requests: int = 0
    start_time: float | None = None
    last_request_timestamp: float | None = None

    @property
    def key(self) -> str:
        """``"METHOD name"`` (or just the name when there is no method): how endpoints are told apart."""
        return f"{self.method} {self.name}" if self.method else self.name

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "evidence.slo.stats[0]") -> EndpointStats:
        """Validate one entry of Locust's ``--json`` output (extra keys like ``num_reqs_per_sec`` ignored)."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"must be an object, got {type(d).__name__}", where=where)
        name = d.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"must be a non-empty string, got {name!r}", where=f"{where}.name")
        method = d.get("method") or ""
        if not isinstance(method, str):
            raise ConfigError(f"must be a string, got {method!r}", where=f"{where}.method")
        num_requests = _int_field(d, "num_requests", where)
        num_failures = _int_field(d, "num_failures", where, default=0)
        num_none = _int_field(d, "num_none_requests", where, default=0)
        hist = h.normalize(d.get("response_times") or {}, where=f"{where}.response_times")
        if num_failures > num_requests:
            raise ConfigError(
                f"num_failures ({num_failures}) exceeds num_requests ({num_requests})",
                where=f"{where}.num_failures",
            )
        timed = h.total(hist)
        if timed != num_requests - num_none:
            # Locust logs every timed request into the histogram exactly once; a mismatch is broken evidence.
            raise ConfigError(
                f"histogram holds {timed} samples, expected num_requests - num_none_requests"
                f" = {num_requests - num_none}",
                where=f"{where}.response_times",
            )
        return cls(
            name=name,
            method=method,
            num_requests=num_requests,
            num_failures=num_failures,
            response_times=hist,
            num_none_requests=num_none,
            start_time=opt_float(d, "start_time", where),
            last_request_timestamp=opt_float(d, "last_request_timestamp", where),
        )


@dataclass(frozen=True)
class SloEvidence:
    """What the SLO check judges.

    ``stats``: Locust endpoint stats; ``duration_s``: length of the load phase (``None`` = derive it from the
    stats' ``start_time``/``last_request_timestamp``); ``samples``: per-window p95 latencies in ms from
    :func:`window_p95`, used only by regression mode; ``phases``: the run's phases and their figures
    (:func:`resgate.checks.slo.phases.run_phases`; ``None`` when the run has no ledger); ``golden``: the
    gate's golden profile (``None``: no baseline was set).
    """

    stats: tuple[EndpointStats, ...]
    duration_s: float | None = None
    samples: tuple[float, ...] | None = None
    phases: tuple[PhaseFigures, ...] | None = None
    golden: GoldenProfile | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | Sequence[Any], *, where: str = "evidence.slo") -> SloEvidence:
        """Build from ``{stats: [...], duration_s?, samples?}`` or from Locust's bare ``--json`` list.

        An ``"Aggregated"`` entry without a method (Locust's total row, present in some exports) is skipped so
        that requests are not counted twice.
        """
        if isinstance(d, Sequence) and not isinstance(d, (str, bytes)):
            d = {"stats": d}
        if not isinstance(d, Mapping):
            raise ConfigError(
                f"must be an object or a list of Locust stats, got {type(d).__name__}", where=where
            )
        unknown = set(d) - {"stats", "duration_s", "samples"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}", where=where)
        raw = d.get("stats")
        if raw is None or isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Sequence):
            raise ConfigError("must be a list of Locust endpoint stats", where=f"{where}.stats")
        stats = tuple(
            EndpointStats.from_dict(e, where=f"{where}.stats[{i}]")
            for i, e in enumerate(raw)
            if not (isinstance(e, Mapping) and e.get("name") == "Aggregated" and not e.get("method"))
        )
        return cls(
            stats=stats,
            duration_s=opt_float(d, "duration_s", where, positive=True),
            samples=_samples(d.get("samples"), f"{where}.samples"),
        )


def window_p95(
    records: Iterable[LedgerRecord | Mapping[str, Any]],
    window_s: float = DEFAULT_WINDOW_S,
    *,
    min_samples: int = 1,
) -> list[float]:
    """Per-window nearest-rank p95 of ``latency_ms``, one float per non-empty window, in time order.

    Windows are ``window_s`` seconds long and aligned on the earliest ``ts``; windows with fewer than
    ``min_samples`` records are dropped. Records are :class:`LedgerRecord` s or mappings with ``ts`` and
    ``latency_ms``. Returns ``[]`` for no records.
    """
    if not (window_s > 0):
        raise ValueError(f"window_s must be > 0, got {window_s!r}")
    points: list[tuple[float, float]] = []
    for r in records:
        if isinstance(r, Mapping):
            points.append((float(r["ts"]), float(r["latency_ms"])))
        else:
            points.append((r.ts, r.latency_ms))
    if not points:
        return []
    t0 = min(ts for ts, _ in points)
    windows: dict[int, list[float]] = {}
    for ts, ms in points:
        windows.setdefault(int((ts - t0) // window_s), []).append(ms)
    out = []
    for i in sorted(windows):
        if len(windows[i]) >= min_samples:
            p = h.nearest_rank(windows[i], 95.0)
            assert p is not None
            out.append(p)
    return out


def stats_from_ledger(
    records: Iterable[LedgerRecord | Mapping[str, Any]], *, latency_from: str = "intended"
) -> list[dict[str, Any]]:
    """Endpoint stats in the shape of Locust's ``--json`` entries, built from the ledger: one per (``op``,
    ``method``), with its requests, failures (outcome ``fail`` or ``info``, as the phases count them), first
    and last ``ts`` and the histogram of each request's latency (:meth:`LedgerRecord.latency`, filed under
    Locust's buckets, :func:`resgate.checks.slo.phases.locust_bucket`). The SLO check's whole-run and
    per-endpoint figures when it judges latency from the intended start, which Locust does not measure.
    Raises :class:`EvidenceMissing` when ``latency_from`` is ``"intended"`` and no record has an intended
    start (a closed-model load: set ``load.arrival_rate``)."""
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    intended = 0
    for raw in records:
        r = raw if isinstance(raw, LedgerRecord) else LedgerRecord.from_dict(raw)
        intended += r.intended_latency_ms is not None
        e = entries.setdefault(
            (r.op, r.method or ""),
            {
                "name": r.op,
                "method": r.method or "",
                "num_requests": 0,
                "num_failures": 0,
                "num_none_requests": 0,
                "response_times": {},
                "start_time": r.ts,
                "last_request_timestamp": r.ts,
            },
        )
        e["num_requests"] += 1
        e["num_failures"] += r.outcome != "ok"
        e["start_time"] = min(e["start_time"], r.ts)
        e["last_request_timestamp"] = max(e["last_request_timestamp"], r.ts)
        bucket = locust_bucket(r.latency(latency_from))
        e["response_times"][bucket] = e["response_times"].get(bucket, 0) + 1
    if latency_from == "intended" and not intended:
        raise EvidenceMissing(
            "checks.slo.latency_from is 'intended' but the ledger records no intended start"
            " (only the open model, load.arrival_rate, has one)"
        )
    return [entries[k] for k in sorted(entries)]


def evidence_from_run(
    locust_stats: Sequence[Mapping[str, Any]],
    *,
    duration_s: float | None = None,
    records: Iterable[LedgerRecord | Mapping[str, Any]] | None = None,
    window_s: float = DEFAULT_WINDOW_S,
) -> SloEvidence:
    """Build :class:`SloEvidence` from Locust's ``--json`` list and, optionally, the ledger (``samples``)."""
    ev = SloEvidence.from_dict({"stats": list(locust_stats), "duration_s": duration_s})
    if records is None:
        return ev
    return SloEvidence(stats=ev.stats, duration_s=ev.duration_s, samples=tuple(window_p95(records, window_s)))
