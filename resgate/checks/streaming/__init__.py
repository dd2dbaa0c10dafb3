"""The ``streaming`` check: what a market-data subscriber saw through the faults, against the topic.

Evidence (:class:`StreamingEvidence`): the stream ledger (one record per subscriber event,
:mod:`resgate.contract.stream`), what was **published** — every trade's ``(symbol, seq, ts)`` read from
the trades topic, never the feed's own counters — and the run's fault timeline. For each subscriber and
symbol, the trades it was owed are the published ones after its first snapshot's sequence, up to
``tail_grace_s`` before the feed was last seen reaching it (its last snapshot, resume answer, trade or
heartbeat: a trade published as the load stopped, or while it was still reconnecting when it stopped,
is not owed), minus the ranges the feed declared it could not resend (a resume answered with mode
``snapshot``).

The trades topic is ``topic`` (default ``pb.executions``); a trade is an event whose ``type`` is
``trade_type`` (default ``TradeExecuted``) with ``symbol`` and ``seq`` (:func:`gather`).

Anomalies (one function each below; ``kind`` in the examples):

- ``gap_not_healed``: a trade owed to a subscriber never reached it, even after reconnects and resumes.
  Example: client ``s1-2`` holds AAPL 1..40 and 47..90; AAPL 41..46 were published and never came.
  Fails when overall completeness is below ``min_completeness`` (default 1.0: a feed that supports
  resume must heal every gap).
- ``silent_subscriber``: a subscriber whose connection stayed up never got a trade it was owed: the
  trade was published after the feed answered the subscriber's subscribe on that connection (its
  snapshot or resume), and the subscriber went on hearing the feed (trades of other symbols,
  heartbeats) on the same connection for more than ``max_silence_s`` (default 5 s) after it, with no
  disconnect in between and without the trade after the missing range. The feed dropped it without a
  close, so it never reconnected to be resent.
  Example: client ``s1-2`` subscribed to AAPL at 10.0 and heard heartbeats until 31.0 on that
  connection; AAPL 41..90, published from 12.5 on, never came (silent for 18.5 s). Judged whatever
  ``min_completeness`` is.
- ``window_incomplete``: of the trades published during a fault (from its injection to its end or
  recovery; for an instantaneous fault such as a kill, the ``instant_window_s``, default 10 s, after
  it), fewer than ``min_completeness_during`` (default 0.95) reached the subscribers by the end of the
  fault + ``rto_s``.
- ``slow_reconnect``: a reconnect took longer than ``rto_s`` (default 30 s) from the disconnect to being
  subscribed again.
- ``connection_errors``: outside the faults (an attempt from a fault's start to its end + ``rto_s`` is
  the fault's, judged by the reconnect time), failed connection attempts over all attempts above
  ``max_connection_error_rate`` (default 0.05). Judged only when some attempt succeeded: subscribers
  that never connected make the check unknown, not false.
- ``slow_first_fill``: outside the faults (a fill whose acknowledgement-to-arrival span overlaps a
  fault's ``[start, end + rto_s]`` is the fault's), the p95 of the time from an order's acknowledgement
  to its first fill on the stream above ``max_ttff_p95_ms`` (default 5000 ms); not judged without fills.
- ``no_subscriber_connected`` / ``nothing_published`` / ``truncated`` make the check unknown: without a
  subscriber that ever connected, or a trade on the topic, or with a ledger whose lines do not parse,
  completeness is not shown, so it is never a pass.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from resgate.checks.result import UNKNOWN, CheckResult, interleave, judge
from resgate.contract import stream as sl
from resgate.contract.errors import ConfigError

NAME = "streaming"
EXAMPLES_CAP = 20
FAILING_KINDS = frozenset(
    {
        "gap_not_healed",
        "silent_subscriber",
        "window_incomplete",
        "slow_reconnect",
        "connection_errors",
        "slow_first_fill",
    }
)
UNDECIDED_KINDS = frozenset({"no_subscriber_connected", "nothing_published", "truncated"})
FAULT_START_EVENTS = ("injecting", "injected")
FAULT_END_EVENTS = ("ended", "recovered", "aborted", "lifting")

_STR_KEYS = {"topic": "pb.executions", "trade_type": "TradeExecuted"}
_FLOAT_KEYS = {
    "min_completeness": (1.0, 0.0, 1.0),
    "min_completeness_during": (0.95, 0.0, 1.0),
    "rto_s": (30.0, 0.0, math.inf),
    "max_connection_error_rate": (0.05, 0.0, 1.0),
    "max_ttff_p95_ms": (5000.0, 0.0, math.inf),
    "tail_grace_s": (2.0, 0.0, math.inf),
    "instant_window_s": (10.0, 0.0, math.inf),
    "max_silence_s": (5.0, 0.0, math.inf),
}


@dataclass(frozen=True)
class StreamingThresholds:
    """The limits of ``checks.streaming`` (defaults in the module docstring)."""

    min_completeness: float = 1.0
    min_completeness_during: float = 0.95
    rto_s: float = 30.0
    max_connection_error_rate: float = 0.05
    max_ttff_p95_ms: float = 5000.0
    tail_grace_s: float = 2.0
    instant_window_s: float = 10.0
    max_silence_s: float = 5.0
    topic: str = "pb.executions"
    trade_type: str = "TradeExecuted"

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any] | None, *, where: str = "checks.streaming"
    ) -> StreamingThresholds:
        """Validate ``{min_completeness?, min_completeness_during?, rto_s?, max_connection_error_rate?,
        max_ttff_p95_ms?, tail_grace_s?, instant_window_s?, max_silence_s?, topic?, trade_type?}``: numbers
        in range (ratios 0..1), names non-empty strings; ConfigError naming the field."""
        d = d or {}
        if not isinstance(d, Mapping):
            raise ConfigError("must be an object", where=where)
        unknown = set(d) - set(_FLOAT_KEYS) - set(_STR_KEYS)
        if unknown:
            known = sorted([*_FLOAT_KEYS, *_STR_KEYS])
            raise ConfigError(f"unknown keys {sorted(unknown)}; known: {known}", where=where)
        values: dict[str, Any] = {}
        for key, default in _STR_KEYS.items():
            v = d.get(key, default)
            if not isinstance(v, str) or not v.strip():
                raise ConfigError(f"must be a non-empty string, got {v!r}", where=f"{where}.{key}")
            values[key] = v
        for key, (default, lo, hi) in _FLOAT_KEYS.items():
            v = d.get(key, default)
            if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi or math.isnan(v):
                bound = f"between {lo:g} and {hi:g}" if hi != math.inf else f">= {lo:g}"
                raise ConfigError(f"must be a number {bound}, got {v!r}", where=f"{where}.{key}")
            values[key] = float(v)
        return cls(**values)


Thresholds = StreamingThresholds


@dataclass(frozen=True)
class StreamingEvidence:
    """``records``: the stream ledger's records; ``published``: ``{symbol: {seq: publish ts}}`` from the
    topic; ``faults``: the fault timeline's events (``{ts, fault_id, event, kind?}``); ``bad_lines``: stream
    ledger lines that did not parse (a truncated ledger)."""

    records: tuple[Mapping[str, Any], ...]
    published: Mapping[str, Mapping[int, float]]
    faults: tuple[Mapping[str, Any], ...] = ()
    bad_lines: int = 0
    sources: Mapping[str, Any] = field(default_factory=dict)


def gather(
    bootstrap: str, thresholds: StreamingThresholds, *, kafka: Any = None
) -> tuple[dict[str, dict[int, float]], list[tuple[str, int, int]]]:
    """``({symbol: {seq: publish ts}}, truncated partitions)`` from ``thresholds.topic``
    (:func:`resgate.checks.streaming.published.read_published`; aiokafka is imported there)."""
    from resgate.checks.streaming.published import read_published

    return read_published(bootstrap, thresholds.topic, thresholds.trade_type, kafka=kafka)


# ------------------------------------------------------------------------------------------ measures
def ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted sequences: ``[1, 2, 3, 7]`` → ``[(1, 3), (7, 7)]``."""
    out: list[tuple[int, int]] = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


