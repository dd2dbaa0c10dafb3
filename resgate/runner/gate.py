"""`resgate run`: one gate run, phase by phase, against the local target; returns the exit code.

Phases: validate/preflight → start target → baseline + load → faults under load (guardrails) → quiesce →
assertions → verdict and evidence. Every exit path (pass, fail, error, Ctrl-C, SIGTERM) stops the load,
reverts the faults, stops every process and writes what evidence there is.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loadgen.ledger import merge_ledgers
from resgate.checks.compose import verdict as merge_verdict
from resgate.checks.result import CheckResult
from resgate.config.runnable import check_runnable
from resgate.config.schema import GateConfig, check_blast_radius
from resgate.contract.errors import ConfigError, GateError
from resgate.contract.layout import TABLES, RunKey
from resgate.evidence.figure import run_figure
from resgate.evidence.phases import phase_rows
from resgate.evidence.run_files import write_run_files
from resgate.evidence.scorecard import Scorecard, build_scorecard, with_score
from resgate.evidence.sources import Settled, Sources
from resgate.evidence.store import FolderStore, write_jsonl
from resgate.evidence.verdict import verdict_record
from resgate.runner.assertions import run_assertions
from resgate.runner.consumer_groups import preflight_consumer_groups
from resgate.runner.faults import FaultRunner
from resgate.runner.guardrails import SETTLE_S as GUARDRAIL_SETTLE_S
from resgate.runner.guardrails import GuardrailWatcher
from resgate.runner.leader import preflight_leaders
from resgate.runner.load import LoadRun, preflight_load, start_load
from resgate.runner.local_target import LocalTarget
from resgate.runner.progress import Progress
from resgate.runner.quiesce import QuiesceResult, wait_quiet

# The fault clock starts at the load's first request; a load that makes none this long after its start is
# a gate error (fail closed), not a run without faults.
FIRST_REQUEST_TIMEOUT_S = 30.0


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived during the run."""


@dataclass
class RunOutcome:
    """What a gate run produced: exit code, verdict dict, results and where the evidence is."""

    exit_code: int
    verdict: dict[str, Any]
    results: list[CheckResult] = field(default_factory=list)
    evidence_dir: Path | None = None
    scorecard: Scorecard | None = None


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


