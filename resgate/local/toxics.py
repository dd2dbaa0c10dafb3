"""Toxics: the network faults a userspace TCP proxy applies, per direction, switchable at run time.

Modelled on Toxiproxy's toxics. A :class:`Toxics` holds the faults active on one path (for example ``gateway
→ postgres``), each added under a name and removed by that name, so overlapping faults combine and each is
reverted on its own. Directions: ``upstream`` (client → server bytes) and ``downstream`` (server → client).
Per direction: ``latency_ms`` ± ``jitter_ms``, ``bandwidth_kbps``, ``loss_percent`` (the TCP retransmission
model below), ``blackhole`` (bytes are swallowed, the connection stays open: the "hang" partition,
Toxiproxy's ``timeout`` with no timeout), ``hold`` (bytes, and the end of the stream, are held in order and
delivered when the toxic is lifted: what TCP does across a path that drops every packet and heals before the
connection times out, since the sender retransmits what was lost; the partition of a leader from its lease
store, whose stalled writes arrive after the heal), ``limit_bytes`` (close the connection after that many
bytes) and ``slow_close_ms`` (delay the close). Per path: ``refuse`` (new connections are reset as soon as
they are accepted) and :meth:`Toxics.reset` (RST every open connection now).

**No effect when off**: with no toxic active, :class:`Link.send` writes straight through; the only cost
is one attribute read per chunk.

**The loss model** (:class:`LossModel`). TCP never shows a lost packet to the application; it shows a
stall while the segment is retransmitted and a smaller congestion window afterwards. Each chunk is cut
into MSS-sized segments (1460 bytes) sent at ``cwnd`` segments per virtual round trip ``rtt_ms``; each
segment is lost with probability ``p``. A loss with at least three segments after it in the chunk and
``cwnd >= 4`` is repaired by fast retransmit (a stall of one RTT, ``cwnd`` halved: Reno); otherwise (a
tail loss, a small window) it waits a retransmission timeout, ``rto_min_ms`` doubled for each consecutive
timeout (exponential backoff, capped at 2^6), and ``cwnd`` falls to 1. A retransmission is itself lost
with probability ``p``. Every delivered segment grows ``cwnd`` by ``1/cwnd`` (congestion avoidance). This
AIMD window is what Mathis et al. (1997) derive throughput ≈ MSS / (RTT · sqrt(2p/3)) from, so bulk
throughput falls roughly with 1/√p, and faster once timeouts dominate (Padhye et al.); a request that
fits one segment sees either nothing or a stall of at least ``rto_min_ms``.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

DIRECTIONS = ("upstream", "downstream")
MSS = 1460
MAX_BACKOFF = 6
FAST_RETRANSMIT_CWND = 3  # with limited transmit (RFC 3042) three segments in flight yield the dup ACKs
HOLD_POLL_S = 0.05  # how often a link holding bytes looks whether its hold was lifted
_HIGH_WATER = 1 << 20  # bytes queued in a link before the source stops being read
_EOF = b"<eof>"  # queue markers, compared by identity
_CLOSE = b"<close>"


@dataclass(frozen=True)
class Toxic:
    """The faults of one direction; zero / False means off. Fields combine across active toxics."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    bandwidth_kbps: float = 0.0
    loss_percent: float = 0.0
    blackhole: bool = False
    hold: bool = False
    limit_bytes: int = 0
    slow_close_ms: float = 0.0
    rtt_ms: float = 10.0
    rto_min_ms: float = 200.0

    def active(self) -> bool:
        return bool(
            self.latency_ms
            or self.jitter_ms
            or self.bandwidth_kbps
            or self.loss_percent
            or self.blackhole
            or self.hold
            or self.limit_bytes
            or self.slow_close_ms
        )


def combine(toxics: list[Toxic]) -> Toxic | None:
    """One effective toxic: latencies add, the slowest bandwidth and the highest loss win; None if off."""
    if not toxics:
        return None
    bw = [t.bandwidth_kbps for t in toxics if t.bandwidth_kbps]
    limits = [t.limit_bytes for t in toxics if t.limit_bytes]
    lossy = max(toxics, key=lambda t: t.loss_percent)
    eff = Toxic(
        latency_ms=sum(t.latency_ms for t in toxics),
        jitter_ms=sum(t.jitter_ms for t in toxics),
        bandwidth_kbps=min(bw) if bw else 0.0,
        loss_percent=lossy.loss_percent,
        blackhole=any(t.blackhole for t in toxics),
        hold=any(t.hold for t in toxics),
        limit_bytes=min(limits) if limits else 0,
        slow_close_ms=max(t.slow_close_ms for t in toxics),
        rtt_ms=lossy.rtt_ms,
        rto_min_ms=lossy.rto_min_ms,
    )
    return eff if eff.active() else None


