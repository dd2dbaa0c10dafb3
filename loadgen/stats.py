"""Load statistics: Locust's final ``--json`` output, and the per-second live files written during a run.

Final stats. ``locust --json`` prints, at shutdown, ``json.dumps(runner.stats.serialize_stats(),
indent=4)`` (locust 2.47 ``stats.print_stats_json``): a list with one object per (name, method) that saw
a request, **no** "Aggregated" row, each with the keys of ``StatsEntryDict``: ``name, method,
last_request_timestamp, start_time, num_requests, num_none_requests, num_failures, total_response_time,
max_response_time, min_response_time, total_content_length, response_times {"<ms>": count},
num_reqs_per_sec {"<epoch s>": n}, num_fail_per_sec``. ``response_times`` is Locust's rounded histogram
(exact below 100 ms, then 2 significant digits); the ``*_response_time`` fields are float milliseconds
with FastHttpUser. A failed request counts in ``num_requests`` and ``num_failures``. Note that Locust
resets its entries while serialising them, so the per-endpoint table it logs afterwards shows zeros
(only the "Aggregated" row is right); the JSON is the source. :func:`parse_locust_json` validates that
shape; :func:`summarize` gives whole-run figures with percentiles read from the merged histogram
(nearest rank, as ``resgate.checks.histogram``).

Live stats. Each Locust process appends one line per second to ``<dir>/live-<pid>.jsonl``::

    {"ts": 1767225600, "pid": 4242, "requests": 812, "failures": 3, "p95_ms": 41.0, "hist": {"12": 40, ...}}

``ts`` is the window's start (integer epoch second; a request belongs to the second in which it
*completed*), ``requests``/``failures`` count request attempts as Locust does, ``p95_ms`` is that
process's p95 for the window (null when empty) and ``hist`` its rounded latency histogram, so windows of
several processes can be merged exactly. Seconds with no completed request are written too (zeros), so
a stalled target shows as 0 requests/s rather than as silence. :class:`LiveWindow` builds the lines,
:func:`read_live` merges the files per second and :func:`live_figures` gives the recent rate, error
ratio and p95 for the progress display and the guardrail watcher.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from loadgen.ledger import LIVE_PREFIX, iter_lines
from resgate.contract.errors import ConfigError

ENTRY_COUNT_KEYS = ("num_requests", "num_none_requests", "num_failures", "total_content_length")
ENTRY_TIME_KEYS = ("total_response_time", "max_response_time")
"""Milliseconds; floats with FastHttpUser (integers in older files), so any number >= 0 is accepted."""


# --------------------------------------------------------------------------------------------- histograms


def round_ms(ms: float) -> int:
    """Locust's response-time bucket for ``ms``: exact below 100, then 2 significant digits."""
    if ms < 100:
        return round(ms)
    if ms < 1000:
        return int(round(ms, -1))
    if ms < 10000:
        return int(round(ms, -2))
    return int(round(ms, -3))


def percentile(hist: Mapping[float, int], p: float) -> float | None:
    """Nearest-rank p-th percentile (``0 < p <= 100``) of ``{ms: count}``; None when empty.

    The smallest bucket ``v`` with at least ``ceil(p/100 * N)`` samples ``<= v`` (the definition of
    ``resgate.checks.histogram.percentile``, repeated here so this package does not need ``resgate``).
    """
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p!r}")
    n = sum(hist.values())
    if n <= 0:
        return None
    rank = max(1, math.ceil(round(p * n, 9) / 100))
    seen = 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= rank:
            return float(ms)
    return float(max(hist))  # pragma: no cover - unreachable, rank <= n


def _merge_into(acc: dict[float, int], hist: Mapping[Any, Any]) -> None:
    for k, v in hist.items():
        ms = float(k)
        acc[ms] = acc.get(ms, 0) + int(v)


# --------------------------------------------------------------------------------------------- final stats


def _where(i: int, key: str | None = None) -> str:
    return f"locust_stats[{i}]" + (f".{key}" if key else "")


def _extract_json_array(text: str) -> Any:
    text = text.strip()
    if not text:
        raise ConfigError("empty output: Locust printed no --json stats", where="locust_stats")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    # Something else was printed on stdout before the stats (a print() in a locustfile): take the last
    # line that opens a JSON array and parse from there.
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("["):
            try:
                return json.loads("\n".join(lines[i:]))
            except json.JSONDecodeError:
                continue
    raise ConfigError("no JSON array of stats found in Locust's output", where="locust_stats")


