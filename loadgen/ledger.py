"""Client-ledger writing for the load generator: per-process JSON-lines files, merging, counting.

Each Locust process appends its own file ``<dir>/<prefix>-<pid>.jsonl`` through a :class:`LedgerWriter`:
records are serialised when they are written and buffered; a flush appends whole lines only, in one
``O_APPEND`` write loop, so a crash leaves every line either whole or absent (a torn last line is cut
off when the file is next opened for writing, and skipped by every reader here). :func:`merge_ledgers`
joins the per-process parts into ``<dir>/ledger.jsonl`` (sorted by ``ts``), the file the checkers read.

The module also holds the ledger's classification rules, shared by the locustfile and the tests:
:func:`outcome_for` (``ok`` = 2xx; ``fail`` = the request certainly did not take effect: 4xx, 503,
connection refused; ``info`` = indeterminate: timeout, reset, other 5xx), :func:`transport_status` (the
``status`` word for a request that got no HTTP response), :func:`is_retryable` and
:func:`parse_retry_after`. Standard library and ``resgate.contract`` only.
"""

from __future__ import annotations

import email.utils
import errno
import json
import os
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from resgate.contract.ledger import RETRYABLE_HTTP, TRANSPORT_STATUSES
from resgate.contract.stream import STREAM_PREFIX

LEDGER_PREFIX = "ledger"
LIVE_PREFIX = "live"
DONE_PREFIX = "done"
"""``<dir>/done-<pid>.json``: a process's completion marker, ``{"pid", "node", "records"}``, written when it
shuts down cleanly (:mod:`loadgen.ledger_plugin`); a ledger part without one is incomplete."""
MERGED_NAME = "ledger.jsonl"
PART_PREFIXES: tuple[str, ...] = (LEDGER_PREFIX, STREAM_PREFIX)
"""The parts each load process leaves, one file each, counted by its completion marker: its client ledger
and its stream ledger (written only by a process that ran market-data subscribers)."""
SEEN_FILE = "workers-seen.json"
"""``<dir>/workers-seen.json``: a Locust master's record of its workers as its heartbeats saw them,
rewritten once a second and when it stops (:mod:`loadgen.ledger_plugin`, :func:`read_seen`)."""
MISSING = "missing"
"""A worker's state once the master has missed its heartbeats (Locust's ``STATE_MISSING``)."""


_SORT_IN_MEMORY_LIMIT_BYTES = 512 * 1024 * 1024


# --------------------------------------------------------------------------------------------- rules


def outcome_for(status: int | str) -> str:
    """The ledger ``outcome`` for a ``status``: ``"ok"`` | ``"fail"`` | ``"info"``.

    ``ok``: 2xx. ``fail`` (the request certainly did not take effect): any 4xx, 503 (the server says it is
    unavailable and did not apply it), ``conn_refused``. ``info`` (indeterminate): ``timeout``,
    ``conn_reset``, ``conn_error``, and any other status (other 5xx, and 1xx/3xx which should not reach here).
    """
    if isinstance(status, int) and not isinstance(status, bool):
        if 200 <= status < 300:
            return "ok"
        if 400 <= status < 500 or status == 503:
            return "fail"
        return "info"
    if status == "conn_refused":
        return "fail"
    return "info"


def is_retryable(status: int | str) -> bool:
    """True when a client should try again (same key and body): 429/502/503/504 and any transport error."""
    if isinstance(status, int) and not isinstance(status, bool):
        return status in RETRYABLE_HTTP
    return status in TRANSPORT_STATUSES


def _mro_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def transport_status(exc: BaseException | None) -> str:
    """Map a client-side exception to ``timeout`` | ``conn_refused`` | ``conn_reset`` | ``conn_error``.

    Wrappers that keep the cause in ``.original`` (geventhttpclient's ``RetriesExceeded``) are unwrapped.
    A connection closed before any response (``HTTPConnectionClosed``, RST, broken pipe) is ``conn_reset``;
    gevent and socket timeouts are ``timeout``; anything else is ``conn_error``.
    """
    seen = 0
    while exc is not None and getattr(exc, "original", None) is not None and seen < 5:
        exc = exc.original  # type: ignore[attr-defined]
        seen += 1
    if exc is None:
        return "conn_error"
    names = _mro_names(exc)
    if isinstance(exc, TimeoutError) or "Timeout" in names or "timeout" in names:
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "conn_refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "conn_reset"
    if "HTTPConnectionClosed" in names:
        return "conn_reset"
    err = getattr(exc, "errno", None)
    if err == errno.ECONNREFUSED:
        return "conn_refused"
    if err in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
        return "conn_reset"
    if err == errno.ETIMEDOUT:
        return "timeout"
    return "conn_error"


