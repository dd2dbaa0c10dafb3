"""The recovery check's leader judgments: per ``leader_loss`` fault, did the lease hand over cleanly?

Evidence is the fault's ``leader_samples`` event: every replica's leader figures from its ``/health`` as a
step function (a sample ``{ts, replica, answered, leader, token, ready}`` each time one of them changed),
the highest ``heartbeat_age_s`` each replica showed while it led, the restarts of each replica over the
observation, and who led (``deposed``, with its ``deposed_token``) when the fault struck. A replica's state
holds from its sample until its next one; "leads" means it answered with ``leader: 1``.

Figures: **time to pause** (from the fault in effect until the deposed leader no longer leads: it stopped
answering or says ``leader: 0``), **time to leader** (from the fault in effect until, after the pause, a
leader matches again: a replica under a fencing token larger than the deposed one's, or the deposed
replica under its own token when its lease outlived the fault and nobody took over), whether the group's
leader figure went 1 → 0 → 1 and its readiness 200 → 503 → 200 over the fault (some replica leading /
ready before it, none at some moment after it, one again later), and the highest heartbeat age of a
leader.

Anomalies (Elle's shape: one function each, judged by the recovery check's one verdict):

- ``split_brain`` — at one moment two replicas lead under different tokens. Example: ``matcher-0`` resumed
  from a pause still says ``leader: 1, token 4`` while ``matcher-1`` says ``leader: 1, token 5``.
- ``stale_leader`` — a replica leads under a token smaller than one already seen: a deposed leader acting
  again, even when the two answers did not overlap. Example: token 5 seen at 12.0 s, ``matcher-0`` leads
  with token 4 at 14.0 s.
- ``takeover_missed`` — no leader matched again within ``rto_s`` of the fault (or ever, while observed
  past the RTO). Example: the standby took the lease 31.2 s after the leader paused, RTO 30 s.
- ``stale_heartbeat`` — a leader showed a heartbeat older than ``max_heartbeat_age_s`` (default 5 s): it
  acted on a lease it had not renewed for that long. Example: ``matcher-0`` led with a 6.4 s old heartbeat.
- ``leader_restarted`` — a replica of the service was restarted over the observation: the handover needed
  a crash or a manual restart.
- ``no_data`` (undecided) — no samples, no leader before the fault, the 1 → 0 → 1 flip not seen, or the
  observation ended before the RTO without a takeover: no data is never good news.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resgate.checks.recovery.evidence import as_object
from resgate.contract.errors import ConfigError
from resgate.contract.fields import number_field

DEFAULT_MAX_HEARTBEAT_AGE_S = 5.0
LEADER_FAILING_KINDS = frozenset(
    {"split_brain", "stale_leader", "takeover_missed", "stale_heartbeat", "leader_restarted"}
)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


@dataclass(frozen=True)
class LeaderSample:
    """One replica's leader figures from the moment ``ts`` until its next sample."""

    ts: float
    replica: str
    answered: bool
    leader: int | None
    token: int | None
    ready: bool | None

    @property
    def leads(self) -> bool:
        return self.answered and self.leader == 1

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str) -> LeaderSample:
        """Validate ``{ts, replica, answered, leader?, token?, ready?}``."""
        d = as_object(d, where)
        replica = d.get("replica")
        if not isinstance(replica, str) or not replica:
            raise ConfigError(f"must be a non-empty string, got {replica!r}", where=f"{where}.replica")
        ready = d.get("ready")
        return cls(
            ts=number_field(d, "ts", where),
            replica=replica,
            answered=bool(d.get("answered")),
            leader=_int(d.get("leader")),
            token=_int(d.get("token")),
            ready=ready if isinstance(ready, bool) else None,
        )