@dataclass
class _Sub:
    base: int | None = None
    received: dict[int, float] = field(default_factory=dict)  # seq -> first arrival ts
    skipped: set[int] = field(default_factory=set)


def owed(evidence: StreamingEvidence, tail_grace_s: float) -> dict[tuple[str, str], tuple[set[int], _Sub]]:
    """Per (client, symbol): the published sequences the subscriber was owed, and what it received.

    Owed = published after the first snapshot's ``seq``, at or before (the last time the feed was seen
    reaching the subscriber - ``tail_grace_s``; :data:`resgate.contract.stream.LISTENING_EVENTS`: a
    subscriber stopped in the middle of a reconnect is not owed what it had no chance to be resent), not
    in a range the feed declared skipped (resume mode ``snapshot``: ``from_seq+1 .. snapshot seq``)."""
    subs: dict[tuple[str, str], _Sub] = defaultdict(_Sub)
    last_ts: dict[str, float] = {}
    skip_from: dict[tuple[str, str], int] = {}
    for r in evidence.records:
        client = str(r.get("client_id"))
        ts = float(r.get("ts") or 0.0)
        ev, symbol = r.get("event"), r.get("symbol")
        if ev in sl.LISTENING_EVENTS:
            last_ts[client] = max(last_ts.get(client, ts), ts)
        key = (client, str(symbol))
        if ev == sl.EV_SNAPSHOT:
            seq = int(r["seq"])  # a snapshot always carries the sequence it stands for
            sub = subs[key]
            if sub.base is None:
                sub.base = seq
            elif key in skip_from:
                sub.skipped.update(range(skip_from.pop(key) + 1, seq + 1))
        elif ev == sl.EV_RESUME and r.get("mode") == sl.MODE_SNAPSHOT:
            skip_from[key] = int(r["from_seq"])
        elif ev == sl.EV_MSG:
            subs[key].received.setdefault(int(r["seq"]), ts)
    out: dict[tuple[str, str], tuple[set[int], _Sub]] = {}
    for key, sub in subs.items():
        if sub.base is None:
            continue
        until = last_ts.get(key[0], 0.0) - tail_grace_s
        pub = evidence.published.get(key[1], {})
        due = {s for s, t in pub.items() if s > sub.base and t <= until} - sub.skipped
        out[key] = (due, sub)
    return out


