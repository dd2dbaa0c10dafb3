"""Property-based tests: a random clean history is valid; one injected anomaly is always found and named."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resgate.checks import histogram as h
from resgate.checks import recovery as rc
from resgate.checks import retryable as rt
from resgate.checks import slo
from resgate.checks.compose import run_checks, verdict
from resgate.checks.ledger import LedgerRecord
from resgate.checks.result import UNKNOWN, CheckResult, merge_validity
from resgate.contract.constants import DEFAULT_RTO_SECONDS

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

buckets = st.integers(min_value=0, max_value=20_000).map(float)
histograms = st.dictionaries(buckets, st.integers(min_value=1, max_value=50), min_size=1, max_size=15)
percents = st.sampled_from([1, 10, 25, 50, 75, 90, 95, 99, 99.9, 100])


# ------------------------------------------------------------------ histograms


@SETTINGS
@given(histograms, percents)
def test_percentile_matches_nearest_rank_on_the_sorted_samples(hist, p):
    samples = sorted(ms for ms, n in hist.items() for _ in range(n))
    rank = max(1, math.ceil(p * len(samples) / 100 - 1e-9))
    assert h.percentile(hist, p) == samples[rank - 1]


@SETTINGS
@given(st.lists(histograms, min_size=1, max_size=5), percents)
def test_merged_percentile_lies_between_the_parts_percentiles(parts, p):
    merged = h.merge(parts)
    assert h.total(merged) == sum(h.total(x) for x in parts)
    each = [h.percentile(x, p) for x in parts]
    assert min(each) <= h.percentile(merged, p) <= max(each)
    assert h.merge(reversed(parts)) == merged


@SETTINGS
@given(histograms)
def test_percentiles_never_decrease_with_the_percent(hist):
    values = [h.percentile(hist, p) for p in (1, 50, 90, 95, 99, 100)]
    assert values == sorted(values)


# ------------------------------------------------------------------ slo


def _entry(name, hist, failures=0):
    return {
        "name": name,
        "method": "POST",
        "num_requests": sum(hist.values()),
        "num_failures": failures,
        "response_times": {str(k): v for k, v in hist.items()},
    }


fast_histograms = st.dictionaries(
    st.integers(min_value=1, max_value=200).map(float),
    st.integers(min_value=1, max_value=40),
    min_size=1,
    max_size=8,
)


@SETTINGS
@given(st.lists(fast_histograms, min_size=1, max_size=4))
def test_slo_clean_run_is_valid(hists):
    stats = [_entry(f"ep{i}", x) for i, x in enumerate(hists)]
    ev = slo.SloEvidence.from_dict({"stats": stats, "duration_s": 10.0})
    th = slo.SloThresholds.from_dict({"p95_ms": 200, "p99_ms": 200, "max_error_ratio": 0.0})
    assert slo.check(ev, th).valid is True


@SETTINGS
@given(st.lists(fast_histograms, min_size=1, max_size=4), st.data())
def test_slo_slow_endpoint_is_always_found_and_named(hists, data):
    victim = data.draw(st.integers(min_value=0, max_value=len(hists) - 1))
    n = sum(hists[victim].values())
    # At least as many slow requests as fast ones puts that endpoint's p95 above the limit.
    hists[victim] = {**hists[victim], 5000.0: data.draw(st.integers(min_value=n, max_value=n + 50))}
    stats = [_entry(f"ep{i}", x) for i, x in enumerate(hists)]
    ev = slo.SloEvidence.from_dict({"stats": stats, "duration_s": 10.0})
    r = slo.check(ev, slo.SloThresholds.from_dict({"p95_ms": 200}))
    assert r.valid is False
    named = {e.get("endpoint") for e in r.examples if e["kind"] == "latency_above_limit"}
    assert f"POST ep{victim}" in named


# ------------------------------------------------------------------ retryable

ALLOWED_FAILURES = [
    (409, "fail", None),
    (429, "fail", 1.0),
    (503, "info", 2.0),
    ("conn_refused", "info", None),
    ("conn_reset", "info", None),
    ("timeout", "info", None),
]


@st.composite
def clean_ledgers(draw):
    n = draw(st.integers(min_value=1, max_value=40))
    out = []
    for i in range(n):
        if draw(st.booleans()):
            status, outcome, ra = draw(st.sampled_from([(200, "ok", None), (201, "ok", None)]))
        else:
            status, outcome, ra = draw(st.sampled_from(ALLOWED_FAILURES))
        out.append(
            LedgerRecord.from_dict(
                {
                    "ts": 1000.0 + i * 0.1,
                    "op": draw(st.sampled_from(["submit_order", "cancel_order", "rfq", "get_order"])),
                    "client_id": f"c{i % 3}",
                    "idempotency_key": f"key-{i}",
                    "status": status,
                    "outcome": outcome,
                    "latency_ms": draw(st.floats(min_value=0, max_value=5000)),
                    "retry_after": ra,
                }
            )
        )
    return out


@SETTINGS
@given(clean_ledgers())
def test_retryable_clean_ledger_is_valid(records):
    r = rt.check(rt.RetryableEvidence(records=tuple(records)), rt.RetryableThresholds())
    assert r.valid is True
    assert r.counts["requests"] == len(records)


@SETTINGS
@given(clean_ledgers(), st.data(), st.sampled_from([500, 502, 504]))
def test_retryable_one_injected_5xx_is_always_found_and_named(records, data, status):
    pos = data.draw(st.integers(min_value=0, max_value=len(records)))
    bad = LedgerRecord.from_dict(
        {
            "ts": 999.0,
            "op": "submit_order",
            "client_id": "c9",
            "idempotency_key": "the-bad-one",
            "status": status,
            "outcome": "info",
            "latency_ms": 3.0,
            "error": "Internal Server Error",
        }
    )
    records.insert(pos, bad)
    r = rt.check(rt.RetryableEvidence(records=tuple(records)), rt.RetryableThresholds())
    assert r.valid is False
    assert r.counts["not_allowed"] == 1 and r.counts["server_error_5xx"] == 1
    assert [(e["class"], e["idempotency_key"]) for e in r.examples] == [("server_error_5xx", "the-bad-one")]


# ------------------------------------------------------------------ recovery


@st.composite
def clean_fault_runs(draw):
    """Faults spaced 100 s apart on random services, each healing within the RTO."""
    n = draw(st.integers(min_value=1, max_value=5))
    faults, health, heal_times = [], [], []
    services = ["gateway", "matcher", "projector"]
    for svc in services:
        health.append({"ts": 0.0, "service": svc, "replica": "0", "event": "healthy"})
        health.append({"ts": 0.0, "service": svc, "replica": "1", "event": "healthy"})
    for i in range(n):
        t0 = 100.0 * (i + 1)
        svc = draw(st.sampled_from(services))
        replica = draw(st.sampled_from(["0", "1"]))
        heal = draw(st.floats(min_value=0.5, max_value=DEFAULT_RTO_SECONDS - 0.5))
        heal_times.append(heal)
        faults.append(
            {"ts": t0, "fault_id": f"f{i}", "kind": "process_kill", "target": svc, "event": "injected"}
        )
        health.append({"ts": t0 + 0.1, "service": svc, "replica": replica, "event": "killed"})
        health.append({"ts": t0 + 0.2, "service": svc, "replica": replica, "event": "started"})
        health.append({"ts": t0 + heal, "service": svc, "replica": replica, "event": "healthy"})
    end = 100 * (n + 1) + 60
    # two requests a second, each served in 5 ms, through the whole run
    requests = [{"start": t / 2, "end": t / 2 + 0.005, "ok": True} for t in range(0, 2 * end)]
    return {"faults": faults, "health": health, "requests": requests, "load_ended_ts": float(end)}, heal_times


@SETTINGS
@given(clean_fault_runs())
def test_recovery_clean_run_is_valid(run):
    d, heal_times = run
    r = rc.check(rc.RecoveryEvidence.from_dict(d), rc.RecoveryThresholds())
    assert r.valid is True, r.examples
    assert r.counts["rto_met"] == len(heal_times)
    for row, heal in zip(r.details["faults"], heal_times, strict=True):
        assert abs(row["time_to_healthy_s"] - heal) < 1e-6


@SETTINGS
@given(clean_fault_runs(), st.data())
def test_recovery_one_fault_healed_after_the_rto_is_always_found_and_named(run, data):
    d, heal_times = run
    victim = data.draw(st.integers(min_value=0, max_value=len(heal_times) - 1))
    late = data.draw(st.floats(min_value=DEFAULT_RTO_SECONDS + 0.5, max_value=90.0))
    t0 = 100.0 * (victim + 1)
    fault_id = f"f{victim}"
    svc = next(f["target"] for f in d["faults"] if f["fault_id"] == fault_id)
    # Move the victim's "healthy" observation past the RTO.
    for o in d["health"]:
        if (
            o["service"] == svc
            and o["event"] == "healthy"
            and abs(o["ts"] - (t0 + heal_times[victim])) < 1e-9
        ):
            o["ts"] = t0 + late
    d["health"].sort(key=lambda o: o["ts"])
    r = rc.check(rc.RecoveryEvidence.from_dict(d), rc.RecoveryThresholds())
    assert r.valid is False
    missed = [e for e in r.examples if e["kind"] == "rto_missed"]
    assert [e["fault_id"] for e in missed] == [fault_id]


# ------------------------------------------------------------------ compose


@SETTINGS
@given(st.lists(st.sampled_from([True, False, UNKNOWN, "crash"]), min_size=1, max_size=8))
def test_verdict_is_the_worst_of_all_checks_with_crashes_as_unknown(kinds):
    def make(kind, i):
        if kind == "crash":

            def boom():
                raise ValueError(f"check {i} crashed")

            return boom
        return lambda: CheckResult(name=f"c{i}", valid=kind)

    results = run_checks({f"c{i}": make(k, i) for i, k in enumerate(kinds)})
    assert [r.name for r in results] == [f"c{i}" for i in range(len(kinds))]
    expected = merge_validity(UNKNOWN if k == "crash" else k for k in kinds)
    v = verdict(results)
    assert v.valid == expected
    assert v.passed is (expected is True)
    assert len(v.failed) == kinds.count(False)
    assert len(v.unknown) == kinds.count(UNKNOWN) + kinds.count("crash")


# ------------------------------------------------------------------ ledger


@SETTINGS
@given(
    st.fixed_dictionaries(
        {
            "ts": st.floats(min_value=0, max_value=2e9),
            "op": st.sampled_from(["submit_order", "cancel_order", "rfq", "get_order"]),
            "client_id": st.text(min_size=1, max_size=8),
            "idempotency_key": st.one_of(st.none(), st.text(min_size=1, max_size=12)),
            "status": st.one_of(
                st.integers(100, 599), st.sampled_from(["timeout", "conn_reset", "conn_refused"])
            ),
            "outcome": st.sampled_from(["ok", "fail", "info"]),
            "latency_ms": st.floats(min_value=0, max_value=1e6),
        },
        optional={
            "order_id": st.text(min_size=1, max_size=8),
            "retry_after": st.floats(min_value=0, max_value=3600),
            "error": st.text(max_size=30),
            "attempt": st.integers(0, 10),
            "price": st.floats(min_value=0, max_value=1e6),
        },
    )
)
def test_ledger_records_round_trip_through_to_dict(d):
    r = LedgerRecord.from_dict(d)
    assert LedgerRecord.from_dict(r.to_dict()) == r
