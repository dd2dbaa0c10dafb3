"""The SLO check's thresholds: limits for the whole run, per endpoint and per phase, and regression mode.

``None`` means "not judged". Each class validates its config block in ``from_dict`` (``ConfigError``
naming the key).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from resgate.checks.slo.evidence import EndpointStats, SloEvidence, opt_float
from resgate.contract.errors import ConfigError

DEFAULT_MAX_RATIO = 1.2
DEFAULT_ALPHA = 0.05
DEFAULT_MIN_WINDOWS = 3
DEFAULT_REGRESSION_PHASES: tuple[str, ...] = ("baseline", "steady")

LIMIT_KEYS = ("p50_ms", "p95_ms", "p99_ms", "max_error_ratio", "min_throughput_rps")
LATENCY_FROM: tuple[str, ...] = ("sent", "intended")
"""What the latency limits judge: the time from each request's actual send (Locust's measure), or from its
intended start (the open model's, ``load.arrival_rate``; :mod:`loadgen.pacing`)."""
PHASE_KINDS: tuple[str, ...] = ("baseline", "during", "recovery", "steady")
"""The phase kinds a ``phases:`` block may set limits for (see :mod:`resgate.checks.slo.phases`)."""
FAULT_PHASES: tuple[str, ...] = ("during", "recovery")
"""The phase kinds that exist once per fault and so take ``per_fault`` overrides."""


def _limits(d: Mapping[str, Any], where: str, *, allowed: Iterable[str]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in allowed:
        if key not in d:
            continue
        if key == "max_error_ratio":
            out[key] = opt_float(d, key, where, at_most=1.0)
        elif key == "min_throughput_rps":
            out[key] = opt_float(d, key, where)
        else:
            out[key] = opt_float(d, key, where, positive=True)
    return out


@dataclass(frozen=True)
class RegressionThresholds:
    """Regression mode: the golden ``baseline`` run, the tolerated p95/p99 ``max_ratio``, the test's
    ``alpha`` and the ``min_windows`` needed on each side."""

    baseline: SloEvidence | None = None
    max_ratio: float = DEFAULT_MAX_RATIO
    alpha: float = DEFAULT_ALPHA
    min_windows: int = DEFAULT_MIN_WINDOWS
    phases: tuple[str, ...] = DEFAULT_REGRESSION_PHASES
    """The phase kinds judged against the golden profile (the others' deltas are only reported)."""

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, where: str = "thresholds.slo.regression"
    ) -> RegressionThresholds:
        """Validate ``{baseline?: {stats, duration_s?, samples}, max_ratio?, alpha?, min_windows?,
        phases?: [phase kind]}``. Without ``baseline`` only the gate's golden profile (``resgate baseline
        set``) is compared; ``phases`` (default baseline and steady) are the phase kinds it judges."""
        if not isinstance(d, Mapping):
            raise ConfigError("must be an object", where=where)
        unknown = set(d) - {"baseline", "max_ratio", "alpha", "min_windows", "phases"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}", where=where)
        baseline = (
            None
            if d.get("baseline") is None
            else SloEvidence.from_dict(d["baseline"], where=f"{where}.baseline")
        )
        phases = d.get("phases", list(DEFAULT_REGRESSION_PHASES))
        if isinstance(phases, (str, bytes, Mapping)) or not isinstance(phases, Iterable):
            raise ConfigError("must be a list of phase kinds", where=f"{where}.phases")
        for i, ph in enumerate(phases):
            if ph not in PHASE_KINDS:
                raise ConfigError(
                    f"unknown phase {ph!r}; known: {list(PHASE_KINDS)}", where=f"{where}.phases[{i}]"
                )
        max_ratio = opt_float(d, "max_ratio", where, positive=True)
        if max_ratio is not None and max_ratio < 1.0:
            raise ConfigError(
                f"must be >= 1 (a tolerated slowdown), got {max_ratio!r}", where=f"{where}.max_ratio"
            )
        alpha = opt_float(d, "alpha", where, positive=True, at_most=1.0)
        min_windows = d.get("min_windows", DEFAULT_MIN_WINDOWS)
        if isinstance(min_windows, bool) or not isinstance(min_windows, int) or min_windows < 2:
            raise ConfigError(f"must be an integer >= 2, got {min_windows!r}", where=f"{where}.min_windows")
        return cls(
            baseline=baseline,
            max_ratio=DEFAULT_MAX_RATIO if max_ratio is None else max_ratio,
            alpha=DEFAULT_ALPHA if alpha is None else alpha,
            min_windows=min_windows,
            phases=tuple(phases),
        )


@dataclass(frozen=True)
class PhaseLimits:
    """Limits per phase kind: ``limits[kind]`` for every phase of that kind, and for during/recovery
    ``per_fault[kind][name or fault kind]`` overrides (a fault's name wins over its kind; ``null`` switches a
    limit off). ``rto_s``/``settle_s`` bound the recovery windows (:func:`resgate.checks.slo.phases.
    phase_windows`)."""

    limits: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)
    per_fault: Mapping[str, Mapping[str, Mapping[str, float | None]]] = field(default_factory=dict)
    rto_s: float | None = None
    settle_s: float | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, *, where: str = "thresholds.slo.phases") -> PhaseLimits:
        """Validate ``{baseline?, steady?, during?, recovery?: {<limit>..., per_fault?: {<fault name or
        kind>: {<limit>...}}}, rto_s?, settle_s?}``; an unknown phase is a ConfigError naming it. Whether a
        ``per_fault`` key names a fault of the gate is checked where the faults are known (the config
        schema)."""
        d = d or {}
        if not isinstance(d, Mapping):
            raise ConfigError("must be an object of phase -> limits", where=where)
        for key in d:
            if key not in (*PHASE_KINDS, "rto_s", "settle_s"):
                raise ConfigError(
                    f"unknown phase {key!r}; known: {list(PHASE_KINDS)} (and rto_s, settle_s)",
                    where=f"{where}.{key}",
                )
        limits: dict[str, dict[str, float | None]] = {}
        per_fault: dict[str, dict[str, dict[str, float | None]]] = {}
        for kind in PHASE_KINDS:
            body = d.get(kind)
            if body is None:
                continue
            w = f"{where}.{kind}"
            if not isinstance(body, Mapping):
                raise ConfigError("must be an object of limits", where=w)
            allowed = {*LIMIT_KEYS, "per_fault"} if kind in FAULT_PHASES else set(LIMIT_KEYS)
            bad = set(body) - allowed
            if bad:
                raise ConfigError(f"unknown keys {sorted(bad)}; known: {sorted(allowed)}", where=w)
            limits[kind] = _limits(body, w, allowed=LIMIT_KEYS)
            raw = body.get("per_fault")
            raw = {} if raw is None else raw
            if not isinstance(raw, Mapping):
                raise ConfigError("must be an object of fault name or kind -> limits", where=f"{w}.per_fault")
            for name, lim in raw.items():
                wf = f"{w}.per_fault.{name}"
                if not isinstance(lim, Mapping):
                    raise ConfigError("must be an object of limits", where=wf)
                bad = set(lim) - set(LIMIT_KEYS)
                if bad:
                    raise ConfigError(f"unknown keys {sorted(bad)}", where=wf)
                per_fault.setdefault(kind, {})[str(name)] = _limits(lim, wf, allowed=LIMIT_KEYS)
        return cls(
            limits=limits,
            per_fault=per_fault,
            rto_s=opt_float(d, "rto_s", where, positive=True),
            settle_s=opt_float(d, "settle_s", where),
        )

    def fault_keys(self) -> list[tuple[str, str]]:
        """``(field path below phases, fault name or kind)`` of every ``per_fault`` override."""
        return [(f"{k}.per_fault.{n}", n) for k, by in self.per_fault.items() for n in by]

    def for_phase(self, phase: str, fault_id: str | None, fault_kind: str | None) -> dict[str, float | None]:
        """The limits of one phase: its kind's, then the fault kind's, then the fault name's overrides."""
        out = dict(self.limits.get(phase, {}))
        by = self.per_fault.get(phase, {})
        for key in (fault_kind, fault_id):
            if key is not None and key in by:
                out.update(by[key])
        return out

    @property
    def judges_anything(self) -> bool:
        """True when any phase limit is set."""
        return any(v is not None for lim in self.limits.values() for v in lim.values()) or any(
            v is not None for by in self.per_fault.values() for lim in by.values() for v in lim.values()
        )