def fault_windows(
    events: Iterable[Mapping[str, Any]], instant_window_s: float = 0.0
) -> list[tuple[str, float, float]]:
    """``[(fault_id, start, end)]``: start = its first injecting/injected event, end = its last
    ended/recovered/aborted/lifting event; a fault with none (a kill: instantaneous) ends
    ``instant_window_s`` after its start."""
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    for e in events:
        fid, ts = str(e.get("fault_id")), float(e.get("ts") or 0.0)
        if e.get("event") in FAULT_START_EVENTS:
            starts[fid] = min(starts.get(fid, ts), ts)
        elif e.get("event") in FAULT_END_EVENTS:
            ends[fid] = max(ends.get(fid, ts), ts)
    windows = ((f, s, max(s, ends[f]) if f in ends else s + instant_window_s) for f, s in starts.items())
    return sorted(windows, key=lambda w: w[1])


def steady_attempts(
    records: Iterable[Mapping[str, Any]], windows: list[tuple[str, float, float]], rto_s: float
) -> tuple[int, int]:
    """``(attempts, failed)`` of the connection attempts outside every fault's ``[start, end + rto_s]``."""
    attempts = failed = 0
    for r in records:
        ev = r.get("event")
        if ev not in (sl.EV_CONNECT, sl.EV_CONNECT_ERROR):
            continue
        ts = float(r.get("ts") or 0.0)
        if any(start <= ts <= end + rto_s for _f, start, end in windows):
            continue
        attempts += 1
        failed += ev == sl.EV_CONNECT_ERROR
    return attempts, failed


def steady_ttffs(
    records: Iterable[Mapping[str, Any]], windows: list[tuple[str, float, float]], rto_s: float
) -> tuple[list[float], list[float]]:
    """``(all, steady)`` times to first fill (ms); steady = the fills whose span from acknowledgement
    (arrival - ttff) to arrival overlaps no fault's ``[start, end + rto_s]``."""
    every: list[float] = []
    steady: list[float] = []
    for r in records:
        if r.get("event") != sl.EV_FILL or r.get("ttff_ms") is None:
            continue
        ttff, arrived = float(r["ttff_ms"]), float(r.get("ts") or 0.0)
        acked = arrived - ttff / 1000.0
        every.append(ttff)
        if not any(acked <= end + rto_s and arrived >= start for _f, start, end in windows):
            steady.append(ttff)
    return every, steady


def p95(values: list[float]) -> float | None:
    """The nearest-rank 95th percentile (None for no values)."""
    if not values:
        return None
    v = sorted(values)
    return v[math.ceil(0.95 * len(v)) - 1]


# ------------------------------------------------------------------------------------------ detectors
def unhealed_gaps(table: Mapping[tuple[str, str], tuple[set[int], _Sub]]) -> list[dict[str, Any]]:
    """One ``gap_not_healed`` per (client, symbol, missing range)."""
    out = []
    for (client, symbol), (due, sub) in sorted(table.items()):
        for lo, hi in ranges(due - set(sub.received)):
            out.append(
                {
                    "kind": "gap_not_healed",
                    "client_id": client,
                    "symbol": symbol,
                    "from_seq": lo,
                    "to_seq": hi,
                }
            )
    return out