def parse_retry_after(value: str | list[str] | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date); None if absent/invalid."""
    if isinstance(value, list):
        value = value[-1] if value else None
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        return max(0.0, when.timestamp() - now)
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return None
    return seconds


# --------------------------------------------------------------------------------------------- writing


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _repair_torn_tail(path: Path) -> None:
    """Cut a torn (unterminated) last line off ``path`` so appended lines start on a line boundary."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        keep = 0
        pos = size
        while pos > 0:  # scan back for the last newline, 64 KiB at a time
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = pos + i + 1
                break
        f.truncate(keep)


class LedgerWriter:
    """Buffered, thread- and greenlet-safe JSON-lines writer for one process's ``<prefix>-<pid>.jsonl``.

    :meth:`write` serialises a record at once (so later mutation of the dict does not matter) and buffers
    the line; :meth:`flush` appends the buffered lines (only whole lines) and returns how many it wrote.
    A buffer of ``flush_every`` lines is flushed by the :meth:`write` that fills it. After a ``fork`` the
    child starts with an empty buffer and writes its own ``<prefix>-<childpid>.jsonl`` (the parent keeps
    and writes its lines). Nothing touches the disk until the first flush.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, prefix: str = LEDGER_PREFIX, flush_every: int = 2000
    ):
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        self.directory = Path(directory)
        self.prefix = prefix
        self.flush_every = flush_every
        self._lock = threading.Lock()
        self._buffer: list[str] = []
        self._pid = os.getpid()
        self._repaired = False
        self.written = 0
        """Lines this process has written to disk so far."""

    @property
    def path(self) -> Path:
        """This process's file: ``<directory>/<prefix>-<pid>.jsonl``."""
        return self.directory / f"{self.prefix}-{os.getpid()}.jsonl"

    def _check_fork(self) -> None:
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            self._buffer = []
            self._repaired = False
            self.written = 0
            self._lock = threading.Lock()

    def write(self, record: Mapping[str, Any]) -> None:
        """Buffer one record as a JSON line; flushes when the buffer reaches ``flush_every`` lines."""
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        self._check_fork()
        with self._lock:
            self._buffer.append(line)
            full = len(self._buffer) >= self.flush_every
        if full:
            self.flush()

    def write_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Buffer several records (see :meth:`write`)."""
        for r in records:
            self.write(r)

    @property
    def pending(self) -> int:
        """Lines buffered and not yet on disk."""
        return len(self._buffer)

    def flush(self) -> int:
        """Append the buffered lines to :attr:`path` (whole lines only); returns the number written."""
        self._check_fork()
        with self._lock:
            if not self._buffer:
                return 0
            lines, self._buffer = self._buffer, []
            path = self.path
            path.parent.mkdir(parents=True, exist_ok=True)
            if not self._repaired:
                _repair_torn_tail(path)
                self._repaired = True
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                _write_all(fd, "".join(lines).encode("utf-8"))
            finally:
                os.close(fd)
            self.written += len(lines)
            return len(lines)

    def close(self) -> int:
        """Flush what is buffered; the writer stays usable. Returns the number of lines written."""
        return self.flush()


# --------------------------------------------------------------------------------------------- reading


def part_files(directory: str | os.PathLike[str], prefix: str = LEDGER_PREFIX) -> list[Path]:
    """The per-process files ``<prefix>-*.jsonl`` in ``directory``, sorted by name."""
    return sorted(p for p in Path(directory).glob(f"{prefix}-*.jsonl") if p.is_file())


def _paths(path_or_dir: str | os.PathLike[str], prefix: str) -> list[Path]:
    p = Path(path_or_dir)
    return part_files(p, prefix) if p.is_dir() else [p]


def iter_lines(path_or_dir: str | os.PathLike[str], *, prefix: str = LEDGER_PREFIX) -> Iterator[str]:
    """Whole lines (newline-terminated, non-blank) of a ledger file, or of every part file in a directory.

    An unterminated last line (a write torn by a crash) is skipped.
    """
    for path in _paths(path_or_dir, prefix):
        with open(path, encoding="utf-8", newline="\n") as f:
            for line in f:
                if line.endswith("\n") and line.strip():
                    yield line


def iter_records(
    path_or_dir: str | os.PathLike[str], *, prefix: str = LEDGER_PREFIX
) -> Iterator[dict[str, Any]]:
    """Decoded records of :func:`iter_lines` (dicts; no validation beyond JSON)."""
    for line in iter_lines(path_or_dir, prefix=prefix):
        yield json.loads(line)


def count_records(path_or_dir: str | os.PathLike[str], *, prefix: str = LEDGER_PREFIX) -> int:
    """Number of whole records in a ledger file or in a directory's part files."""
    return sum(1 for _ in iter_lines(path_or_dir, prefix=prefix))


