"""The client ledger for any locustfile: a Locust plugin that records every request, and a tiny API for
the domain fields a task knows.

Importing this module (the gate does it through ``loadgen/resgate_ledger_hook.py``, which it passes to
Locust beside the user's locustfile: ``locust -f resgate_ledger_hook.py,locustfile.py``) adds one
listener to Locust's ``events.request``: every request any user makes, through ``self.client`` or a
manual ``events.request.fire``, becomes exactly one line of this process's
``$RESGATE_LEDGER_DIR/ledger-<pid>.jsonl`` (:class:`loadgen.ledger.LedgerWriter`), with ``ts`` (start),
``op`` (Locust's request name), ``method``, ``client_id`` (one per Locust user unless the task says
otherwise), ``idempotency_key``, ``order_id``, ``status`` (the HTTP status, or a transport status word
when no response came back), ``outcome`` (:func:`loadgen.ledger.outcome_for`), ``latency_ms`` (Locust's),
``retry_after`` and ``error``. The module also owns the per-process live windows (``live-<pid>.jsonl``,
:mod:`loadgen.stats`) and the flushes: once a second, on ``test_stop``, ``quitting``, ``quit`` and at
interpreter exit. It is the only writer of ledger lines, so nothing is ever recorded twice.

A task adds what only it knows (client id, idempotency key, order id, the order's fields, ``attempt``;
any JSON-able field, and even ``status``/``outcome``/``error`` to override the classification) to the
records of the requests it makes inside a :func:`ledger_fields` block::

    from loadgen.ledger_plugin import annotate, ledger_fields

    @task
    def order(self):
        key = str(uuid.uuid4())
        with ledger_fields(client_id=self.name, idempotency_key=key, symbol="AAPL", qty=5):
            r = self.client.post("/orders", json=body, headers={"Idempotency-Key": key})
            if r.status_code == 200:
                annotate(order_id=r.json()["id"])

Records made inside a block are held and written when the block ends, with the block's fields as they
are then, so a field learnt from the response still reaches the record of the request that returned it.
Blocks nest (inner fields win) and belong to the greenlet (Locust user) that opened them.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import gevent
from locust import events
from locust.exception import CatchResponseError
from locust.runners import MasterRunner, WorkerRunner

from loadgen.ledger import (
    DONE_PREFIX,
    LEDGER_PREFIX,
    LIVE_PREFIX,
    SEEN_FILE,
    LedgerWriter,
    outcome_for,
    parse_retry_after,
    seen_state,
    transport_status,
)
from loadgen.load_config import LoadConfig
from loadgen.pacing import Pacer, intended_latency_ms, interval_for
from loadgen.stats import LiveWindow
from resgate.contract import env as env_names

log = logging.getLogger("resgate.loadgen")

ERROR_SNIPPET = 200

CONFIG = LoadConfig.from_env()
LEDGER = LedgerWriter(CONFIG.ledger_dir, prefix=LEDGER_PREFIX, flush_every=CONFIG.flush_every)
LIVE_FILE = LedgerWriter(CONFIG.ledger_dir, prefix=LIVE_PREFIX, flush_every=1_000_000)
LIVE = LiveWindow()
PARTS: dict[str, LedgerWriter] = {LEDGER_PREFIX: LEDGER}
"""This process's parts by prefix, flushed together and counted by its completion marker; a module that
writes a part of its own adds its writer with :func:`register_part` (the stream ledger does)."""

_INSTALLED_MARK = "_resgate_ledger_plugin"
_CLIENT_NUMBERS = itertools.count(1)
_CLIENT_IDS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_SCOPES: weakref.WeakKeyDictionary[Any, list[_Scope]] = weakref.WeakKeyDictionary()
_PACERS: weakref.WeakKeyDictionary[Any, Pacer] = weakref.WeakKeyDictionary()
_INTENDED: weakref.WeakKeyDictionary[Any, float | None] = weakref.WeakKeyDictionary()
"""The intended start of the task a user (greenlet) is about to run, taken by its first request."""


# --------------------------------------------------------------------------------------------- classification


def _header(response: Any, name: str) -> str | None:
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get(name)
    if isinstance(value, list):
        return value[-1] if value else None
    return value


def _snippet(response: Any) -> str:
    try:
        content = response.content
    except Exception:  # a body that never arrived whole
        return ""
    if not content:
        return ""
    if isinstance(content, str):
        return content[:ERROR_SNIPPET]
    return bytes(content[:ERROR_SNIPPET]).decode("utf-8", errors="replace")


def classify_request(
    response: Any, exception: BaseException | None, *, now: float | None = None
) -> tuple[int | str, str, float | None, str | None]:
    """What a finished request came to: ``(status, outcome, retry_after, error)``.

    No HTTP status (``status_code`` 0 or no response): the transport status of the exception
    (:func:`loadgen.ledger.transport_status`). A 2xx whose body broke off (an exception other than a
    ``catch_response`` failure): ``conn_reset``/``info``, since whether it took effect is unknown. A 2xx
    the task itself marked failed: ``info``. Otherwise the status's outcome (:func:`outcome_for`), the
    parsed ``Retry-After`` and, for a non-2xx, ``"HTTP <code>: <start of the body>"``.
    """
    code = int(getattr(response, "status_code", 0) or 0) if response is not None else 0
    if code == 0:
        err = getattr(response, "error", None) or exception
        status: int | str = transport_status(err)
        return status, outcome_for(status), None, f"{type(err).__name__}: {err}"[:ERROR_SNIPPET]
    if 200 <= code < 300 and exception is not None:
        if not isinstance(exception, CatchResponseError):
            return "conn_reset", "info", None, f"HTTP {code} with a broken body: {exception}"[:ERROR_SNIPPET]
        return code, "info", None, f"HTTP {code} marked failed: {exception}"[:ERROR_SNIPPET]
    retry_after = parse_retry_after(_header(response, "Retry-After"), now=time.time() if now is None else now)
    outcome = outcome_for(code)
    error = None if outcome == "ok" else f"HTTP {code}: {_snippet(response)}"[:ERROR_SNIPPET]
    return code, outcome, retry_after, error


# --------------------------------------------------------------------------------------------- the task API


class _Scope:
    __slots__ = ("fields", "held")

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        self.held: list[dict[str, Any]] = []


def _stack(create: bool) -> list[_Scope] | None:
    current = gevent.getcurrent()
    stack = _SCOPES.get(current)
    if stack is None and create:
        stack = _SCOPES[current] = []
    return stack


@contextmanager
def ledger_fields(**fields: Any) -> Iterator[dict[str, Any]]:
    """Add ``fields`` to the ledger record of every request this user makes inside the block.

    Yields the (mutable) field dict; :func:`annotate` or item assignment add to it. Records are written
    when the block ends (also when it ends by an exception, ``GreenletExit`` included), each with the
    fields of every enclosing block, inner ones winning, over what the plugin measured.
    """
    stack = _stack(create=True)
    assert stack is not None
    scope = _Scope(dict(fields))
    stack.append(scope)
    try:
        yield scope.fields
    finally:
        stack.pop()
        if scope.held:
            merged: dict[str, Any] = {}
            for outer in stack:
                merged.update(outer.fields)
            merged.update(scope.fields)
            for rec in scope.held:
                _write({**rec, **merged})


def annotate(**fields: Any) -> None:
    """Add ``fields`` to the innermost open :func:`ledger_fields` block of this user.

    Raises ``LookupError`` when no block is open (a record outside a block is written at once, so there
    is nothing left to annotate).
    """
    stack = _stack(create=False)
    if not stack:
        raise LookupError("annotate() needs an open ledger_fields() block around the request")
    stack[-1].fields.update(fields)


def default_client_id() -> str:
    """This Locust user's client id, ``u<node>-<n>``: one per greenlet, stable for its lifetime."""
    current = gevent.getcurrent()
    cid = _CLIENT_IDS.get(current)
    if cid is None:
        cid = _CLIENT_IDS[current] = f"u{CONFIG.node}-{next(_CLIENT_NUMBERS)}"
    return cid