def live_spans(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Per (client, symbol): ``[(answered, heard)]``, one per connection: from the feed's answer to the
    subscribe for the symbol (its snapshot or resume record) to the last time the feed was heard on that
    connection (:data:`resgate.contract.stream.LISTENING_EVENTS`). A connect, disconnect or failed attempt
    ends the connection; each client's records are taken in time order."""
    by_client: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        by_client[str(r.get("client_id"))].append(r)
    out: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for client, recs in by_client.items():
        spans: dict[str, list[float]] = {}  # symbol -> [answered, heard] on the open connection
        for r in [*sorted(recs, key=lambda r: float(r.get("ts") or 0.0)), {"event": sl.EV_DISCONNECT}]:
            ev, ts = r.get("event"), float(r.get("ts") or 0.0)
            if ev in (sl.EV_CONNECT, sl.EV_DISCONNECT, sl.EV_CONNECT_ERROR):
                for symbol, (start, heard) in spans.items():
                    out[(client, symbol)].append((start, heard))
                spans = {}
            elif ev in sl.LISTENING_EVENTS:
                for span in spans.values():
                    span[1] = ts
                if ev in (sl.EV_SNAPSHOT, sl.EV_RESUME):
                    spans.setdefault(str(r.get("symbol")), [ts, ts])
    return out


def silent_subscribers(
    table: Mapping[tuple[str, str], tuple[set[int], _Sub]],
    evidence: StreamingEvidence,
    max_silence_s: float,
) -> list[dict[str, Any]]:
    """One ``silent_subscriber`` per (client, symbol, missing range) whose first trade was published on a
    live connection (at or after the feed's answer to the subscribe on it) that the subscriber went on
    hearing for more than ``max_silence_s`` after it without the trade after the range arriving;
    ``silent_s`` is that span (to the arrival of the trade after the range, or the last time it heard the
    feed on that connection)."""
    spans = live_spans(evidence.records)
    out = []
    for (client, symbol), (due, sub) in sorted(table.items()):
        pub = evidence.published.get(symbol, {})
        for lo, hi in ranges(due - set(sub.received)):
            t = pub[lo]
            until = sub.received.get(hi + 1, math.inf)  # the trade after the range ends the silence
            silent = max(
                (min(heard, until) - t for start, heard in spans.get((client, symbol), ()) if start <= t),
                default=0.0,
            )
            if silent > max_silence_s:
                out.append(
                    {
                        "kind": "silent_subscriber",
                        "client_id": client,
                        "symbol": symbol,
                        "from_seq": lo,
                        "to_seq": hi,
                        "silent_s": round(silent, 3),
                    }
                )
    return out


def incomplete_windows(
    table: Mapping[tuple[str, str], tuple[set[int], _Sub]],
    evidence: StreamingEvidence,
    th: StreamingThresholds,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per fault window: (anomalies, figures). Owed trades published in [start, end], received by end +
    ``rto_s``; a window below ``min_completeness_during`` is ``window_incomplete``."""
    anomalies, figures = [], []
    for fid, start, end in fault_windows(evidence.faults, th.instant_window_s):
        owed_n = got = 0
        for (_client, symbol), (due, sub) in table.items():
            pub = evidence.published.get(symbol, {})
            for s in due:
                if start <= pub[s] <= end:
                    owed_n += 1
                    arrived = sub.received.get(s)
                    got += arrived is not None and arrived <= end + th.rto_s
        ratio = got / owed_n if owed_n else None
        figures.append(
            {"fault_id": fid, "start": start, "end": end, "owed": owed_n, "received": got, "ratio": ratio}
        )
        if ratio is not None and ratio < th.min_completeness_during:
            anomalies.append(
                {
                    "kind": "window_incomplete",
                    "fault_id": fid,
                    "owed": owed_n,
                    "received": got,
                    "ratio": ratio,
                }
            )
    return anomalies, figures


def slow_reconnects(records: Iterable[Mapping[str, Any]], rto_s: float) -> list[dict[str, Any]]:
    """One ``slow_reconnect`` per reconnect whose ``duration_ms`` is above ``rto_s``."""
    return [
        {"kind": "slow_reconnect", "client_id": r.get("client_id"), "ts": r.get("ts"), "duration_ms": d}
        for r in records
        if r.get("event") == sl.EV_RECONNECT and (d := float(r.get("duration_ms") or 0.0)) > rto_s * 1000.0
    ]


def check(evidence: StreamingEvidence, thresholds: StreamingThresholds) -> CheckResult:
    """Judge the stream ledger against the topic.

    Returns a :class:`CheckResult` named ``"streaming"`` with counts ``{subscribers, connects,
    connect_errors, connection_error_rate (outside the faults), reconnects, max_reconnect_ms, owed,
    received, completeness, unhealed, gaps_seen, silent (trades in silent ranges), silent_subscribers,
    skipped_by_snapshot, fills, ttff_p95_ms (outside the
    faults), ttff_p95_ms_all, published}``, examples (capped, interleaved by kind) naming the client,
    symbol and sequence range, and ``details = {windows (per fault: owed, received, ratio), limits}``."""
    th = thresholds
    recs = evidence.records
    events = defaultdict(list)
    for r in recs:
        events[r.get("event")].append(r)
    connects, errors = len(events[sl.EV_CONNECT]), len(events[sl.EV_CONNECT_ERROR])
    fws = fault_windows(evidence.faults, th.instant_window_s)
    steady, steady_failed = steady_attempts(recs, fws, th.rto_s)
    error_rate = steady_failed / steady if steady else None
    table = owed(evidence, th.tail_grace_s)
    due_n = sum(len(d) for d, _ in table.values())
    got_n = sum(len(d & set(s.received)) for d, s in table.values())
    completeness = got_n / due_n if due_n else None
    ttffs, ttffs_steady = steady_ttffs(recs, fws, th.rto_s)
    ttff95 = p95(ttffs_steady)
    published_n = sum(len(v) for v in evidence.published.values())
    anomalies: list[dict[str, Any]] = []
    if evidence.bad_lines:
        anomalies.append({"kind": "truncated", "bad_lines": evidence.bad_lines})
    if connects == 0:
        anomalies.append({"kind": "no_subscriber_connected", "connect_errors": errors})
    if published_n == 0:
        anomalies.append({"kind": "nothing_published"})
    gaps = unhealed_gaps(table)
    if completeness is not None and completeness < th.min_completeness:
        anomalies += gaps
    silent = silent_subscribers(table, evidence, th.max_silence_s)
    anomalies += silent
    window_anomalies, windows = incomplete_windows(table, evidence, th)
    anomalies += window_anomalies
    anomalies += slow_reconnects(recs, th.rto_s)
    if connects and error_rate is not None and error_rate > th.max_connection_error_rate:
        anomalies.append(
            {"kind": "connection_errors", "errors": steady_failed, "attempts": steady, "rate": error_rate}
        )
    if ttff95 is not None and ttff95 > th.max_ttff_p95_ms:
        anomalies.append({"kind": "slow_first_fill", "p95_ms": ttff95, "fills": len(ttffs_steady)})
    reconnect_ms = [float(r.get("duration_ms") or 0.0) for r in events[sl.EV_RECONNECT]]
    counts: dict[str, Any] = {
        "subscribers": len({r.get("client_id") for r in recs}),
        "connects": connects,
        "connect_errors": errors,
        "connection_error_rate": error_rate,
        "reconnects": len(reconnect_ms),
        "max_reconnect_ms": max(reconnect_ms) if reconnect_ms else None,
        "published": published_n,
        "owed": due_n,
        "received": got_n,
        "completeness": completeness,
        "unhealed": sum(hi - lo + 1 for g in gaps for lo, hi in [(g["from_seq"], g["to_seq"])]),
        "gaps_seen": len(events[sl.EV_GAP]),
        "silent": sum(g["to_seq"] - g["from_seq"] + 1 for g in silent),
        "silent_subscribers": len({g["client_id"] for g in silent}),
        "skipped_by_snapshot": sum(len(s.skipped) for _, s in table.values()),
        "fills": len(ttffs),
        "ttff_p95_ms": ttff95,
        "ttff_p95_ms_all": p95(ttffs),
    }
    valid = judge(anomalies, failing=FAILING_KINDS, undecided=UNDECIDED_KINDS)
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in anomalies:
        by_kind[a["kind"]].append(a)
    examples = interleave(by_kind.values(), EXAMPLES_CAP)
    limits = {
        "min_completeness": th.min_completeness,
        "min_completeness_during": th.min_completeness_during,
        "rto_s": th.rto_s,
        "max_connection_error_rate": th.max_connection_error_rate,
        "max_ttff_p95_ms": th.max_ttff_p95_ms,
        "max_silence_s": th.max_silence_s,
    }
    details = {"windows": windows, "limits": limits}
    if valid == UNKNOWN:
        why = ", ".join(sorted(k for k in by_kind if k in UNDECIDED_KINDS))
        return CheckResult(NAME, UNKNOWN, counts, examples, error=f"stream not shown: {why}", details=details)
    return CheckResult(NAME, valid, counts, examples, details=details)