def parse_locust_json(text: str | bytes) -> list[dict[str, Any]]:
    """Validate the text printed by ``locust --json`` and return its list of per-endpoint entries.

    Each entry is returned as Locust wrote it (histogram keys stay strings). Raises :class:`ConfigError`
    naming ``locust_stats[i].field`` for a missing or ill-typed field.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    data = _extract_json_array(text)
    if not isinstance(data, list):
        raise ConfigError(f"must be a JSON list, got {type(data).__name__}", where="locust_stats")
    for i, e in enumerate(data):
        if not isinstance(e, dict):
            raise ConfigError("must be an object", where=_where(i))
        for key in ("name", "method"):
            if not isinstance(e.get(key), str):
                raise ConfigError("must be a string", where=_where(i, key))
        for key in ENTRY_COUNT_KEYS:
            v = e.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"must be an integer >= 0, got {v!r}", where=_where(i, key))
        for key in ENTRY_TIME_KEYS:
            v = e.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
                raise ConfigError(f"must be a number of ms >= 0, got {v!r}", where=_where(i, key))
        for key in ("response_times", "num_reqs_per_sec", "num_fail_per_sec"):
            v = e.get(key)
            if not isinstance(v, dict):
                raise ConfigError("must be an object", where=_where(i, key))
            for k, n in v.items():
                try:
                    float(k)
                except ValueError:
                    raise ConfigError(f"key {k!r} is not a number", where=_where(i, key)) from None
                if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                    raise ConfigError(f"count for {k!r} must be an integer >= 0", where=_where(i, key))
        if not isinstance(e.get("start_time"), (int, float)):
            raise ConfigError("must be a number", where=_where(i, "start_time"))
    return data


def load_locust_json(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """:func:`parse_locust_json` of a file's content."""
    return parse_locust_json(Path(path).read_text(encoding="utf-8", errors="replace"))