class Toxics:
    """The toxics of one path, shared by every connection on it; safe to change from any thread.

    ``add(name, direction, **fields)`` / ``remove(name)``; ``refuse(name)`` refuses new connections;
    ``reset()`` resets every open connection (through the callbacks proxies register with
    :meth:`on_reset`). ``effective[direction]`` is the combined :class:`Toxic` or None.
    ``affected_bytes`` counts the bytes that met an active toxic (delayed, throttled, swallowed): what the
    fault runner reads as proof that a fault on this path acted on real traffic.
    """

    def __init__(self, name: str = "path", seed: int | None = None) -> None:
        self.name = name
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
        self._toxics: dict[str, tuple[str, Toxic]] = {}
        self._refusing: set[str] = set()
        self._resetters: list[Callable[[], None]] = []
        self.effective: dict[str, Toxic | None] = dict.fromkeys(DIRECTIONS)
        self.refusing = False
        self.affected_bytes = 0

    def add(self, name: str, direction: str = "both", **values: Any) -> None:
        """Activate toxic ``name`` on ``direction`` (upstream, downstream or both) with ``values``."""
        known = {f.name for f in fields(Toxic)}
        bad = set(values) - known
        if bad:
            raise ValueError(f"unknown toxic fields {sorted(bad)}; known: {sorted(known)}")
        dirs = DIRECTIONS if direction == "both" else (direction,)
        if any(d not in DIRECTIONS for d in dirs):
            raise ValueError(f"direction must be upstream, downstream or both, got {direction!r}")
        with self._lock:
            for d in dirs:
                self._toxics[f"{name}/{d}"] = (d, replace(Toxic(), **values))
            self._recompute()

    def refuse(self, name: str) -> None:
        """Refuse (reset on accept) every new connection until ``remove(name)``."""
        with self._lock:
            self._refusing.add(name)
            self.refusing = True

    def remove(self, name: str) -> None:
        """Deactivate toxic ``name`` (both directions, and its refusal). Unknown names are ignored."""
        with self._lock:
            for key in [k for k in self._toxics if k.split("/", 1)[0] == name]:
                del self._toxics[key]
            self._refusing.discard(name)
            self.refusing = bool(self._refusing)
            self._recompute()

    def clear(self) -> None:
        """Remove every toxic."""
        with self._lock:
            self._toxics.clear()
            self._refusing.clear()
            self.refusing = False
            self._recompute()

    def active(self) -> list[str]:
        """Names of the active toxics."""
        with self._lock:
            return sorted({k.split("/", 1)[0] for k in self._toxics} | self._refusing)

    def on_reset(self, fn: Callable[[], None]) -> None:
        """Register a proxy's 'reset all connections' callback (called by :meth:`reset`)."""
        self._resetters.append(fn)

    def reset(self) -> int:
        """RST every open connection on this path; returns how many there were (as the proxies say)."""
        n = 0
        for fn in list(self._resetters):
            n += int(fn() or 0)
        return n

    def _recompute(self) -> None:
        self.effective = {d: combine([t for (dd, t) in self._toxics.values() if dd == d]) for d in DIRECTIONS}