def count_by(path_or_dir: str | os.PathLike[str], *fields: str, prefix: str = LEDGER_PREFIX) -> Counter[Any]:
    """Records counted by the value of one field (``Counter({value: n})``) or of several (tuple keys)."""
    if not fields:
        raise ValueError("count_by needs at least one field name")
    counts: Counter[Any] = Counter()
    for rec in iter_records(path_or_dir, prefix=prefix):
        key = rec.get(fields[0]) if len(fields) == 1 else tuple(rec.get(f) for f in fields)
        counts[key] += 1
    return counts


def merge_ledgers(
    directory: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    sort: bool = True,
    prefix: str = LEDGER_PREFIX,
) -> Path:
    """Join every ``<prefix>-*.jsonl`` (default ``ledger-*.jsonl``) in ``directory`` into one file and return
    its path.

    The result (default ``<directory>/<prefix>.jsonl``: ``ledger.jsonl``) holds each whole line of the
    parts exactly once, sorted by ``ts`` (stable, so a process's order is kept for equal times) unless
    ``sort`` is false or the parts exceed 512 MiB, in which case they are concatenated in name order. It
    is written to a temporary file and renamed, so a reader never sees half a merge; merging again
    rewrites it. An empty directory gives an empty file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = Path(out) if out is not None else directory / f"{prefix}.jsonl"
    parts = [p for p in part_files(directory, prefix) if p.resolve() != target.resolve()]
    total = sum(p.stat().st_size for p in parts)
    fd, tmp = tempfile.mkstemp(prefix=".merge-", suffix=".jsonl", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            if sort and total <= _SORT_IN_MEMORY_LIMIT_BYTES:
                keyed: list[tuple[float, str]] = []
                for part in parts:
                    for line in iter_lines(part):
                        try:
                            ts = float(json.loads(line).get("ts") or 0.0)
                        except (ValueError, TypeError, AttributeError):
                            ts = 0.0
                        keyed.append((ts, line))
                keyed.sort(key=lambda t: t[0])
                f.writelines(line for _, line in keyed)
            else:
                for part in parts:
                    f.writelines(iter_lines(part))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


# --------------------------------------------------------------------------------------------- workers seen


def read_seen(directory: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """A master's record of its workers (:data:`SEEN_FILE`), by node: ``{node: {node, client_id, pid,
    first_seen, last_seen, state, missing_since}}`` with ``last_seen`` the epoch second of the worker's
    last heartbeat, ``state`` Locust's (``running``, ``ready``, ...), ``"missing"`` once its heartbeats
    stopped (and it did not come back) or ``"left"`` when it quit, and ``missing_since`` when the master
    first saw it missing. ``{}`` when there is no record (a single-process load, a master that never
    started) or it does not parse."""
    try:
        doc = json.loads((Path(directory) / SEEN_FILE).read_text())
        return {str(w["node"]): dict(w) for w in doc["workers"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def seen_state(
    state: str, missing_since: float | None, locust_state: str | None, now: float
) -> tuple[str, float | None]:
    """A worker's next ``(state, missing_since)`` in the master's record, from what Locust says of it now
    (``locust_state``: its ``WorkerNode.state``, None when Locust no longer lists it): Locust's state while
    it lists the worker (``missing_since`` set when it first turns missing, cleared when it heals); once
    Locust forgets it, ``missing`` stays missing (Locust drops a missing worker after a minute) and any
    other becomes ``left`` (it quit)."""
    if locust_state is not None:
        state = str(locust_state)
    elif state != MISSING:
        state = "left"
    if state != MISSING:
        return state, None
    return state, missing_since if missing_since is not None else round(now, 3)
