"""Runs the fault schedule against the local target and records the fault timeline.

Local fault kinds and what they stand for on AWS: ``stop_task`` (SIGKILL a percentage of a service's
replicas: FIS ``aws:ecs:stop-task``), ``hang`` (SIGSTOP for a duration), ``db_blip`` (Postgres down for
N seconds), ``kafka_broker_down``, ``kafka_latency``, ``duplicate_delivery`` (re-publish events).

Network faults act on a path ``between: [service, postgres | kafka | clients]`` through the userspace proxies
of :mod:`resgate.local.toxics` (FIS ``aws:ecs:task-network-*``): ``network_partition`` (mode ``hang``: bytes
are swallowed and connections stay open; ``refuse``: open connections are reset and new ones refused),
``network_latency``, ``packet_loss`` (TCP retransmission stalls), ``bandwidth``, ``connection_reset``;
``rate_limit_spike`` (the edge answers 429 + Retry-After itself) and ``zone_loss`` (SIGKILL every replica in
one zone). ``leader_loss`` (``mode: pause``) finds the replica of its target that leads now from the
``leader`` figure of its ``/health`` (:mod:`resgate.runner.leader`) and SIGSTOPs it for ``duration_s``: it
cannot renew its lease, a standby must take over, and once resumed it must not act as leader again; ``mode:
partition`` instead holds every byte between that replica and Postgres (its lease store) on the replica's own
proxy (:meth:`LocalTarget.replica_path`) for ``duration_s``, then delivers them in order (a partition TCP
survives: FIS's blackhole on the leader's task), the process running throughout. A
:class:`~resgate.runner.leader.LeaderSampler` watches every replica's leader figures from just before the
injection until ``observe_s`` after the lift and records them as a ``leader_samples`` event (the recovery
check's leader judgments). Kafka paths are not proxied (clients follow the advertised broker addresses): a
partition takes every broker down (``refuse``) or sets a round trip as long as the partition (``hang``),
latency sets the brokers' round trip (jitter ignored); loss, bandwidth and resets on Kafka are skipped with
the reason recorded. ``overload``: an open-loop burst of order requests far beyond capacity for
``duration_s`` (:mod:`resgate.local.burst`, in its own process), its requests in the client ledger.
Every fault with a duration is reverted on every exit path (``revert_all``).

**Proof of effect.** A fault that acted on nothing would leave a calm run that proves nothing, so each
kind records what it saw of its own effect as an ``effect`` event ``{observed, evidence}``: a killed
replica's process gone, a hung one stopped (``T``), Postgres refusing a connection, bytes through the
path's proxy that met the toxic (delayed, throttled, swallowed) or connections it refused or reset while
the fault held, answers the edge rate-limited, events republished, the requests a burst sent and how
they were answered. The recovery check judges a fault whose effect was not observed as unknown. Kafka
kinds act through the mock cluster's controls and record no observation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psycopg

from resgate.config.schema import NETWORK_FAULT_KINDS, Fault
from resgate.contract.errors import GateError
from resgate.local.burst import BurstProcess, BurstSpec
from resgate.local.httpgate import RateLimit
from resgate.redelivery import redeliver
from resgate.runner.leader import LeaderSampler, find_leader
from resgate.runner.local_target import LocalTarget

BURST_START_WAIT_S = 10.0
"""How long an overload waits for its burst's first request before it counts the burst as in effect."""
EFFECT_WAIT_S = 2.0
"""How long an injection waits to see its effect (a killed process gone, a hung one stopped)."""


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` from ``/proc`` (``R``, ``S``, ``T``, ``Z``…); None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _until(cond: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


class FaultRunner:
    """Injects scheduled faults at ``load_start + at_s``; ``abort()`` cancels what has not run yet.

    ``timeline()`` returns fault events ``{ts, fault_id, kind, target, event, detail}`` with event in
    injecting | injected | lifting | ended | aborted | skipped | error. ``injecting`` is stamped just
    before the call that injects (nothing of the fault acted earlier) and ``injected`` once that call
    returned (the fault is in effect: Postgres has stopped, the replica is dead); for a held fault,
    ``lifting`` just before the call that lifts it and ``ended`` once it returned (an ``aborted`` fault
    is lifted the same way, right after its ``aborted`` event). Recovery separates faults by their
    ``injecting`` time: a database that is stopping already fails requests.
    """

    def __init__(
        self,
        target: LocalTarget,
        faults: list[Fault],
        *,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        ledger_dir: Path | None = None,
    ) -> None:
        self.target = target
        self.ledger_dir = ledger_dir  # where an overload burst writes its ledger lines (the load's folder)
        self.faults = sorted(faults, key=lambda f: f.at_s)
        self.on_event = on_event
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._reverts: dict[str, Callable[[], None]] = {}
        self._revert_lock = threading.Lock()  # orders abort() against a fault registering its revert
        self._timers: list[threading.Timer] = []
        self._observers: dict[str, Callable[[], tuple[bool, str]]] = {}
        self._bursts: list[BurstProcess] = []  # overload bursts: halted at their lift, joined by join()
        self._samplers: dict[str, LeaderSampler] = {}
        self.aborted_reason: str | None = None

    def _record(self, fault: Fault, event: str, **detail: Any) -> None:
        ev = {
            "ts": time.time(),
            "fault_id": fault.name,
            "kind": fault.kind,
            "target": fault.target or "",
            "event": event,
            "detail": detail,
        }
        with self._lock:
            self._events.append(ev)
        if self.on_event:
            self.on_event(ev)

    def _begin(self, fault: Fault) -> None:
        """The injection starts now (the next call acts on the target)."""
        held = fault.params.get("duration_s")
        self._record(fault, "injecting", **({"duration_s": held} if held else {}))

    def _effect(self, fault: Fault, observed: bool, evidence: str) -> None:
        self._record(fault, "effect", observed=observed, evidence=evidence)

    def _lift(self, fault: Fault, revert: Callable[[], None], done: str = "ended", **detail: Any) -> None:
        """Lift a held fault: its effect over the hold (when observed by counting, as on a proxy),
        ``lifting``, the revert call, then ``done`` (``ended`` on schedule or at the end of the load,
        ``aborted`` on an abort) once it returned: recovery counts from the lift's end."""
        observe = self._observers.pop(fault.name, None)
        if observe is not None:
            self._effect(fault, *observe())
        self._record(fault, "lifting")
        revert()
        self._record(fault, done, **detail)

    def _signalled(self, sup: Any, ids: Iterable[str], event: str) -> list[int]:
        """The pids the supervisor recorded ``event`` (killed, hung) for, last per replica of ``ids``."""
        wanted, pids = set(ids), {}
        for e in sup.timeline():
            if e.get("event") == event and e.get("replica") in wanted and "pid" in (e.get("detail") or {}):
                pids[e["replica"]] = int(e["detail"]["pid"])
        return list(pids.values())

    def _gone(self, sup: Any, ids: list[str], event: str, nothing: str) -> tuple[bool, str]:
        """Every replica in ``ids`` (signalled with ``event``) has exited within :data:`EFFECT_WAIT_S`."""
        pids = self._signalled(sup, ids, event) if ids else []
        if not pids:
            return False, nothing
        if _until(lambda: all(process_state(pid) in (None, "Z", "X") for pid in pids), EFFECT_WAIT_S):
            return True, f"exited: {', '.join(ids)} (pids {', '.join(map(str, pids))})"
        return False, f"still running {EFFECT_WAIT_S:g} s after SIGKILL: pids {pids}"

    def _stopped(self, sup: Any, ids: list[str], nothing: str) -> tuple[bool, str]:
        """Every replica in ``ids`` is stopped (state ``T``) within :data:`EFFECT_WAIT_S`."""
        pids = self._signalled(sup, ids, "hung") if ids else []
        if not pids:
            return False, nothing
        if _until(lambda: all(process_state(pid) == "T" for pid in pids), EFFECT_WAIT_S):
            return True, f"stopped (SIGSTOP): {', '.join(ids)}"
        return False, f"not stopped {EFFECT_WAIT_S:g} s after SIGSTOP: pids {pids}"

    def timeline(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def start(self, load_start: float) -> None:
        self._thread = threading.Thread(target=self._run, args=(load_start,), name="faults", daemon=True)
        self._thread.start()

    def _run(self, load_start: float) -> None:
        for fault in self.faults:
            delay = load_start + fault.at_s - time.time()
            if delay > 0 and self._abort.wait(delay):
                break
            if self._abort.is_set():
                break
            try:
                self._inject(fault)
            except Exception as e:  # a failed injection is evidence, not a crash of the gate
                self._record(fault, "error", error=f"{type(e).__name__}: {e}")
        if self._abort.is_set():
            done = {e["fault_id"] for e in self.timeline()}
            for fault in self.faults:
                if fault.name not in done:
                    self._record(fault, "skipped", reason=self.aborted_reason or "aborted")

    def abort(self, reason: str) -> None:
        """Stop injecting: pending faults are skipped and active ones reverted now."""
        with self._revert_lock:  # a fault injected from here on is reverted by _after itself
            if self._abort.is_set():
                return
            self.aborted_reason = reason
            self._abort.set()
        self.revert_all(done="aborted", reason=reason)

    def pending(self) -> bool:
        """True while some scheduled fault has not been injected (or skipped) yet."""
        done = {e["fault_id"] for e in self.timeline() if e["event"] in ("injected", "skipped", "error")}
        return any(f.name not in done for f in self.faults)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the schedule's thread, then for each burst's last requests (each bounded by its
        deadline), so the ledger holds every request a burst sent."""
        if self._thread is not None:
            self._thread.join(timeout)
        for burst in self._bursts:
            burst.stop()

    def _after(self, fault: Fault, seconds: float, revert: Callable[[], None]) -> None:
        with self._revert_lock:
            aborted = self._abort.is_set()
            if not aborted:
                self._reverts[fault.name] = revert
        if aborted:  # the abort came while this fault was being injected: lift it now, like the others
            self._lift(fault, revert, "aborted", reason=self.aborted_reason or "aborted")
            return

        def fire() -> None:
            fn = self._reverts.pop(fault.name, None)
            if fn is not None:
                self._lift(fault, fn)

        t = threading.Timer(seconds, fire)
        t.daemon = True
        self._timers.append(t)
        t.start()

    def revert_all(self, *, done: str = "ended", **detail: Any) -> None:
        """Undo every active fault now (resume hung processes, restart Postgres, brokers up, no latency);
        each lift is recorded as ``lifting`` then ``done`` (``aborted`` when :meth:`abort` calls it).
        Leader samplers still watching stop and record what they saw."""
        for t in self._timers:
            t.cancel()
        try:
            self._revert_reverts(done, detail)
        finally:
            for name in list(self._samplers):
                self._leader_record(name)

    def _leader_record(self, name: str) -> None:
        """Stop fault ``name``'s leader sampler (if still there) and record its ``leader_samples`` event."""
        sampler = self._samplers.pop(name, None)
        if sampler is None:
            return
        sampler.finish()
        fault = next(f for f in self.faults if f.name == name)
        self._record(fault, "leader_samples", **sampler.record())

    def _revert_reverts(self, done: str, detail: dict[str, Any]) -> None:
        for name in list(self._reverts):
            fn = self._reverts.pop(name, None)
            if fn is None:  # its timer lifted it meanwhile
                continue
            fault = next(f for f in self.faults if f.name == name)
            try:
                self._lift(fault, fn, done, **detail)
            except Exception as e:
                self._record(fault, "error", error=f"revert failed: {e}")

    def _inject(self, fault: Fault) -> None:
        p = fault.params
        sup = self.target.supervisor
        if fault.kind in ("stop_task", "hang"):
            if sup is None:
                raise GateError("process faults need local services")
            self._begin(fault)
            if fault.kind == "stop_task":
                killed = sup.stop_replicas(fault.target, p["percent"])
                self._record(fault, "injected", replicas=killed)
                self._effect(fault, *self._gone(sup, killed, "killed", f"no live replica of {fault.target}"))
            else:
                hung = sup.hang(fault.target, p["percent"], p["duration_s"])
                self._record(fault, "injected", replicas=hung, duration_s=p["duration_s"])
                self._effect(fault, *self._stopped(sup, hung, f"no running replica of {fault.target}"))
                # The supervisor resumes them after the duration itself (and on shutdown); lifted early (an
                # abort, a gate error), they are resumed at once.
                self._after(fault, p["duration_s"], lambda: sup.resume(hung))
        elif fault.kind == "db_blip":
            pg = self.target.pg
            if pg is None or not pg.controllable:
                self._record(fault, "skipped", reason="Postgres is external (RESGATE_PG_DSN): cannot stop it")
                return
            self._begin(fault)
            pg.stop("immediate")
            self._record(fault, "injected", duration_s=p["duration_s"])
            self._effect(fault, *_db_refuses(getattr(pg, "dsn", None)))
            self._after(fault, p["duration_s"], pg.start)
        elif fault.kind in ("kafka_broker_down", "kafka_latency"):
            k = self.target.kafka
            if k is None or not k.controllable:
                self._record(fault, "skipped", reason="Kafka is external (RESGATE_KAFKA_BOOTSTRAP)")
                return
            broker = p["broker"]
            self._begin(fault)
            if fault.kind == "kafka_broker_down":
                k.set_broker_down(broker)
                self._record(fault, "injected", broker=broker, duration_s=p["duration_s"])
                self._after(fault, p["duration_s"], lambda: k.set_broker_up(broker))
            else:
                k.set_rtt(broker, p["rtt_ms"])
                self._record(fault, "injected", broker=broker, rtt_ms=p["rtt_ms"], duration_s=p["duration_s"])
                self._after(fault, p["duration_s"], lambda: k.set_rtt(broker, 0))
        elif fault.kind in NETWORK_FAULT_KINDS:
            self._network(fault)
        elif fault.kind == "rate_limit_spike":
            balancer = self.target.balancer
            if balancer is None:
                raise GateError("a rate-limit spike needs the local balancer in front of the exposed service")
            self._begin(fault)
            before = balancer.stats().get("rate_limited", 0)
            balancer.rate_limit = RateLimit(p["percent"], p["retry_after_s"])
            self._record(fault, "injected", percent=p["percent"], duration_s=p["duration_s"])

            def limited() -> tuple[bool, str]:
                n = balancer.stats().get("rate_limited", 0) - before
                return n > 0, f"the edge answered {n} requests with 429 while the spike held"

            self._observers[fault.name] = limited
            self._after(fault, p["duration_s"], lambda: setattr(balancer, "rate_limit", None))
        elif fault.kind == "zone_loss":
            if sup is None:
                raise GateError("zone loss needs local services")
            self._begin(fault)
            killed = sup.stop_zone(p["zone"], p["services"] or None)
            self._record(fault, "injected", zone=p["zone"], replicas=killed)
            self._effect(fault, *self._gone(sup, killed, "killed", f"no live replica in zone {p['zone']}"))
        elif fault.kind == "overload":
            self._overload(fault)
        elif fault.kind == "leader_loss":
            self._leader_loss(fault)
        elif fault.kind == "duplicate_delivery":
            self._begin(fault)
            result = redeliver(self.target.bootstrap, p["topics"], p["fraction"], p["max_events"])
            self._record(fault, "injected", **result)
            n = int(result.get("republished") or 0)
            self._effect(fault, n > 0, f"{n} events republished")
        else:  # the schema rejects unknown kinds; this guards against a schema/runner mismatch
            raise GateError(f"fault kind {fault.kind!r} has no local implementation")

    def _overload(self, fault: Fault) -> None:
        """Start a burst against the exposed service; lifted at ``duration_s`` (or on abort) by halting it:
        the lift is when arrivals stop (what recovery counts from), and :meth:`join` waits for the requests
        still in flight."""
        p = fault.params
        if self.ledger_dir is None:
            raise GateError("an overload needs the load's ledger folder for its requests")
        spec = BurstSpec(
            rps=p["rps"],
            duration_s=p["duration_s"],
            timeout_s=p["timeout_s"],
            max_in_flight=p["max_in_flight"],
        )
        burst = BurstProcess(self.target.host, spec, self.ledger_dir, tag=f"burst-{fault.name}")
        self._bursts.append(burst)
        self._begin(fault)
        burst.start()
        # in effect once its first request is out (a Python process can take seconds to start here)
        sending = burst.wait_sending(BURST_START_WAIT_S)
        self._record(fault, "injected", rps=p["rps"], duration_s=p["duration_s"], sending=sending)

        def answered() -> tuple[bool, str]:
            st = burst.stats()
            return st.get("sent", 0) > 0, (
                f"the burst sent {st.get('sent', 0)} requests ({st.get('achieved_rps')} per s, "
                f"{st.get('not_sent', 0)} over its in-flight budget): answers {st.get('by_status', {})}"
                + (f"; error {st['error']}" if st.get("error") else "")
            )

        self._observers[fault.name] = answered
        self._after(fault, p["duration_s"], burst.halt)

    def _leader_loss(self, fault: Fault) -> None:
        """Pause the replica that leads now (``mode: pause``) or hold its path to the lease store
        (``partition``); sample every replica's leader figures around it."""
        p, sup = fault.params, self.target.supervisor
        if sup is None or fault.target is None:
            raise GateError("a leader loss needs local services")
        leader, token = find_leader(sup, fault.target)
        proxy = None
        if p["mode"] == "partition":
            proxy = self.target.replica_path(leader, "postgres")
            if proxy is None:
                raise GateError(f"the leader {leader} has no path of its own to Postgres to partition")
        sampler = LeaderSampler(sup, fault.target)
        sampler.deposed, sampler.deposed_token = leader, token
        sampler.start()
        self._samplers[fault.name] = sampler
        self._begin(fault)
        if proxy is None:
            hung = sup.hang(fault.target, 100.0, p["duration_s"], only=[leader])
            self._record(fault, "injected", replicas=hung, leader=leader, fencing_token=token, **_dur(p))
            self._effect(fault, *self._stopped(sup, hung, f"the leader {leader} was not running"))
            self._after(fault, p["duration_s"], lambda: sup.resume(hung))
        else:
            tox, before = proxy.toxics, proxy.toxics.affected_bytes
            # every byte both ways held until the lift, then delivered in order: a partition TCP survives
            tox.add(fault.name, "both", hold=True)
            self._record(
                fault, "injected", replicas=[leader], leader=leader, fencing_token=token, mode="partition",
                between=[leader, "postgres"], **_dur(p),
            )  # fmt: skip

            def held() -> tuple[bool, str]:
                n = tox.affected_bytes - before
                return n > 0, f"{n} bytes between {leader} and Postgres held while partitioned" + (
                    "" if n else " (the leader sent nothing to its lease store)"
                )

            self._observers[fault.name] = held
            self._after(fault, p["duration_s"], lambda: tox.remove(fault.name))
        sampler.until_ts = time.time() + p["duration_s"] + p["observe_s"]

        def recorded() -> None:  # once the observation is over, on the sampler's own schedule
            if sampler.wait(p["duration_s"] + p["observe_s"] + 10):
                self._leader_record(fault.name)

        threading.Thread(target=recorded, name=f"leader-record-{fault.name}", daemon=True).start()

    def _network(self, fault: Fault) -> None:
        p = fault.params
        if p["dependency"] == "kafka":
            self._kafka_network(fault)
            return
        tox = self.target.path(p["service"], p["dependency"])
        if tox is None:
            raise GateError(f"no proxied path between {p['service']} and {p['dependency']}")
        name, direction, kind = fault.name, p["direction"], fault.kind
        detail: dict[str, Any] = {"between": [p["service"], p["dependency"]], "direction": direction}
        path = f"{p['service']}→{p['dependency']}"
        self._begin(fault)
        before = _path_counts(self.target, p["service"], p["dependency"], tox)
        reset = 0
        if kind == "network_partition":
            detail["mode"] = p["mode"]
            if p["mode"] == "hang":
                tox.add(name, direction, blackhole=True)
            else:
                tox.refuse(name)
                reset = tox.reset() or 0
        elif kind == "network_latency":
            # delay_ms is what the round trip gains (as FIS delays a task's egress once): `both` splits it
            share = 2 if direction == "both" else 1
            tox.add(name, direction, latency_ms=p["delay_ms"] / share, jitter_ms=p["jitter_ms"] / share)
            detail.update(delay_ms=p["delay_ms"], jitter_ms=p["jitter_ms"])
        elif kind == "packet_loss":
            tox.add(name, direction, loss_percent=p["percent"])
            detail["percent"] = p["percent"]
        elif kind == "bandwidth":
            tox.add(name, direction, bandwidth_kbps=p["kbps"])
            detail["kbps"] = p["kbps"]
        elif kind == "connection_reset":
            if p["duration_s"]:
                tox.refuse(name)
            reset = tox.reset() or 0
        self._record(fault, "injected", duration_s=p["duration_s"], **detail)
        if not p["duration_s"]:
            self._effect(fault, reset > 0, f"{reset} open connections on {path} reset")
            return

        def through_proxy() -> tuple[bool, str]:
            nbytes, refused = (
                a - b
                for a, b in zip(
                    _path_counts(self.target, p["service"], p["dependency"], tox), before, strict=True
                )
            )
            seen = f"on {path}: {nbytes} bytes met the fault, {refused} connections refused, {reset} reset"
            return nbytes + refused + reset > 0, seen + (
                "" if nbytes + refused + reset else " (no request took this path)"
            )

        self._observers[fault.name] = through_proxy
        self._after(fault, p["duration_s"], lambda: tox.remove(name))

    def _kafka_network(self, fault: Fault) -> None:
        """Kafka paths use the embedded broker's controls on every broker (see the module docstring)."""
        p, k = fault.params, self.target.kafka
        if k is None or not k.controllable:
            self._record(fault, "skipped", reason="Kafka is external (RESGATE_KAFKA_BOOTSTRAP)")
            return
        brokers = list(range(1, int(getattr(k, "brokers", 1)) + 1))
        between = [p["service"], "kafka"]
        if fault.kind == "network_partition" and p["mode"] == "refuse":
            self._begin(fault)
            for b in brokers:
                k.set_broker_down(b)
            self._record(fault, "injected", between=between, mode="refuse", brokers=brokers, **_dur(p))
            self._after(fault, p["duration_s"], lambda: _each(brokers, k.set_broker_up))
        elif fault.kind in ("network_partition", "network_latency"):
            hang = fault.kind == "network_partition"
            self._begin(fault)
            rtt = int(p["duration_s"] * 1000) if hang else int(p["delay_ms"])
            for b in brokers:
                k.set_rtt(b, rtt)
            self._record(fault, "injected", between=between, rtt_ms=rtt, brokers=brokers, **_dur(p))
            self._after(fault, p["duration_s"], lambda: _each(brokers, lambda b: k.set_rtt(b, 0)))
        else:
            self._record(
                fault, "skipped", reason=f"{fault.kind} on the Kafka path: no proxy in front of the brokers"
            )


def _db_refuses(dsn: str | None) -> tuple[bool, str]:
    """Postgres, just stopped, refuses a new connection (the gate's own, direct address)."""
    if not dsn:
        return False, "no database address to probe"
    try:
        with psycopg.connect(dsn, connect_timeout=1):
            pass
    except psycopg.OperationalError as e:
        return True, f"Postgres refused a connection: {str(e).strip().splitlines()[0][:200]}"
    return False, "Postgres still accepted a connection after it was stopped"


def _path_counts(target: Any, service: str, dependency: str, tox: Any) -> tuple[int, int]:
    """``(bytes that met a toxic, connections refused)`` so far on the path's proxy."""
    stats = getattr(target, "path_stats", None)
    refused = (stats(service, dependency) or {}).get("refused", 0) if stats is not None else 0
    return int(getattr(tox, "affected_bytes", 0)), int(refused)


def _each(brokers: list[int], fn: Callable[[int], None]) -> None:
    for b in brokers:
        fn(b)


def _dur(p: dict[str, Any]) -> dict[str, Any]:
    return {"duration_s": p["duration_s"]}