class LossModel:
    """TCP's reaction to segment loss as delay (see the module docstring); one per link and direction."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.cwnd = 10.0
        self.ssthresh = 1000.0
        self.backoff = 0

    def cost_s(self, nbytes: int, p: float, rtt_s: float, rto_s: float) -> float:
        """Seconds the link is busy delivering ``nbytes`` at loss probability ``p`` (0..1)."""
        segs = max(1, math.ceil(nbytes / MSS))
        t = 0.0
        rand = self.rng.random
        for i in range(segs):
            t += rtt_s / self.cwnd
            if rand() >= p:
                self.backoff = 0
                grow = 1.0 if self.cwnd < self.ssthresh else 1.0 / self.cwnd  # slow start, then AIMD
                self.cwnd = min(self.cwnd + grow, 1000.0)
                continue
            if self.cwnd >= FAST_RETRANSMIT_CWND and i < segs - 1:
                t += rtt_s  # duplicate ACKs from the segments behind it: fast retransmit, window halved
                self.cwnd = self.ssthresh = max(2.0, self.cwnd / 2)
                continue
            while True:  # retransmission timeout, backed off while the retransmission is lost too
                t += rto_s * (2 ** min(self.backoff, MAX_BACKOFF))
                self.backoff += 1
                if rand() >= p:
                    break
            self.ssthresh = max(2.0, self.cwnd / 2)
            self.cwnd = 1.0
        return t


class Link:
    """One direction of one proxied connection: applies the path's toxics to what it forwards.

    ``send(data)`` forwards (now, or later in order), ``eof()`` / ``close()`` pass the end of the stream
    after the queued data. ``write``, ``write_eof`` and ``close_peer`` act on the receiving transport;
    ``pause_source`` / ``resume_source`` apply back-pressure to the sending one.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        toxics: Toxics,
        direction: str,
        *,
        write: Callable[[bytes], None],
        write_eof: Callable[[], None],
        close_peer: Callable[[], None],
        pause_source: Callable[[], None],
        resume_source: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.toxics = toxics
        self.direction = direction
        self._write, self._write_eof, self._close_peer = write, write_eof, close_peer
        self._pause, self._resume = pause_source, resume_source
        self._queue: deque[tuple[float, bytes]] = deque()  # data, or the _EOF / _CLOSE markers
        self._queued = 0
        self._paused = False
        self._free_at = 0.0
        self._last_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._loss: LossModel | None = None
        self._limit_for: Toxic | None = None
        self._passed = 0
        self.swallowed = 0

    def send(self, data: bytes) -> None:
        tox = self.toxics.effective[self.direction]
        if tox is None and not self._queue:
            self._write(data)
            return
        if tox is not None:
            self.toxics.affected_bytes += len(data)  # one loop thread per proxy writes it
        if tox is not None and tox.blackhole:
            self.swallowed += len(data)
            return
        if tox is not None and tox.limit_bytes:
            if self._limit_for is not tox:
                self._limit_for, self._passed = tox, 0
            room = tox.limit_bytes - self._passed
            if room <= 0:
                return
            self._passed += len(data)
            if len(data) >= room:
                self._enqueue(self._due(data[:room], tox), data[:room])
                self.close(slow_ms=0.0, reset=False)
                return
        self._enqueue(self._due(data, tox), data)

    def _due(self, data: bytes, tox: Toxic | None) -> float:
        now = self.loop.time()
        if tox is None:
            return max(now, self._last_at)
        start = max(now, self._free_at)
        busy = 0.0
        if tox.bandwidth_kbps:
            busy += len(data) * 8 / (tox.bandwidth_kbps * 1000)
        if tox.loss_percent:
            if self._loss is None:
                self._loss = LossModel(self.toxics.rng)
            p, rtt, rto = tox.loss_percent / 100, tox.rtt_ms / 1000, tox.rto_min_ms / 1000
            busy += self._loss.cost_s(len(data), p, rtt, rto)
        self._free_at = start + busy
        delay = tox.latency_ms
        if tox.jitter_ms:
            delay += self.toxics.rng.uniform(-tox.jitter_ms, tox.jitter_ms)
        return max(self._free_at + max(delay, 0.0) / 1000, self._last_at)  # in order, like TCP

    def _enqueue(self, due: float, data: bytes) -> None:
        self._last_at = due
        self._queue.append((due, data))
        self._queued += len(data)
        if self._queued > _HIGH_WATER and not self._paused:
            self._paused = True
            self._pause()
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None or not self._queue:
            return
        due = self._queue[0][0]
        if due <= self.loop.time():
            self._timer = self.loop.call_soon(self._drain)
        else:
            self._timer = self.loop.call_at(due, self._drain)

    def holding(self) -> bool:
        """True while a ``hold`` toxic is on this link's direction (nothing queued is delivered)."""
        tox = self.toxics.effective[self.direction]
        return tox is not None and tox.hold

    def _drain(self) -> None:
        self._timer = None
        if self.holding():  # lifted from another thread: look again shortly (only while bytes are held)
            self._timer = self.loop.call_later(HOLD_POLL_S, self._drain)
            return
        now = self.loop.time()
        while self._queue and self._queue[0][0] <= now:
            _, data = self._queue.popleft()
            if data is _EOF:
                self._write_eof()
                continue
            if data is _CLOSE:
                self._queue.clear()
                self._close_peer()
                return
            self._queued -= len(data)
            self._write(data)
        if self._paused and self._queued < _HIGH_WATER // 2:
            self._paused = False
            self._resume()
        self._schedule()

    def eof(self) -> None:
        """The source half-closed: pass the EOF on after whatever is queued (or held)."""
        if not self._queue and not self.holding():
            self._write_eof()
        else:
            self._queue.append((self._last_at, _EOF))
            self._schedule()

    def close(self, *, slow_ms: float | None = None, reset: bool = False) -> None:
        """The source closed: close the peer after the queued data (and after ``slow_close_ms``)."""
        if reset:
            self.cancel()
            self._close_peer()
            return
        tox = self.toxics.effective[self.direction]
        delay = (tox.slow_close_ms if tox is not None else 0.0) if slow_ms is None else slow_ms
        if not self._queue and not delay and not self.holding():
            self._close_peer()
            return
        self._last_at = max(self._last_at, self.loop.time() + delay / 1000)
        self._queue.append((self._last_at, _CLOSE))
        self._schedule()

    def cancel(self) -> None:
        """Drop whatever is queued (the connection is being torn down)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