# --------------------------------------------------------------------------------------------- recording


def register_part(writer: LedgerWriter) -> None:
    """Make ``writer``'s file one of this process's parts (:data:`PARTS`): flushed once a second and when
    the process stops, before the completion marker, which counts its lines under ``parts.<prefix>``."""
    PARTS[writer.prefix] = writer


def flush_parts() -> None:
    """Append every part's buffered lines to its file."""
    for writer in list(PARTS.values()):
        writer.flush()


def _write(record: Mapping[str, Any]) -> None:
    rec = dict(record)
    if not rec.get("client_id"):
        rec["client_id"] = default_client_id()
    try:
        LEDGER.write(rec)
    except Exception:  # never break the user's task over the ledger; the flush logs disk errors
        log.exception("writing a ledger record failed")


def on_request(
    request_type: str = "",
    name: str = "",
    response_time: float | None = None,
    response_length: int = 0,
    response: Any = None,
    context: Mapping[str, Any] | None = None,
    exception: BaseException | None = None,
    start_time: float | None = None,
    url: str | None = None,
    **_kw: Any,
) -> None:
    """Locust ``events.request`` listener: one ledger record (held by an open block, else written)."""
    now = time.time()
    latency_ms = float(response_time or 0.0)
    if TICKER.greenlet is None:
        TICKER.start()
    LIVE.add(now, latency_ms, exception is not None)
    try:
        status, outcome, retry_after, error = classify_request(response, exception, now=now)
    except Exception as e:  # never lose the record of a request that was made
        status, outcome, retry_after, error = "conn_error", "info", None, f"unclassified: {e!r}"
    ts = float(start_time) if start_time else now - latency_ms / 1000
    record: dict[str, Any] = {
        "ts": round(ts, 6),
        "op": name or url or request_type,
        "method": request_type,
        "client_id": None,
        "idempotency_key": None,
        "order_id": None,
        "status": status,
        "outcome": outcome,
        "latency_ms": round(latency_ms, 3),
        "retry_after": retry_after,
        "error": error,
    }
    if CONFIG.arrival_rate:
        intended = _INTENDED.pop(gevent.getcurrent(), None)
        record["intended_ts"] = round(ts if intended is None else intended, 6)
        record["intended_latency_ms"] = round(intended_latency_ms(latency_ms, ts, intended), 3)
    stack = _stack(create=False)
    if stack:
        stack[-1].held.append(record)
    else:
        _write(record)


