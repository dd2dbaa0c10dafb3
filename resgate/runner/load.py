"""The load phase of a local run: Locust (loadgen) as a subprocess, its live windows, its final figures.

Whatever the locustfile, ``loadgen.run.run_locust`` loads the ledger plugin (``loadgen.ledger_plugin``)
beside it, so the user's plain locustfile gets a client ledger and live windows with no change to it.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

from loadgen.ledger import LIVE_PREFIX, iter_lines, iter_records
from loadgen.run import LocustResult, LocustRun, run_locust
from loadgen.stats import read_live, summarize
from resgate.checks.histogram import percentile
from resgate.checks.slo.phases import locust_bucket
from resgate.config.faults import shape_steps
from resgate.config.runnable import resolve_locustfile
from resgate.config.schema import GateConfig
from resgate.contract.env import ENV_ARRIVAL_RATE, ENV_LOAD_SHAPE, ENV_USERS
from resgate.contract.errors import ConfigError, DependencyMissing
from resgate.contract.shape import encode_steps
from resgate.runner.guardrails import Window


def _locustfile(cfg: GateConfig) -> Path:
    return resolve_locustfile(cfg)


def preflight_load(cfg: GateConfig) -> None:
    """Locust must be installed and the locustfile must exist, before anything starts."""
    # find_spec, not import: importing locust would monkey-patch this process with gevent.
    if importlib.util.find_spec("locust") is None:
        raise DependencyMissing("Locust is not installed (pip install locust)")
    path = _locustfile(cfg)
    if path.suffix != ".py" or "," in str(path.resolve()):
        # Locust's -f takes a comma-separated list: the ledger plugin's file, then this one
        raise ConfigError(
            f"locustfile {cfg.load.locustfile!r} must be a .py file with no comma in its path",
            where=cfg.where("load.locustfile"),
        )


class LoadRun:
    """A running load: live windows for progress and guardrails, then the final stats and ledger."""

    def __init__(self, run: LocustRun, ledger_dir: Path, duration_s: float) -> None:
        self.run = run
        self.ledger_dir = ledger_dir
        self.duration_s = duration_s
        self.result: LocustResult | None = None
        self.started = time.time()

    def running(self) -> bool:
        return self.run.running

    def window(self, start: float, end: float) -> Window | None:
        """Requests, failures and p95 of the whole seconds in [start, end); None if nothing was reported."""
        points = [p for p in read_live(self.ledger_dir, since_ts=int(start) - 1) if p["ts"] < int(end)]
        if not points:
            return None
        req = sum(p["requests"] for p in points)
        fail = sum(p["failures"] for p in points)
        p95s = [p["p95_ms"] for p in points if p["p95_ms"] is not None]
        return Window(ts=end, requests=req, failures=fail, p95_ms=max(p95s) if p95s else None)

    def first_request(self, timeout_s: float) -> float | None:
        """Wait (at most ``timeout_s``) for the load's first reported request; the time it was seen, or None
        when Locust ended or the time ran out first. Locust's users start a moment after its process (seconds
        on a busy machine): the fault schedule and the baseline count from here."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.running():
            if any(p["requests"] for p in read_live(self.ledger_dir)):
                return time.time()
            time.sleep(0.1)
        return None

    def total_requests(self) -> int:
        if self.result is not None:
            return self.result.total_requests
        return sum(p["requests"] for p in read_live(self.ledger_dir))

    def finish(self) -> None:
        """Wait for Locust to end by itself (its -t), then collect stats and the merged ledger."""
        self.result = self.run.wait(timeout=60)

    def stop(self) -> None:
        """Stop the load now (idempotent); never leaves a Locust process behind."""
        if self.result is None:
            self.result = self.run.stop()

    def ledger_path(self) -> Path | None:
        return self.result.ledger_path if self.result is not None else None

    def nodes(self) -> list[dict[str, Any]]:
        """One row per Locust worker (``loadgen.run.node_rows``); ``[]`` for a single-process load."""
        return [dict(n) for n in self.result.nodes] if self.result is not None else []

    def stats(self) -> list[dict[str, Any]]:
        return list(self.result.stats) if self.result is not None else []

    def live_lines(self) -> list[dict[str, Any]]:
        """Every Locust process's per-second live lines (``loadgen.stats``), as the Fargate load task uploads
        them (``load_live.jsonl``): from the test's start to its stop, zero-filled, so they say when the
        load ran even where no request completed."""
        out: list[dict[str, Any]] = []
        if not self.ledger_dir.is_dir():  # removed at cleanup
            return out
        for line in iter_lines(self.ledger_dir, prefix=LIVE_PREFIX):
            try:
                out.append(json.loads(line))
            except ValueError:  # a torn last line of a killed process
                continue
        return out

    def figures(self) -> dict[str, Any]:
        """Key figures of the load for the report (requests, error ratio, rps, p50/p95/p99)."""
        if self.result is None or not self.result.stats:
            return {}
        s = summarize(self.result.stats)
        out: dict[str, Any] = {"requests": s.get("requests"), "failures": s.get("failures")}
        if s.get("error_ratio") is not None:
            out["error ratio"] = f"{s['error_ratio']:.2%}"
        if s.get("rps"):
            out["throughput"] = f"{s['rps']:.1f} req/s"
        for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
            if s.get(k) is not None:
                out[k.replace("_ms", "")] = f"{s[k]:.0f} ms"
        out["ledger records"] = self.result.ledger_records
        out.update(intended_figures(self.result.ledger_path))
        if self.result.nodes:
            parts = ", ".join(f"{n['node']} {n['records']}{_part_trouble(n)}" for n in self.result.nodes)
            out["load workers"] = f"{len(self.result.nodes)}: {parts}"
        return out