def _figures(entries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    entries = list(entries)
    hist: dict[float, int] = {}
    for e in entries:
        _merge_into(hist, e["response_times"])
    requests = sum(int(e["num_requests"]) for e in entries)
    failures = sum(int(e["num_failures"]) for e in entries)
    starts = [float(e["start_time"]) for e in entries if e.get("start_time")]
    ends = [float(e["last_request_timestamp"]) for e in entries if e.get("last_request_timestamp")]
    duration = (max(ends) - min(starts)) if starts and ends else 0.0
    return {
        "requests": requests,
        "failures": failures,
        "error_ratio": (failures / requests) if requests else 0.0,
        "duration_s": duration,
        "rps": (requests / duration) if duration > 0 else None,
        "p50_ms": percentile(hist, 50),
        "p95_ms": percentile(hist, 95),
        "p99_ms": percentile(hist, 99),
        "max_ms": max((e["max_response_time"] for e in entries), default=None),
    }


def summarize(entries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Whole-run figures of parsed ``--json`` entries.

    Returns ``{requests, failures, error_ratio, duration_s, rps, p50_ms, p95_ms, p99_ms, max_ms,
    by_name: {name: {same keys}}}``; percentiles come from the merged histograms (None when no request),
    ``duration_s`` spans the first start to the last request, ``rps`` is None for a zero duration.
    """
    entries = list(entries)
    out = _figures(entries)
    names: dict[str, list[Mapping[str, Any]]] = {}
    for e in entries:
        names.setdefault(str(e["name"]), []).append(e)
    out["by_name"] = {name: _figures(es) for name, es in sorted(names.items())}
    return out


# --------------------------------------------------------------------------------------------- live stats


class LiveWindow:
    """Per-second request counts and latency histograms of one Locust process, drained as live lines.

    :meth:`add` is called from Locust's ``request`` event; :meth:`drain` returns the lines of every whole
    second before ``now`` not yet returned, zero-filled, starting at the first :meth:`add` or
    :meth:`start`. ``drain(now, final=True)`` also returns the current, partial second. Thread-safe.
    """

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid if pid is not None else os.getpid()
        self._lock = threading.Lock()
        self._windows: dict[int, list[Any]] = {}
        self._next: int | None = None

    def start(self, now: float) -> None:
        """Begin the zero-filled series at ``now``'s second (no effect once started)."""
        with self._lock:
            if self._next is None:
                self._next = int(now)

    def add(self, now: float, response_time_ms: float, failed: bool) -> None:
        """Count one request that completed at ``now`` (epoch s) after ``response_time_ms``."""
        sec = int(now)
        bucket = round_ms(max(0.0, float(response_time_ms or 0.0)))
        with self._lock:
            if self._next is None:
                self._next = sec
            sec = max(sec, self._next)  # a clock step back: fold into the first second not yet drained
            w = self._windows.get(sec)
            if w is None:
                w = self._windows[sec] = [0, 0, {}]
            w[0] += 1
            if failed:
                w[1] += 1
            w[2][bucket] = w[2].get(bucket, 0) + 1

    def drain(self, now: float, *, final: bool = False) -> list[dict[str, Any]]:
        """Lines for the finished seconds (and the current one when ``final``), oldest first."""
        with self._lock:
            if self._next is None:
                return []
            end = int(now) + 1 if final else int(now)
            if final and self._windows:
                end = max(end, max(self._windows) + 1)
            out = []
            for sec in range(self._next, end):
                requests, failures, hist = self._windows.pop(sec, (0, 0, {}))
                out.append(
                    {
                        "ts": sec,
                        "pid": self.pid,
                        "requests": requests,
                        "failures": failures,
                        "p95_ms": percentile(hist, 95),
                        "hist": {str(k): v for k, v in sorted(hist.items())},
                    }
                )
            self._next = max(self._next, end)
            return out


def _live_lines(directory: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Decoded live lines of every process in ``directory`` (``ts`` as int); bad or torn lines skipped."""
    if not Path(directory).is_dir():
        return
    for line in iter_lines(directory, prefix=LIVE_PREFIX):
        try:
            rec = json.loads(line)
            rec["ts"] = int(rec["ts"])
        except (ValueError, KeyError, TypeError):
            continue
        yield rec


def read_live(directory: str | os.PathLike[str], since_ts: float | None = None) -> list[dict[str, Any]]:
    """Merge every process's live file in ``directory`` per second, for seconds ``ts > since_ts``.

    Returns ``[{ts, requests, failures, error_ratio, p95_ms, processes}]`` sorted by ``ts``; ``p95_ms``
    comes from the merged histograms (None for an empty second), ``processes`` is how many processes
    reported that second. The newest second or two may still be missing a process's line. Torn lines are
    skipped; a missing directory gives ``[]``.
    """
    merged: dict[int, list[Any]] = {}
    for rec in _live_lines(directory):
        ts = rec["ts"]
        if since_ts is not None and ts <= since_ts:
            continue
        m = merged.setdefault(ts, [0, 0, {}, 0])
        m[0] += int(rec.get("requests") or 0)
        m[1] += int(rec.get("failures") or 0)
        _merge_into(m[2], rec.get("hist") or {})
        m[3] += 1
    return [
        {
            "ts": ts,
            "requests": r,
            "failures": f,
            "error_ratio": (f / r) if r else 0.0,
            "p95_ms": percentile(h, 95),
            "processes": n,
        }
        for ts, (r, f, h, n) in sorted(merged.items())
    ]


def live_figures(
    directory: str | os.PathLike[str], *, window_s: int = 5, now: float | None = None, settle_s: int = 1
) -> dict[str, Any]:
    """Rate, error ratio and p95 over the last ``window_s`` settled seconds of the live files.

    The last finished second before ``now`` (default: the current time) is ``int(now) - 1``; the window
    ends ``settle_s`` seconds before that, so a process whose line for a second is still to come does not
    skew it. Returns ``{ts_from, ts_to, requests, failures, rps, error_ratio, p95_ms}`` (window bounds
    inclusive; counts 0 and ``p95_ms`` None when nothing was reported in the window).
    """
    if window_s < 1:
        raise ValueError(f"window_s must be >= 1, got {window_s}")
    if settle_s < 0:
        raise ValueError(f"settle_s must be >= 0, got {settle_s}")
    now = time.time() if now is None else now
    ts_to = int(now) - 1 - settle_s
    ts_from = ts_to - window_s + 1
    req = fail = 0
    hist: dict[float, int] = {}
    for point in _live_lines(directory):
        if ts_from <= point["ts"] <= ts_to:
            req += int(point.get("requests") or 0)
            fail += int(point.get("failures") or 0)
            _merge_into(hist, point.get("hist") or {})
    return {
        "ts_from": ts_from,
        "ts_to": ts_to,
        "requests": req,
        "failures": fail,
        "rps": req / window_s,
        "error_ratio": (fail / req) if req else 0.0,
        "p95_ms": percentile(hist, 95),
    }