def paced_wait_time(user: Any) -> float:
    """A Locust ``wait_time`` for the open model (``wait_time = paced_wait_time`` in a user class): the
    seconds until this user's next intended start (:class:`loadgen.pacing.Pacer`, ``RESGATE_ARRIVAL_RATE``
    shared by ``RESGATE_USERS`` users); the first request of the next task is timed from that start too."""
    if not CONFIG.arrival_rate:
        raise RuntimeError(f"paced_wait_time needs {env_names.ENV_ARRIVAL_RATE} (load.arrival_rate)")
    pacer = _PACERS.get(user)
    if pacer is None:
        pacer = _PACERS[user] = Pacer(interval_for(CONFIG.arrival_rate, CONFIG.users))
    wait = pacer.wait(time.time())
    _INTENDED[gevent.getcurrent()] = pacer.intended
    return wait


# --------------------------------------------------------------------------------------------- process hooks


class _Ticker:
    """Once a second: write the finished live windows and the buffered ledger lines of this process."""

    def __init__(self) -> None:
        self.greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        if self.greenlet is None or self.greenlet.dead:
            LIVE.start(time.time())
            self.greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        while True:
            gevent.sleep(1.0 - (time.time() % 1.0) + 0.01)  # just after each second boundary
            try:
                write_live(final=False)
                flush_parts()
            except Exception:
                log.exception("writing the ledger / live stats failed")

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
            self.greenlet = None


TICKER = _Ticker()


LIVE_MESSAGE = "resgate_live"
_ROLE = os.environ.get(env_names.ENV_LOAD_ROLE, "").strip()
_RUNNER: Any = None
"""This process's Locust runner (set at ``init``): a Fargate worker sends its live windows through it."""


def write_live(*, final: bool) -> None:
    """Append this process's finished live windows (all of them when ``final``) to its live file; a worker
    task on Fargate (``RESGATE_LOAD_ROLE=worker``) also sends them to its master, whose live files are the
    ones the guardrail metrics read (the master's aggregate: its container has no worker's files)."""
    lines = LIVE.drain(time.time(), final=final)
    LIVE_FILE.write_many(lines)
    LIVE_FILE.flush()
    if lines and _ROLE == "worker" and isinstance(_RUNNER, WorkerRunner):
        _RUNNER.send_message(LIVE_MESSAGE, {"node": CONFIG.node, "lines": lines})


def _on_live_message(msg: Any, **_kw: Any) -> None:
    """On a Fargate master: append a worker's live windows to ``live-<node>.jsonl`` in its own folder."""
    data = msg.data if isinstance(msg.data, dict) else {}
    node = "".join(ch for ch in str(data.get("node") or "worker") if ch.isalnum() or ch in "-_")
    lines = [json.dumps(line, separators=(",", ":")) + "\n" for line in data.get("lines") or []]
    if lines:
        CONFIG.ledger_dir.mkdir(parents=True, exist_ok=True)
        with open(CONFIG.ledger_dir / f"{LIVE_PREFIX}-{node}.jsonl", "a", encoding="utf-8") as f:
            f.writelines(lines)


