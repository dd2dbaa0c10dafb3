"""The open model and coordinated omission (``loadgen.pacing``, ``checks.slo.latency_from``).

A paced user starts its tasks on a fixed schedule and each request is also timed from its intended start,
as wrk2 does. On a hand-made timeline with a 5 s stall, latency from the send under-reports the stall (one
slow sample among hundreds: the requests the stall kept from being sent are never timed) while latency
from the intended start reports it; the SLO check judges either, at its limit's exact boundary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadgen.pacing import Pacer, intended_latency_ms, interval_for
from resgate.checks import histogram as h
from resgate.checks import slo
from resgate.checks.result import CheckResult
from resgate.checks.slo.phases import locust_bucket
from resgate.contract.errors import ConfigError, EvidenceMissing
from resgate.runner.load import intended_figures

SERVICE_MS = 10.0
STALL_FROM, STALL_TO = 10.0, 15.0


def service_done(sent: float) -> float:
    """When a request sent at ``sent`` is answered: 10 ms, or at the end of the stall for one caught in it."""
    done = sent + SERVICE_MS / 1000
    return (
        STALL_TO + SERVICE_MS / 1000
        if STALL_FROM <= sent < STALL_TO or STALL_FROM <= done < STALL_TO
        else done
    )


def paced_user(duration_s: float = 30.0, interval_s: float = 0.1) -> list[dict]:
    """One paced user against :func:`service_done`: the ledger records it would write."""
    pacer, now, records = Pacer(interval_s), 0.0, []
    intended: float | None = None
    while now < duration_s:
        done = service_done(now)
        latency = (done - now) * 1000
        records.append(
            {
                "ts": now,
                "op": "get_order",
                "client_id": "c1",
                "idempotency_key": None,
                "status": 200,
                "outcome": "ok",
                "latency_ms": round(latency, 3),
                "intended_ts": now if intended is None else intended,
                "intended_latency_ms": round(intended_latency_ms(latency, now, intended), 3),
            }
        )
        now = done + pacer.wait(done)
        intended = pacer.intended
    return records


def test_a_pacer_waits_one_interval_first_then_keeps_the_schedule() -> None:
    p = Pacer(0.5)
    assert p.wait(100.0) == 0.5 and p.intended == 100.5
    assert p.wait(100.6) == pytest.approx(0.4) and p.intended == 101.0


def test_a_late_pacer_starts_at_once_and_does_not_move_its_schedule() -> None:
    p = Pacer(0.5)
    p.wait(100.0)
    assert p.wait(103.0) == 0.0 and p.intended == 101.0  # 2 s late: the schedule stays where it was
    assert p.wait(103.0) == 0.0 and p.intended == 101.5


@pytest.mark.parametrize("interval", [0.0, -1.0, float("inf"), float("nan")])
def test_a_pacer_needs_a_finite_positive_interval(interval: float) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        Pacer(interval)


def test_users_share_the_rate_evenly() -> None:
    assert interval_for(100.0, 20) == 0.2
    assert interval_for(0.5, 1) == 2.0
    with pytest.raises(ValueError):
        interval_for(0.0, 1)
    with pytest.raises(ValueError):
        interval_for(1.0, 0)


def test_intended_latency_adds_how_late_the_request_was_sent_and_never_less() -> None:
    assert intended_latency_ms(10.0, sent_ts=5.5, intended_ts=5.0) == 510.0
    assert intended_latency_ms(10.0, sent_ts=5.0, intended_ts=5.0) == 10.0
    assert intended_latency_ms(10.0, sent_ts=4.9, intended_ts=5.0) == 10.0  # early: it was not waiting
    assert intended_latency_ms(10.0, sent_ts=5.0, intended_ts=None) == 10.0


def test_a_stall_is_under_reported_from_the_send_and_not_from_the_intended_start() -> None:
    records = paced_user()
    sent = h.from_samples(r["latency_ms"] for r in records)
    intended = h.from_samples(r["intended_latency_ms"] for r in records)
    # one request sat through the stall; the ~50 it kept from being sent were timed only once sent
    assert sum(1 for r in records if r["latency_ms"] > 1000) == 1
    assert h.percentile(sent, 99) == pytest.approx(SERVICE_MS)
    assert sum(1 for r in records if r["intended_latency_ms"] > 1000) >= 40
    assert h.percentile(intended, 99) > 4000
    assert max(r["intended_latency_ms"] for r in records) == pytest.approx(5000.0, abs=SERVICE_MS)


def judge(records: list[dict], **thresholds: object) -> CheckResult:
    t = slo.SloThresholds.from_dict(thresholds)
    stats = slo.stats_from_ledger(records, latency_from=t.latency_from)
    return slo.check(slo.evidence_from_run(stats, duration_s=30.0), t)


def test_the_slo_check_judges_the_intended_start_latency_at_its_limits_exact_boundary() -> None:
    records = paced_user()
    p99 = h.percentile(h.from_samples(locust_bucket(r["intended_latency_ms"]) for r in records), 99)
    assert p99 is not None and p99 > 4000
    assert judge(records, p99_ms=p99, latency_from="intended").valid is True
    assert judge(records, p99_ms=p99 - 1, latency_from="intended").valid is False
    # the same run, judged from the send, passes a limit the stall broke
    assert judge(records, p99_ms=SERVICE_MS, latency_from="sent").valid is True


def test_judging_the_intended_start_of_a_closed_model_ledger_is_missing_evidence() -> None:
    records = [{k: v for k, v in r.items() if not k.startswith("intended")} for r in paced_user(1.0)]
    with pytest.raises(EvidenceMissing, match="no intended start"):
        slo.stats_from_ledger(records, latency_from="intended")
    assert sum(e["num_requests"] for e in slo.stats_from_ledger(records, latency_from="sent")) == len(records)


def test_latency_from_must_be_sent_or_intended() -> None:
    assert slo.SloThresholds.from_dict({}).latency_from == "sent"
    with pytest.raises(ConfigError) as e:
        slo.SloThresholds.from_dict({"latency_from": "received"})
    assert e.value.where == "thresholds.slo.latency_from"


def test_the_report_shows_the_p99_from_the_send_and_from_the_intended_start(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text("".join(json.dumps(r) + "\n" for r in paced_user()))
    figures = intended_figures(ledger)
    assert figures["p99 from send"] == "10 ms"
    assert figures["p99 from intended start"].endswith("ms unseen at send)")
    assert float(figures["p99 from intended start"].split()[0]) > 4000
    closed = tmp_path / "closed.jsonl"
    closed.write_text(json.dumps({"latency_ms": 1.0}) + "\n")
    assert intended_figures(closed) == {}