class GateRun:
    """Holds the state of one run so that cleanup and evidence can happen from any point."""

    def __init__(
        self,
        cfg: GateConfig,
        *,
        evidence_root: str | None = None,
        progress: Progress | None = None,
        config_text: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.key = RunKey.new(cfg.name)
        self.root = evidence_root or cfg.evidence.root
        self.progress = progress or Progress()
        self.config_text = config_text
        self.store: FolderStore | None = None
        self.target: LocalTarget | None = None
        self.load: LoadRun | None = None
        self.faults: FaultRunner | None = None
        self.health_events: list[dict[str, Any]] = []
        self.results: list[CheckResult] = []
        self.quiesce: QuiesceResult | None = None
        self.guardrail_trip: str | None = None
        self.t_start = time.time()
        self.load_window: tuple[float, float] | None = None
        self._stop_sampling = threading.Event()
        self._sampler: threading.Thread | None = None
        self._run_data_written = False

    # -- phases -----------------------------------------------------------------------------------
    def preflight(self) -> None:
        self.progress.set_phase("preflight", f"gate {self.cfg.name}, run {self.key.run_id}")
        check_blast_radius(self.cfg)
        check_runnable(self.cfg)
        preflight_load(self.cfg)

    def start_target(self) -> None:
        self.progress.set_phase("target")
        self.target = LocalTarget(
            self.cfg,
            self.key.run_id,
            on_event=self._on_supervisor_event,
            say=self.progress.line,
            kept_logs=self.store.dir / "logs" if self.store is not None else None,
        )
        self.target.start_infra()
        self.target.setup()
        self.target.start_services()
        if self.target.supervisor is not None:
            preflight_consumer_groups(self.cfg, self.target.supervisor)
            preflight_leaders(self.cfg.faults, self.target.supervisor)
        self.progress.line(f"target ready at {self.target.host}")
        self._sampler = threading.Thread(target=self._sample_health, name="health-sampler", daemon=True)
        self._sampler.start()

    def _sample_health(self) -> None:
        """Record every replica's health once a second (the recovery check's observations)."""
        while not self._stop_sampling.wait(1.0):
            sup = self.target.supervisor if self.target else None
            if sup is None:
                return
            now = time.time()
            for r in sup.replicas():
                self.health_events.append(
                    {
                        "ts": now,
                        "service": r.service,
                        "replica": r.replica_id,
                        "healthy": r.state == "healthy",
                    }
                )

    def _on_supervisor_event(self, ev: dict[str, Any]) -> None:
        self.health_events.append(ev)
        if self.progress.phase in ("load", "quiesce", "faults"):
            self.progress.event(ev)

    def run_load_and_faults(self) -> None:
        assert self.target is not None and self.store is not None
        cfg = self.cfg
        self.progress.set_phase(
            "load",
            f"{cfg.load.users} users for {cfg.load.duration_s:.0f}s "
            f"(baseline {cfg.load.baseline_s:.0f}s, {len(cfg.faults)} faults)",
        )
        self.load_dir = Path(tempfile.mkdtemp(prefix="resgate-load-"))
        self.load = start_load(cfg, self.target.host, self.load_dir)
        load_start = self.load.first_request(FIRST_REQUEST_TIMEOUT_S)
        if load_start is None:
            if self.load.running():
                raise GateError(
                    f"the load made no request within {FIRST_REQUEST_TIMEOUT_S:.0f} s of its start"
                )
            load_start = time.time()  # Locust ended at once: finish() below reports why
        self.faults = FaultRunner(
            self.target, cfg.faults, on_event=self.progress.event, ledger_dir=self.load_dir
        )
        self.faults.start(load_start)
        watcher = GuardrailWatcher(cfg.guardrails, self._trip, started_ts=load_start)
        deadline = load_start + cfg.load.duration_s + 60  # Locust's own -t ends it; this is the backstop
        next_tick = load_start + cfg.guardrails.window_s
        while self.load.running():
            if time.time() > deadline:
                raise GateError("the load did not stop on time")
            time.sleep(0.2)
            if time.time() >= next_tick + GUARDRAIL_SETTLE_S:  # its last second written by every process
                w = self.load.window(next_tick - cfg.guardrails.window_s, next_tick)
                next_tick += cfg.guardrails.window_s
                if w is not None:
                    if self.progress.phase == "load" and time.time() - load_start >= cfg.load.baseline_s:
                        self.progress.set_phase("faults")
                    self.progress.live(
                        w.requests / cfg.guardrails.window_s,
                        w.error_ratio,
                        w.p95_ms,
                        self.load.total_requests(),
                    )
                    watcher.observe(w)
        self.load_window = (load_start, time.time())
        self.load.finish()
        if self.faults.pending():  # faults scheduled after the end of the load never run
            self.faults.abort("load ended")
        self.faults.revert_all()
        self.faults.join(5)
        if any(f.kind == "overload" for f in cfg.faults) and self.load.ledger_path() is not None:
            merge_ledgers(self.load_dir)  # a burst stopped after Locust's own merge: its last lines too
        self.progress.line(f"load finished: {self.load.total_requests()} requests")

    def _trip(self, reason: str) -> None:
        self.guardrail_trip = reason
        self.progress.line(f"GUARDRAIL tripped: {reason}; aborting remaining faults")
        if self.faults is not None:
            self.faults.abort(f"guardrail: {reason}")

    def run_quiesce(self) -> None:
        assert self.target is not None
        self.progress.set_phase("quiesce", f"waiting up to {self.cfg.quiesce.timeout_s:.0f}s")
        self.quiesce = wait_quiet(
            self.target.supervisor,
            self.target.bootstrap,
            self.cfg.quiesce.consumer_groups,
            self.cfg.quiesce.timeout_s,
            drained_queries=self.cfg.quiesce.drained_queries,
            dsn=self.target.dsn,
            kafka=self.cfg.kafka,
        )
        q = self.quiesce
        self.progress.line(f"settled={q.settled} after {q.waited_s:.1f}s {q.reason}".rstrip())

    def run_assertions(self) -> None:
        assert self.target is not None and self.load is not None and self.store is not None
        self.progress.set_phase("assertions", ", ".join(self.cfg.enabled_checks()))
        self._stop_sampling.set()
        self._write_run_data()
        start, end = self.load_window or (self.t_start, time.time())
        q = self.quiesce
        sources = Sources(
            run_id=self.key.run_id,
            dsn=self.target.dsn,
            bootstrap=self.target.bootstrap,
            settled=Settled(q.settled, q.reason) if q is not None else None,
            duration_s=end - start,
            kafka=self.cfg.kafka,
        )
        self.results = run_assertions(self.cfg, self.store, sources, say=self.progress.line)

    # -- evidence and verdict ---------------------------------------------------------------------
    def finish(self, *, error: str | None, interrupted: bool) -> RunOutcome:
        results = self.results
        v = merge_verdict(results, unknown_is_failure=self.cfg.unknown_is_failure) if results else None
        verdict = verdict_record(
            self.key,
            v,
            error=(error or "interrupted") if (error or interrupted) else None,
            started_at=self.t_start,
            ended_at=time.time(),
            guardrail_tripped=self.guardrail_trip,
        )
        exit_code = verdict["exit_code"]
        card = self._write_evidence(verdict)
        if card is not None:
            verdict = with_score(verdict, card)
        return RunOutcome(exit_code, verdict, results, self.store.dir if self.store else None, card)

    def _write_run_data(self) -> None:
        """The run's own data, as the assertions read it: fault timeline, health, load stats, ledger.

        Written once: just before the assertions, or at the end for a run that never reached them. So
        ``faults.jsonl`` holds the fault timeline the checks judged (as the timeline Lambda's does on AWS),
        not the cleanup's later stops (docs/HOUSE.md, "run data")."""
        s = self.store
        if s is None or self._run_data_written:
            return
        self._run_data_written = True
        write_jsonl(s, "faults", self.faults.timeline() if self.faults else [])
        write_jsonl(s, "health", list(self.health_events))
        if self.load is not None:
            write_jsonl(s, "load_stats", self.load.stats() or [])
            if not s.exists("load_live"):  # written once: cleanup removes the load's folder afterwards
                write_jsonl(s, "load_live", self.load.live_lines())
            if self.load.nodes():
                write_jsonl(s, "load_nodes", self.load.nodes())
            self._evidence_ledger()

    def _write_evidence(self, verdict: dict[str, Any]) -> Scorecard | None:
        s = self.store
        if s is None:
            return None
        self._write_run_data()
        card = build_scorecard(self.results, phase_rows(s, self.results), verdict=str(verdict.get("result")))
        figures: dict[str, Any] = self.load.figures() if self.load is not None else {}
        if self.quiesce is not None:
            figures["quiesce"] = f"settled={self.quiesce.settled} in {self.quiesce.waited_s:.1f}s"
        plot = None
        try:
            plot_path = run_figure(s, s.path("plot"), title=f"gate {self.cfg.name}: run {self.key.run_id}")
            plot = plot_path.name if plot_path else None
        except Exception as e:  # a plot is nice to have; the evidence must still be written
            figures["plot_error"] = str(e)
        write_run_files(
            s,
            results=self.results,
            record=verdict,
            figures=figures,
            plot=plot,
            unknown_is_failure=self.cfg.unknown_is_failure,
            duration_s=time.time() - self.t_start,
            card=card,
        )
        return card

    def _evidence_ledger(self) -> Path | None:
        """Copy the merged ledger into the evidence folder once; checks read that copy, so the examples'
        ``file:line`` references point into the evidence."""
        if self.store is None or self.load is None:
            return None
        dest = self.store.path("ledger")
        if not dest.exists():
            src = self.load.ledger_path()
            if src is None or not src.exists():
                return None
            dest.parent.mkdir(parents=True, exist_ok=True)  # the ledger table's folder of this run
            shutil.copyfile(src, dest)
            stream = src.parent / TABLES["stream"]  # the market-data subscribers' ledger, when they ran
            if stream.exists():
                self.store.path("stream").parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(stream, self.store.path("stream"))
        return dest

    def _keep_logs(self) -> None:
        """Service logs and Locust's log go into the evidence (``logs/``); temp folders are removed."""
        if self.store is not None:
            logs = self.store.dir / "logs"
            for src in (self.target.log_dir if self.target else None, getattr(self, "load_dir", None)):
                if src is None or not Path(src).exists():
                    continue
                for f in Path(src).glob("*.log"):
                    logs.mkdir(exist_ok=True)
                    shutil.copyfile(f, logs / f.name)
        for src in (self.target.log_dir if self.target else None, getattr(self, "load_dir", None)):
            if src is not None:
                shutil.rmtree(src, ignore_errors=True)

    def cleanup(self) -> None:
        """Stop load, revert faults, stop processes — each step even if an earlier one fails."""
        self._stop_sampling.set()
        for step in (
            lambda: self.faults.abort("gate stopping") if self.faults else None,
            lambda: self.faults.revert_all() if self.faults else None,
            lambda: self.faults.join(1) if self.faults else None,  # an overload burst's child exits
            lambda: self.load.stop() if self.load else None,
            lambda: self.target.close() if self.target else None,
            lambda: self._evidence_ledger(),
            self._keep_logs,
        ):
            try:
                step()
            except Exception as e:
                self.progress.line(f"cleanup step failed: {e}")

    def run(self) -> RunOutcome:
        """Run the whole gate; never raises for gate errors (they become exit code 2)."""
        old = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
        error: str | None = None
        interrupted = False
        try:
            self.preflight()
            self.store = FolderStore(self.root, self.key)
            self.store.write_text("config", self.config_text or yaml.safe_dump(self.cfg.raw, sort_keys=False))
            self.start_target()
            self.run_load_and_faults()
            self.run_quiesce()
            self.run_assertions()
        except Interrupted as e:
            interrupted = True
            self.progress.line(f"interrupted by {e}; stopping load and faults")
        except KeyboardInterrupt:
            interrupted = True
            self.progress.line("interrupted; stopping load and faults")
        except (ConfigError, GateError) as e:
            error = str(e)
            self.progress.line(f"ERROR: {e}")
        except Exception as e:  # fail closed: an error in the gate itself is never a pass
            error = f"{type(e).__name__}: {e}"
            self.progress.line(f"ERROR (gate bug): {error}\n{traceback.format_exc()}")
        finally:
            # Further signals must not interrupt the cleanup itself.
            for s in old:
                signal.signal(s, signal.SIG_IGN)
            self.progress.set_phase("cleanup")
            self.cleanup()
            try:
                outcome = self.finish(error=error, interrupted=interrupted)
            finally:
                for s, h in old.items():
                    signal.signal(s, h)
        return outcome


def run_gate(
    cfg: GateConfig,
    *,
    evidence_root: str | None = None,
    progress: Progress | None = None,
    config_text: str | None = None,
) -> RunOutcome:
    """Run the gate described by ``cfg``; see :class:`RunOutcome`."""
    return GateRun(cfg, evidence_root=evidence_root, progress=progress, config_text=config_text).run()