_MAKES_REQUESTS = False
"""Set when this process starts a test as a load process (not a master): only those leave a marker."""


def write_done_marker() -> None:
    """Write ``done-<pid>.json`` (:data:`loadgen.ledger.DONE_PREFIX`) with the number of lines this process
    has written to each of its parts, after they are on disk: the runner's proof that each part is whole
    (``{"pid", "node", "records": <ledger lines>, "parts": {prefix: lines}}``). Rewritten by every later
    flush, so the last one counts; a process killed mid-run leaves none."""
    path = CONFIG.ledger_dir / f"{DONE_PREFIX}-{os.getpid()}.json"
    tmp = path.with_name(path.name + ".tmp")
    parts = {prefix: w.written for prefix, w in PARTS.items()}
    tmp.write_text(
        json.dumps({"pid": os.getpid(), "node": CONFIG.node, "records": LEDGER.written, "parts": parts})
    )
    os.replace(tmp, path)


def flush_all(**_kw: Any) -> None:
    """Write everything this process has buffered, then its completion marker (idempotent; safe to call
    from any event)."""
    try:
        flush_parts()
        LIVE_FILE.flush()
        if _MAKES_REQUESTS:
            write_done_marker()
        if WATCH.runner is not None:
            WATCH.write()
    except Exception:
        log.exception("flushing the ledger failed")


def _on_test_start(environment: Any, **_kw: Any) -> None:
    global _MAKES_REQUESTS
    if not isinstance(environment.runner, MasterRunner):  # a master makes no requests of its own
        _MAKES_REQUESTS = True
        CONFIG.ledger_dir.mkdir(parents=True, exist_ok=True)
        TICKER.start()
    if isinstance(environment.runner, WorkerRunner):
        _say_node(environment.runner)  # again: a master restarted since init would not know it


STOP_MESSAGE = "resgate_stop"
FINAL_MESSAGE = "resgate_final"
FINAL_REPORT_GRACE_S = 10.0
"""How long a master waits, beyond the users' stop timeout, for its workers' final reports."""
_FINALS: set[str] = set()


NODE_MESSAGE = "resgate_node"
"""A worker's first message to its master: ``{"node", "pid"}``, so the master can name whom it heard."""


class WorkerWatch:
    """On a master: each worker as its heartbeats show it, written to ``<ledger dir>/workers-seen.json``
    (:data:`loadgen.ledger.SEEN_FILE`, read by :func:`loadgen.ledger.read_seen`) once a second and when the
    master stops, so that whoever waits for a worker's parts after the master has ended knows which worker
    went silent and when it was last heard. Locust marks a worker missing after about four missed one-second
    heartbeats and forgets it a minute later; the record keeps it missing (a worker that comes back is
    running again)."""

    def __init__(self) -> None:
        self.runner: Any = None
        self.workers: dict[str, dict[str, Any]] = {}
        self.greenlet: gevent.Greenlet | None = None

    def start(self, runner: Any) -> None:
        self.runner = runner
        runner.register_message(NODE_MESSAGE, self.on_node)
        events.worker_connect.add_listener(self.on_connect)
        events.heartbeat_sent.add_listener(self.on_heartbeat)
        self.greenlet = gevent.spawn(self._run)

    def _worker(self, client_id: str, now: float) -> dict[str, Any]:
        w = self.workers.get(client_id)
        if w is None:
            w = self.workers[client_id] = {
                "node": client_id,
                "client_id": client_id,
                "pid": None,
                "first_seen": round(now, 3),
                "last_seen": round(now, 3),
                "state": "ready",
                "missing_since": None,
            }
        return w

    def on_connect(self, client_id: str, **_kw: Any) -> None:
        self._worker(str(client_id), time.time())

    def on_node(self, msg: Any, **_kw: Any) -> None:
        data = msg.data if isinstance(msg.data, dict) else {}
        w = self._worker(str(msg.node_id), time.time())
        w["node"] = "".join(ch for ch in str(data.get("node") or msg.node_id) if ch.isalnum() or ch in "-_.")
        w["pid"] = data.get("pid")

    def on_heartbeat(self, client_id: str, timestamp: float, **_kw: Any) -> None:
        self._worker(str(client_id), timestamp)["last_seen"] = round(float(timestamp), 3)

    def update(self, now: float) -> None:
        """Take each worker's state from the runner (:func:`loadgen.ledger.seen_state`)."""
        clients = self.runner.clients if self.runner is not None else {}
        for cid in list(clients):
            self._worker(str(cid), now)
        for cid, w in self.workers.items():
            node = clients.get(cid)
            w["state"], w["missing_since"] = seen_state(
                w["state"], w["missing_since"], None if node is None else node.state, now
            )

    def write(self) -> None:
        """Update the record and replace the file (atomically)."""
        now = time.time()
        self.update(now)
        CONFIG.ledger_dir.mkdir(parents=True, exist_ok=True)
        path = CONFIG.ledger_dir / SEEN_FILE
        tmp = path.with_name(path.name + ".tmp")
        workers = sorted(self.workers.values(), key=lambda w: str(w["node"]))
        tmp.write_text(json.dumps({"written_at": round(now, 3), "workers": workers}))
        os.replace(tmp, path)

    def _run(self) -> None:
        while True:
            gevent.sleep(1.0)
            try:
                self.write()
            except Exception:
                log.exception("writing the workers' record failed")