def _part_trouble(row: dict[str, Any]) -> str:
    """`` (INCOMPLETE: <why>)`` for a worker whose ledger or stream part is not whole, else ``""``."""
    why = [row["reason"]] if not row["complete"] else []
    if not row.get("stream_complete", True) and row.get("stream_reason") not in why:
        why.append(f"stream part: {row.get('stream_reason')}")
    return f" (INCOMPLETE: {'; '.join(map(str, why))})" if why else ""


def intended_figures(ledger_path: Path) -> dict[str, str]:
    """For an open-model load (records with ``intended_latency_ms``): the p99 from the send and from the
    intended start side by side, and the gap between them, which is what coordinated omission would have
    hidden; ``{}`` for a closed-model ledger. Percentiles from the merged histograms (Locust's buckets)."""
    sent: dict[float, int] = {}
    intended: dict[float, int] = {}
    if not ledger_path.is_file():
        return {}
    for r in iter_records(ledger_path):
        if r.get("intended_latency_ms") is None:
            continue
        for hist, ms in ((sent, r["latency_ms"]), (intended, r["intended_latency_ms"])):
            b = locust_bucket(float(ms))
            hist[b] = hist.get(b, 0) + 1
    p_sent, p_intended = percentile(sent, 99.0), percentile(intended, 99.0)
    if p_sent is None or p_intended is None:
        return {}
    return {
        "p99 from send": f"{p_sent:.0f} ms",
        "p99 from intended start": f"{p_intended:.0f} ms ({p_intended - p_sent:+.0f} ms unseen at send)",
    }


def load_env(cfg: GateConfig) -> dict[str, str]:
    """The locustfile's settings the config implies: the open model's rate and the user count it is shared
    by (``loadgen.load_config``), and the load shape's steps (``RESGATE_LOAD_SHAPE``: the ``overload``
    faults in their ``factor`` form, :func:`resgate.config.faults.shape_steps`); ``{}`` for neither."""
    out: dict[str, str] = {}
    if cfg.load.arrival_rate is not None:
        out.update({ENV_ARRIVAL_RATE: f"{cfg.load.arrival_rate:g}", ENV_USERS: str(cfg.load.users)})
    steps = shape_steps(cfg.faults)
    if steps:
        out[ENV_LOAD_SHAPE] = encode_steps(steps)
    return out


def start_load(cfg: GateConfig, host: str, ledger_dir: Path) -> LoadRun:
    """Start Locust against ``host`` with the config's load profile; the ledger goes to ``ledger_dir``."""
    run = run_locust(
        host,
        users=cfg.load.users,
        spawn_rate=cfg.load.spawn_rate,
        duration_s=cfg.load.duration_s,
        ledger_dir=ledger_dir,
        locustfile=_locustfile(cfg),
        env={**load_env(cfg), **cfg.load.env},
        workers=cfg.load.workers,
    )
    return LoadRun(run, ledger_dir, cfg.load.duration_s)