@dataclass(frozen=True)
class LeaderObservation:
    """A ``leader_samples`` event: the samples of one ``leader_loss`` fault (sorted by ts)."""

    fault_id: str
    deposed: str | None
    deposed_token: int | None
    started_ts: float
    ended_ts: float
    samples: tuple[LeaderSample, ...]
    max_leading_heartbeat_age_s: Mapping[str, float]
    restarts: Mapping[str, int]
    truncated: bool = False
    group: str | None = None
    """The lease group followed (a service with several, e.g. the matcher's symbol groups), else None."""
    error: str | None = None
    """Why the sampling stopped early or never began (the replicas could not be listed), else None."""

    @classmethod
    def from_event(
        cls, e: Mapping[str, Any], *, where: str = "evidence.recovery.leaders[0]"
    ) -> LeaderObservation:
        """From a fault-timeline line ``{fault_id, event: "leader_samples", detail: {...}}``."""
        e = as_object(e, where)
        detail = as_object(e.get("detail") or {}, f"{where}.detail")
        raw = detail.get("samples") or []
        if not isinstance(raw, list):
            raise ConfigError("must be a list", where=f"{where}.detail.samples")
        samples = sorted(
            (LeaderSample.from_dict(s, where=f"{where}.detail.samples[{i}]") for i, s in enumerate(raw)),
            key=lambda s: s.ts,
        )
        hb = as_object(detail.get("max_leading_heartbeat_age_s") or {}, f"{where}.detail.hb")
        restarts = as_object(detail.get("restarts") or {}, f"{where}.detail.restarts")
        deposed = detail.get("deposed")
        group = detail.get("group")
        error = detail.get("error")
        return cls(
            fault_id=str(e.get("fault_id") or ""),
            deposed=deposed if isinstance(deposed, str) else None,
            deposed_token=_int(detail.get("deposed_token")),
            started_ts=number_field(detail, "started_ts", f"{where}.detail"),
            ended_ts=number_field(detail, "ended_ts", f"{where}.detail"),
            samples=tuple(samples),
            max_leading_heartbeat_age_s={str(k): float(v) for k, v in hb.items() if _num(v)},
            restarts={str(k): int(v) for k, v in restarts.items() if _int(v) is not None},
            truncated=bool(detail.get("truncated")),
            group=group if isinstance(group, str) else None,
            error=str(error) if error not in (None, "") else None,
        )


def _moments(obs: LeaderObservation) -> list[tuple[float, dict[str, LeaderSample]]]:
    """Each change point with every replica's state at that moment (its latest sample so far)."""
    state: dict[str, LeaderSample] = {}
    out: list[tuple[float, dict[str, LeaderSample]]] = []
    for s in obs.samples:
        state[s.replica] = s
        if out and out[-1][0] == s.ts:
            out[-1] = (s.ts, dict(state))
        else:
            out.append((s.ts, dict(state)))
    return out


def _flip(moments: list[tuple[float, dict[str, LeaderSample]]], injected_ts: float, on: Any) -> bool:
    """True when ``on(sample)`` held for some replica before ``injected_ts``, for none at some moment at or
    after it, and for some replica again later (1 → 0 → 1)."""
    before = [m for t, m in moments if t < injected_ts]
    if not before or not any(on(s) for s in before[-1].values()):
        return False
    gone = False
    for t, m in moments:
        if t < injected_ts:
            continue
        some = any(on(s) for s in m.values())
        if not some:
            gone = True
        elif gone:
            return True
    return False


def _legitimate(obs: LeaderObservation, s: LeaderSample) -> bool:
    """A leader after the loss: a successor under a larger token than the deposed one's, or the deposed
    replica itself under its own token (its lease outlived the fault, nobody took over)."""
    if obs.deposed_token is None:
        return s.replica != obs.deposed
    if s.token is None:
        return False
    return s.token > obs.deposed_token or (s.replica == obs.deposed and s.token == obs.deposed_token)


def leader_figures(obs: LeaderObservation, injected_ts: float) -> dict[str, Any]:
    """``{group, deposed, deposed_token, time_to_pause_s, time_to_leader_s, new_leader, new_token,
    leader_flip, readiness_flip, max_leading_heartbeat_age_s, observed_until}`` of one leader loss
    (``group``: the lease group judged, None for a service with one)."""
    moments = _moments(obs)
    paused = again = None
    new_leader = new_token = None
    for t, m in moments:
        if t < injected_ts:
            continue
        dep = m.get(obs.deposed or "")
        if paused is None and (dep is None or not dep.leads):
            paused = t
        if again is None and paused is not None:
            for s in m.values():
                if s.leads and _legitimate(obs, s):
                    again, new_leader, new_token = t, s.replica, s.token
                    break
    return {
        "group": obs.group,
        "deposed": obs.deposed,
        "deposed_token": obs.deposed_token,
        "time_to_pause_s": None if paused is None else round(max(0.0, paused - injected_ts), 3),
        "time_to_leader_s": None if again is None else round(max(0.0, again - injected_ts), 3),
        "new_leader": new_leader,
        "new_token": new_token,
        "leader_flip": _flip(moments, injected_ts, lambda s: s.leads),
        "readiness_flip": _flip(moments, injected_ts, lambda s: s.answered and s.ready is True),
        "max_leading_heartbeat_age_s": max(obs.max_leading_heartbeat_age_s.values(), default=None),
        "observed_until": obs.ended_ts,
    }


