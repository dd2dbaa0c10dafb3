"""A target task's elastic network interface, twinned: the task's own private address on this machine's
loopback (``127.0.0.0/8``, which Linux routes to ``lo`` as a whole), where its container port reaches the
one local replica process the task stands for.

On Fargate (``awsvpc``) every task has an ENI of its own, so every task of a service listens on the same
container port at a different private address, and the load task's leader watch
(:class:`resgate.runner.leader.EcsReplicas`) probes ``<task address>:<port>``. The local supervisor runs
its replicas on 127.0.0.1, each on a free port of its own; :class:`TaskEni` is the mapping between the
two: a small relay process listening on ``(address, container port)`` that connects each accepted
connection to ``127.0.0.1:<the replica's port>`` and pumps bytes both ways, nothing more. A replica that
is killed refuses the relay's connect, so the client's connection is closed at once (as a task whose
container exited answers nothing); a hung replica accepts and never answers (the client times out), as
through a real ENI. The relay runs in its own process (``python -m tests.rehearsal.support.task_eni HOST
PORT UPSTREAM_PORT``) so that probes through it do not wait on the rehearsal's own busy interpreter; it
exits when its parent closes its stdin (the rehearsal ended or died), and is stopped with its task.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.rehearsal.support.assembly import ROOT

READY = b"listening\n"
START_TIMEOUT_S = 20.0
CONNECT_TIMEOUT_S = 2.0


class TaskEni:
    """The relay of one task: ``host:port`` → ``127.0.0.1:upstream_port``; :meth:`close` stops it."""

    def __init__(self, host: str, port: int, upstream_port: int, *, log: Path | None = None) -> None:
        self.host, self.port, self.upstream_port = host, port, upstream_port
        err = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 (closed below)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", __name__, host, str(port), str(upstream_port)],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        finally:
            if log is not None:
                err.close()
        line = _read_line(self.proc, START_TIMEOUT_S)
        if line != READY:
            self.close()
            raise RuntimeError(f"task ENI {host}:{port} -> 127.0.0.1:{upstream_port} did not start: {line!r}")

    def close(self) -> None:
        """Stop the relay (its listening socket and every connection through it); waits at most 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _read_line(proc: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    """The child's first stdout line, or b"" when it gives none within ``timeout_s`` (bounded wait)."""
    out: list[bytes] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout_s)
    return out[0] if out else b""


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def _serve(host: str, port: int, upstream_port: int) -> None:
    async def relay(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            u_reader, u_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", upstream_port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            c_writer.close()  # the replica is gone (or not listening yet): the task answers nothing
            return
        try:
            await asyncio.gather(_pump(c_reader, u_writer), _pump(u_reader, c_writer))
        finally:
            for w in (c_writer, u_writer):
                w.close()

    server = await asyncio.start_server(relay, host, port, reuse_address=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: done.done() or done.set_result(None))
    # The parent closing stdin (it ended, however) ends the relay: no orphan outlives a rehearsal.
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    sys.stdout.buffer.write(READY)
    sys.stdout.buffer.flush()
    eof = asyncio.ensure_future(stdin.read())
    await asyncio.wait([done, eof], return_when=asyncio.FIRST_COMPLETED)
    server.close()


if __name__ == "__main__":
    host_arg, port_arg, upstream_arg = sys.argv[1:4]
    asyncio.run(_serve(host_arg, int(port_arg), int(upstream_arg)))
