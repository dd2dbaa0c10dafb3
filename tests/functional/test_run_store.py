"""One evidence seam: a run folder and an S3 prefix behind the same RunStore protocol give the same files and
the same check results, because the local runner and the Lambdas call the same functions on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resgate.checks.compose import verdict
from resgate.checks.registry import parse_thresholds
from resgate.checks.result import UNKNOWN, CheckResult
from resgate.contract.errors import EvidenceMissing
from resgate.evidence.run_files import write_run_files
from resgate.evidence.s3 import S3Store
from resgate.evidence.sources import Settled, Sources, run_check
from resgate.evidence.store import FolderStore, RunStore, ledger, read_jsonl, write_jsonl
from resgate.evidence.verdict import verdict_record
from tests.functional.support import FIXTURES

RESULTS = [
    CheckResult("slo", True, {"p95_ms": 41.5, "requests": 1200, "error_ratio": 0.0}),
    CheckResult(
        "retryable", False, {"not_allowed": 2}, [{"kind": "500", "line": 7}, {"kind": "500", "line": 9}]
    ),
    CheckResult.unknown("integrity", "the system did not quiesce, so state cannot be compared: lag"),
]
FAULTS = [
    {
        "ts": 10.0,
        "fault_id": "f1",
        "kind": "stop_task",
        "target": "gateway",
        "event": "injected",
        "detail": {},
    },
    {"ts": 12.5, "fault_id": "f1", "kind": "stop_task", "target": "gateway", "event": "recovered"},
]
HEALTH = [
    {"ts": 9.0, "service": "gateway", "replica": "gateway-0", "healthy": True},
    {"ts": 11.0, "service": "gateway", "replica": "gateway-0", "event": "stopped"},
    {"ts": 12.0, "service": "gateway", "replica": "gateway-0#2", "healthy": True},
]


def _stores(tmp_path: Path, evidence) -> list[RunStore]:
    return [FolderStore(tmp_path, evidence.key), S3Store(evidence.bucket, evidence.prefix, evidence.key)]


def _fill(store: RunStore) -> None:
    """The run data the earlier phases write (locally the runner, on AWS the load task and timeline)."""
    write_jsonl(store, "faults", FAULTS)
    write_jsonl(store, "health", HEALTH)
    write_jsonl(store, "load_stats", json.loads((FIXTURES / "locust_stats.json").read_text()))
    store.write_text("ledger", (FIXTURES / "ledger_small.jsonl").read_text())


def test_a_folder_and_an_s3_prefix_get_byte_identical_closing_files_for_the_same_inputs(tmp_path, evidence):
    record = verdict_record(
        evidence.key, verdict(RESULTS), error=None, started_at=100.0, ended_at=160.5, guardrail_tripped=None
    )
    files = []
    for store in _stores(tmp_path, evidence):
        write_jsonl(store, "faults", FAULTS)
        write_run_files(store, results=RESULTS, record=record, duration_s=60.5)
        files.append({n: store.read_text(n) for n in ("checks", "verdicts", "report", "junit")})

    assert files[0] == files[1]
    assert json.loads(files[0]["verdicts"])["result"] == "FAIL"
    assert [json.loads(line)["name"] for line in files[0]["checks"].splitlines()] == [
        "slo",
        "retryable",
        "integrity",
    ]
    assert "`f1` (stop_task, target `gateway`): recovered" in files[0]["report"]


def test_verdict_json_is_written_last_in_both_stores(tmp_path, evidence):
    record = verdict_record(
        evidence.key, verdict(RESULTS), error=None, started_at=None, ended_at=1.0, guardrail_tripped=None
    )
    for store in _stores(tmp_path, evidence):
        order: list[str] = []
        write_text = store.write_text

        def recording(name: str, text: str, _w=write_text, _o=order) -> str:
            _o.append(name)
            return _w(name, text)

        store.write_text = recording  # type: ignore[method-assign]
        write_run_files(store, results=RESULTS, record=record)
        assert order[-1] == "verdicts" and set(order) == {"checks", "phases", "report", "junit", "verdicts"}


@pytest.mark.parametrize(("name", "body"), [("slo", {"p95_ms": 2000}), ("recovery", {}), ("retryable", {})])
def test_both_stores_give_every_file_backed_check_the_same_result(tmp_path, evidence, name, body):
    thresholds = parse_thresholds(name, body, f"checks.{name}")
    sources = Sources(run_id=evidence.key.run_id, duration_s=30.0)
    results = []
    for store in _stores(tmp_path, evidence):
        _fill(store)
        results.append(run_check(name, store, thresholds, sources).to_dict())

    # Each result carries how long its check took (checks.jsonl, the report); the rest is identical.
    took = [r.pop("duration_s") for r in results]
    assert all(isinstance(t, float) and t >= 0 for t in took)
    assert results[0] == results[1]
    assert results[0]["valid"] in (True, False)


def test_a_missing_ledger_is_unknown_with_the_same_reason_shape_in_both_stores(tmp_path, evidence):
    thresholds = parse_thresholds("retryable", {}, "checks.retryable")
    for store in _stores(tmp_path, evidence):
        result = run_check("retryable", store, thresholds, Sources(run_id="r"))
        assert result.valid == UNKNOWN and result.duration_s is not None
        assert result.error == f"no client ledger was written ({store.uri('ledger')})"
        with pytest.raises(EvidenceMissing):
            read_jsonl(store, "faults")


def test_state_checks_are_unknown_when_the_system_did_not_settle_before_any_source_is_read(
    tmp_path, evidence
):
    store = FolderStore(tmp_path, evidence.key)
    unsettled = Sources(run_id="r", settled=Settled(False, "consumer lag 12"))
    for name in ("integrity", "replay"):
        result = run_check(name, store, None, unsettled)  # no source is needed to refuse
        assert result.valid == UNKNOWN
        assert result.error == "the system did not quiesce, so state cannot be compared: consumer lag 12"


def test_the_ledger_view_reads_the_same_records_from_both_stores(tmp_path, evidence):
    counts = []
    for store in _stores(tmp_path, evidence):
        _fill(store)
        view = ledger(store)
        counts.append((sum(1 for _ in view), sum(1 for _ in view)))
    assert counts[0] == counts[1] and counts[0][0] > 0 and counts[0][0] == counts[0][1]