def split_brain(obs: LeaderObservation) -> list[dict[str, Any]]:
    """Moments at which two replicas lead under different tokens: ``{kind, ts, leaders: {replica:
    token}}``."""
    out = []
    for t, m in _moments(obs):
        leaders = {s.replica: s.token for s in m.values() if s.leads}
        if len(set(leaders.values())) > 1:  # two tokens need two replicas
            out.append({"kind": "split_brain", "ts": t, "leaders": leaders})
    return out


def stale_leaders(obs: LeaderObservation) -> list[dict[str, Any]]:
    """Samples leading under a token smaller than one seen before: ``{kind, ts, replica, token,
    newest_token}``."""
    out, newest = [], None
    for s in obs.samples:
        if s.token is None:
            continue
        if s.leads and newest is not None and s.token < newest:
            out.append({"kind": "stale_leader", "ts": s.ts, "replica": s.replica, "token": s.token,
                        "newest_token": newest})  # fmt: skip
        newest = s.token if newest is None else max(newest, s.token)
    return out


def leader_anomalies(
    obs: LeaderObservation | None, injected_ts: float | None, *, rto_s: float, max_heartbeat_age_s: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(figures, anomalies)`` of one leader loss; anomaly kinds in :data:`LEADER_FAILING_KINDS` or
    ``no_data`` (with a ``reason``)."""
    if obs is None or injected_ts is None:
        return {}, [{"kind": "no_data", "reason": "no leader samples were recorded for this leader loss"}]
    figures = leader_figures(obs, injected_ts)
    out: list[dict[str, Any]] = [*split_brain(obs), *stale_leaders(obs)]
    if obs.error is not None:  # samples that stop early are not a picture of the handover
        out.append({"kind": "no_data", "reason": f"the leader sampling failed: {obs.error}"})
    before = [s for s in obs.samples if s.ts < injected_ts and s.leads]
    if not before:
        out.append({"kind": "no_data", "reason": "no replica was seen leading before the leader loss"})
    elif not figures["leader_flip"]:
        out.append({"kind": "no_data", "reason": "the leader figure was not seen going 1 -> 0 -> 1"})
    took = figures["time_to_leader_s"]
    if figures["time_to_pause_s"] is None:
        pass  # the leader never went away: no handover to time (undecided above: no flip)
    elif took is not None and took > rto_s:
        out.append({"kind": "takeover_missed", "time_to_leader_s": took, "rto_s": rto_s})
    elif took is None and obs.ended_ts - injected_ts >= rto_s:
        out.append({"kind": "takeover_missed", "time_to_leader_s": None, "rto_s": rto_s})
    elif took is None:
        out.append(
            {"kind": "no_data", "reason": "the observation ended before the RTO, no replica had taken over"}
        )
    for replica, age in sorted(obs.max_leading_heartbeat_age_s.items()):
        if age > max_heartbeat_age_s:
            out.append({"kind": "stale_heartbeat", "replica": replica, "heartbeat_age_s": age,
                        "max_heartbeat_age_s": max_heartbeat_age_s})  # fmt: skip
    for replica, n in sorted(obs.restarts.items()):
        if n > 0:
            out.append({"kind": "leader_restarted", "replica": replica, "restarts": n})
    return figures, out


def parse_leaders(events: Sequence[Mapping[str, Any]], where: str) -> tuple[LeaderObservation, ...]:
    """The ``leader_samples`` events of a fault timeline as observations."""
    return tuple(LeaderObservation.from_event(e, where=f"{where}[{i}]") for i, e in enumerate(events))
