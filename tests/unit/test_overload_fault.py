"""The ``overload`` fault kind in the gate config (each bad field named, bounds at their edges), the
backpressure check's opt-in, and the gateway's admission limit (pure, no sockets)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from paperbroker.bugs import parse_bugs
from paperbroker.config import load_settings
from paperbroker.gateway_admission import Admission
from paperbroker.gateway_api import ApiError
from resgate.config.faults import OVERLOAD_END_MARGIN_S, OVERLOAD_MAX_IN_FLIGHT
from resgate.config.schema import load_config_text
from resgate.contract.errors import ConfigError, ConfigErrors

_BASE = """
gate: {name: burst}
target:
  local:
    services:
      - {name: gateway, command: [python3], expose: true}
load: {duration_s: 30, baseline_s: 5}
faults:
  - %s
%s
"""


def _cfg(fault: str, checks: str = "") -> Any:
    return load_config_text(_BASE % (fault, checks), "gate.yaml")


def _error(fault: str) -> str:
    with pytest.raises((ConfigError, ConfigErrors)) as e:
        _cfg(fault)
    return str(e.value)


def test_an_overload_fault_parses_with_its_defaults_and_targets_the_exposed_service() -> None:
    f = _cfg("{kind: overload, rps: 800, duration_s: 4, at_s: 6}").faults[0]
    assert f.kind == "overload" and f.target == "gateway"
    assert f.params == {"rps": 800.0, "duration_s": 4.0, "timeout_s": 3.0, "max_in_flight": 400}


@pytest.mark.parametrize(
    ("fault", "field"),
    [
        ("{kind: overload, duration_s: 4, at_s: 6}", "faults[0].rps"),
        ("{kind: overload, rps: 0.5, duration_s: 4, at_s: 6}", "faults[0].rps"),
        ("{kind: overload, rps: 5001, duration_s: 4, at_s: 6}", "faults[0].rps"),
        ("{kind: overload, rps: 100, duration_s: 0.4, at_s: 6}", "faults[0].duration_s"),
        ("{kind: overload, rps: 100, duration_s: 4, timeout_s: 0, at_s: 6}", "faults[0].timeout_s"),
        (
            "{kind: overload, rps: 100, duration_s: 4, at_s: 6, max_in_flight: "
            + str(OVERLOAD_MAX_IN_FLIGHT + 1)
            + "}",
            "faults[0].max_in_flight",
        ),
        ("{kind: overload, rps: 100, duration_s: 4, at_s: 6, factor: 3}", "factor"),
    ],
)
def test_a_bad_overload_field_is_a_config_error_naming_it(fault: str, field: str) -> None:
    assert field in _error(fault)


def test_a_burst_must_end_with_its_last_deadline_before_the_load_ends() -> None:
    # 30 s load: at 6 + 4 s + 3 s deadline + the margin ends exactly at 30 s at most
    duration = 30 - 6 - 3 - OVERLOAD_END_MARGIN_S
    assert _cfg(f"{{kind: overload, rps: 100, duration_s: {duration}, at_s: 6}}").faults[0]
    msg = _error(f"{{kind: overload, rps: 100, duration_s: {duration + 0.5}, at_s: 6}}")
    assert "faults[0].duration_s" in msg and "load.duration_s" in msg


def test_the_backpressure_check_runs_only_with_an_overload_fault_or_its_own_section() -> None:
    with_burst = _cfg("{kind: overload, rps: 100, duration_s: 4, at_s: 6}")
    assert "backpressure" in with_burst.enabled_checks()
    without = _cfg("{kind: stop_task, target: gateway, at_s: 6}")
    assert "backpressure" not in without.enabled_checks()
    asked = _cfg(
        "{kind: stop_task, target: gateway, at_s: 6}", "checks: {backpressure: {recover_within_s: 5}}"
    )
    assert "backpressure" in asked.enabled_checks()
    assert asked.thresholds_of("backpressure").recover_within_s == 5.0


def test_a_bad_backpressure_threshold_is_named_at_load() -> None:
    with pytest.raises((ConfigError, ConfigErrors)) as e:
        _cfg("{kind: overload, rps: 100, duration_s: 4, at_s: 6}", "checks: {backpressure: {window_s: 0}}")
    assert "checks.backpressure.window_s" in str(e.value)


def test_unbounded_queue_is_a_seeded_bug_and_the_admission_limit_is_read_from_the_environment() -> None:
    assert parse_bugs("unbounded_queue") == frozenset({"unbounded_queue"})
    env = {"PB_DSN": "x", "PB_KAFKA_BOOTSTRAP": "y"}
    assert load_settings(env).max_in_flight == 32
    assert load_settings({**env, "PB_MAX_IN_FLIGHT": "1"}).max_in_flight == 1
    with pytest.raises(ConfigError) as e:
        load_settings({**env, "PB_MAX_IN_FLIGHT": "0"})
    assert e.value.where == "PB_MAX_IN_FLIGHT"


def _serve(admission: Admission, path: str, release: asyncio.Event) -> Any:
    async def handler(_request: Any) -> str:
        await release.wait()
        return "served"

    return admission.middleware(SimpleNamespace(path=path), handler)


def test_the_admission_limit_sheds_the_request_beyond_it_with_503_and_never_sheds_health() -> None:
    async def scenario() -> None:
        adm = Admission(2)
        release = asyncio.Event()
        held = [asyncio.create_task(_serve(adm, "/orders", release)) for _ in range(2)]
        await asyncio.sleep(0)
        assert adm.in_flight == 2
        with pytest.raises(ApiError) as e:
            await _serve(adm, "/orders", release)
        assert e.value.status == 503 and e.value.error == "overloaded"
        assert e.value.response().headers["Retry-After"] == "1"
        ready = asyncio.create_task(_serve(adm, "/ready", release))
        release.set()
        assert await asyncio.gather(*held, ready) == ["served"] * 3
        assert adm.stats() == {"limit": 2, "in_flight": 0, "peak": 2, "admitted": 2, "shed": 1}

    asyncio.run(scenario())


def test_without_a_limit_the_unbounded_queue_admits_every_request() -> None:
    async def scenario() -> None:
        adm = Admission(None)
        release = asyncio.Event()
        held = [asyncio.create_task(_serve(adm, "/orders", release)) for _ in range(50)]
        await asyncio.sleep(0)
        assert adm.in_flight == 50 and adm.shed == 0
        release.set()
        await asyncio.gather(*held)

    asyncio.run(scenario())


def test_a_burst_only_targets_this_machine(tmp_path: Any) -> None:
    from resgate.local.burst import Burst, BurstProcess, BurstSpec

    spec = BurstSpec(rps=10, duration_s=1)
    for host in ("http://10.0.0.1:80", "https://127.0.0.1:443", "http://example.com"):
        with pytest.raises(ConfigError) as e:
            Burst(host, spec, tmp_path)
        assert e.value.where == "load.host"
        with pytest.raises(ConfigError):
            BurstProcess(host, spec, tmp_path)
    assert Burst("http://127.0.0.1:8080/", spec, tmp_path).host == "http://127.0.0.1:8080"