WATCH = WorkerWatch()


def _on_init(environment: Any, **_kw: Any) -> None:
    global _RUNNER
    runner = _RUNNER = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(FINAL_MESSAGE, _on_final)
        if _ROLE == "master":
            runner.register_message(LIVE_MESSAGE, _on_live_message)
        WATCH.start(runner)
    elif isinstance(runner, WorkerRunner):
        # concurrent: stopping the users takes up to the stop timeout; the worker keeps heartbeating
        runner.register_message(STOP_MESSAGE, _on_stop_message, concurrent=True)
        _say_node(runner)


def _say_node(runner: Any) -> None:
    try:
        runner.send_message(NODE_MESSAGE, {"node": CONFIG.node, "pid": os.getpid()})
    except Exception:
        log.exception("telling the master this worker's node failed")


def _on_final(msg: Any, **_kw: Any) -> None:
    _FINALS.add(str(msg.node_id))


def _on_stop_message(environment: Any, **_kw: Any) -> None:
    environment.runner.stop()  # fires test_stop: the last stats and the final message go to the master


def collect_final_reports(runner: Any, timeout_s: float) -> bool:
    """On a master that is stopping: have every worker stop its users and report its last stats, and wait
    (at most ``timeout_s``) until each worker that is not missing has. True when all did.

    Locust's headless master quits at its run time by sending *quit* and exiting half a second later,
    while a worker stops its users (up to the stop timeout) before it sends its last stats: the master's
    ``--json`` would miss the requests of those seconds and disagree with the ledger. A worker's stats
    and its final message travel on the same connection, so the stats arrive first."""
    _FINALS.clear()
    workers = [c.id for c in runner.clients.all]
    for cid in workers:
        runner.send_message(STOP_MESSAGE, None, client_id=cid)
    deadline = time.monotonic() + timeout_s
    while True:
        missing = {c.id for c in runner.clients.missing}
        waiting = [cid for cid in workers if cid not in _FINALS and cid not in missing]
        if not waiting:
            return True
        if time.monotonic() >= deadline:
            log.warning("no final report from workers %s", waiting)
            return False
        gevent.sleep(0.05)


def _on_test_stop(environment: Any = None, **_kw: Any) -> None:
    TICKER.stop()
    try:
        write_live(final=True)
    except Exception:
        log.exception("writing live stats failed")
    flush_all()
    runner = getattr(environment, "runner", None)
    if isinstance(runner, MasterRunner):
        collect_final_reports(runner, float(environment.stop_timeout or 0) + FINAL_REPORT_GRACE_S)
    elif isinstance(runner, WorkerRunner):
        try:
            runner._send_stats()  # what the users did since the last periodic report
            runner.send_message(FINAL_MESSAGE, None)
        except Exception:
            log.exception("sending the final stats to the master failed")


def install() -> bool:
    """Add the listeners to Locust's global events, once per process; True when this call added them."""
    if getattr(events, _INSTALLED_MARK, False):
        return False
    setattr(events, _INSTALLED_MARK, True)
    events.request.add_listener(on_request)
    events.init.add_listener(_on_init)
    events.test_start.add_listener(_on_test_start)
    events.test_stop.add_listener(_on_test_stop)
    events.quitting.add_listener(flush_all)
    events.quit.add_listener(flush_all)
    atexit.register(flush_all)
    return True


install()