@dataclass(frozen=True)
class SloThresholds:
    """The SLO limits; ``None`` means "not judged".

    Latency limits (``p50_ms``, ``p95_ms``, ``p99_ms``) and ``max_error_ratio`` apply to the whole run and to
    every endpoint; ``min_throughput_rps`` applies to the whole run only. ``per_endpoint`` maps an endpoint
    (``"name"`` or ``"METHOD name"``) to overrides of any of the five keys for that endpoint (``null``
    switches a limit off there). ``phases`` holds limits per phase (:class:`PhaseLimits`). ``regression``
    sets the regression test's options (and, with ``baseline``, an inline baseline of the whole run); a
    golden profile recorded with ``resgate baseline set`` is compared whether or not it is given.
    """

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_error_ratio: float | None = None
    min_throughput_rps: float | None = None
    per_endpoint: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)
    regression: RegressionThresholds | None = None
    phases: PhaseLimits = field(default_factory=PhaseLimits)
    latency_from: str = "sent"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, *, where: str = "thresholds.slo") -> SloThresholds:
        """Validate the ``thresholds.slo`` config block; raises :class:`ConfigError` naming the key."""
        d = d or {}
        if not isinstance(d, Mapping):
            raise ConfigError("must be an object", where=where)
        unknown = set(d) - {*LIMIT_KEYS, "per_endpoint", "regression", "phases", "latency_from"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}", where=where)
        top = _limits(d, where, allowed=LIMIT_KEYS)
        per: dict[str, dict[str, float | None]] = {}
        raw_per = d.get("per_endpoint") or {}
        if not isinstance(raw_per, Mapping):
            raise ConfigError("must be an object of endpoint -> limits", where=f"{where}.per_endpoint")
        for ep, lim in raw_per.items():
            w = f"{where}.per_endpoint.{ep}"
            if not isinstance(lim, Mapping):
                raise ConfigError("must be an object of limits", where=w)
            bad = set(lim) - set(LIMIT_KEYS)
            if bad:
                raise ConfigError(f"unknown keys {sorted(bad)}", where=w)
            per[str(ep)] = _limits(lim, w, allowed=LIMIT_KEYS)
        reg = d.get("regression")
        latency_from = d.get("latency_from", "sent")
        if latency_from not in LATENCY_FROM:
            raise ConfigError(
                f"must be one of {list(LATENCY_FROM)}, got {latency_from!r}", where=f"{where}.latency_from"
            )
        return cls(
            latency_from=latency_from,
            **top,
            per_endpoint=per,
            regression=None
            if reg is None
            else RegressionThresholds.from_dict(reg, where=f"{where}.regression"),
            phases=PhaseLimits.from_dict(d.get("phases"), where=f"{where}.phases"),
        )

    def overall_limits(self) -> dict[str, float | None]:
        """The limits for the whole run: ``{p50_ms, p95_ms, p99_ms, max_error_ratio, min_throughput_rps}``."""
        return {k: getattr(self, k) for k in LIMIT_KEYS}

    def endpoint_limits(self, stats: EndpointStats) -> dict[str, float | None]:
        """The limits of one endpoint: top-level latency/error limits, then its ``per_endpoint`` overrides."""
        out = {k: getattr(self, k) for k in LIMIT_KEYS}
        out["min_throughput_rps"] = None
        for key in (stats.key, stats.name):
            if key in self.per_endpoint:
                out.update(self.per_endpoint[key])
                break
        return out

    @property
    def judges_anything(self) -> bool:
        """True when at least one limit (anywhere) or regression mode is set."""
        return (
            any(getattr(self, k) is not None for k in LIMIT_KEYS)
            or any(v is not None for lim in self.per_endpoint.values() for v in lim.values())
            or self.regression is not None
            or self.phases.judges_anything
        )
