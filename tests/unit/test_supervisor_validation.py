"""Bad supervisor input is one clear ConfigError naming the field, raised before any process is touched."""

from __future__ import annotations

import sys

import pytest

from resgate.contract.errors import ConfigError, GateError
from resgate.local import supervisor as supmod
from resgate.local.supervisor import ServiceSpec, Supervisor, _count_for

ECHO = [sys.executable, "-m", "resgate.testing.echo_service"]


@pytest.fixture
def no_side_effects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to start or signal a process."""

    def _forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"side effect attempted: {args!r}")

    monkeypatch.setattr(supmod.subprocess, "Popen", _forbidden)
    monkeypatch.setattr(supmod.os, "killpg", _forbidden)
    monkeypatch.setattr(supmod.os, "kill", _forbidden)


def _where(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    assert exc.value.where is not None
    return exc.value.where


def test_missing_command_is_a_config_error_naming_command(no_side_effects: None) -> None:
    with pytest.raises(ConfigError, match="missing") as exc:
        ServiceSpec(name="echo")
    assert _where(exc) == "command"


def test_command_given_as_a_shell_string_is_rejected(no_side_effects: None) -> None:
    with pytest.raises(ConfigError, match="list of arguments") as exc:
        ServiceSpec(name="echo", command="python -m x")  # type: ignore[arg-type]
    assert _where(exc) == "command"


def test_unknown_executable_is_rejected_before_start(no_side_effects: None) -> None:
    with pytest.raises(ConfigError, match="not found") as exc:
        ServiceSpec(name="echo", command=["definitely-not-a-program-xyz"])
    assert _where(exc) == "command[0]"


@pytest.mark.parametrize("replicas", [0, -1, True, 1.5, 10_000])
def test_replicas_out_of_range_is_rejected(no_side_effects: None, replicas: object) -> None:
    with pytest.raises(ConfigError) as exc:
        ServiceSpec(name="echo", command=ECHO, replicas=replicas)  # type: ignore[arg-type]
    assert _where(exc) == "replicas"


@pytest.mark.parametrize("name", ["", "has space", "-leading-dash", "x" * 64, None])
def test_bad_service_names_are_rejected(no_side_effects: None, name: object) -> None:
    with pytest.raises(ConfigError) as exc:
        ServiceSpec(name=name, command=ECHO)  # type: ignore[arg-type]
    assert _where(exc) == "name"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("health_url", "http://127.0.0.1:8080/ready"),  # no {port}
        ("health_url", "https://127.0.0.1:{port}/ready"),
        ("restart_delay_s", -1),
        ("start_timeout_s", 0),
        ("env", {"PORT": "1"}),
        ("env", {"X": 1}),
        ("tags", ["a"]),
        ("cwd", "/definitely/not/a/dir"),
    ],
)
def test_bad_fields_name_the_field(no_side_effects: None, field: str, value: object) -> None:
    with pytest.raises(ConfigError) as exc:
        ServiceSpec(name="echo", command=ECHO, **{field: value})
    assert _where(exc).split(".")[0] == field


def test_from_dict_prefixes_the_path_and_rejects_unknown_keys(no_side_effects: None) -> None:
    with pytest.raises(ConfigError) as exc:
        ServiceSpec.from_dict({"name": "echo", "replicas": 2}, where="services[1]")
    assert _where(exc) == "services[1].command"
    with pytest.raises(ConfigError) as exc:
        ServiceSpec.from_dict({"name": "echo", "command": ECHO, "replica": 2}, where="services[0]")
    assert _where(exc) == "services[0].replica"
    spec = ServiceSpec.from_dict({"name": "echo", "command": ECHO, "replicas": 3, "tags": {"tier": "web"}})
    assert (spec.replicas, spec.tags, spec.restart_delay_s) == (3, {"tier": "web"}, 1.0)


def test_duplicate_service_names_are_rejected(no_side_effects: None) -> None:
    spec = ServiceSpec(name="echo", command=ECHO)
    with pytest.raises(ConfigError) as exc:
        Supervisor([spec, ServiceSpec(name="echo", command=ECHO)])
    assert _where(exc) == "specs[1].name"
    with pytest.raises(ConfigError) as exc:
        Supervisor([])
    assert _where(exc) == "specs"
    with pytest.raises(ConfigError) as exc:
        Supervisor([spec], health_interval_s=0)
    assert _where(exc) == "health_interval_s"


@pytest.mark.parametrize(
    ("fault", "params", "where"),
    [
        ("explode", {"service": "echo", "percent": 50}, "fault"),
        ("stop_task", {"service": "echo", "percent": 150}, "percent"),
        ("stop_task", {"service": "echo", "percent": -1}, "percent"),
        ("stop_task", {"service": "echo", "percent": "50"}, "percent"),
        ("stop_task", {"service": "echo"}, "percent"),
        ("stop_task", {"service": "nope", "percent": 50}, "service"),
        ("stop_task", {"percent": 50}, "service"),
        ("stop_task", {"service": "echo", "percent": 50, "tags": {"tier": "db"}}, "tags"),
        ("stop_task", {"service": "echo", "percent": 50, "duration_s": 1}, "duration_s"),
        ("hang", {"service": "echo", "percent": 50, "duration_s": -1}, "duration_s"),
        ("hang", {"service": "echo", "percent": 50}, "duration_s"),
        ("hang", {"service": "echo", "percent": 101, "duration_s": 1}, "percent"),
    ],
)
def test_bad_fault_parameters_are_config_errors_before_anything_happens(
    no_side_effects: None, fault: str, params: dict[str, object], where: str
) -> None:
    sup = Supervisor([ServiceSpec(name="echo", command=ECHO, replicas=2, tags={"tier": "web"})])
    with pytest.raises(ConfigError) as exc:
        sup.inject(fault, **params)
    assert _where(exc) == where
    assert sup.timeline() == []
    assert [(r.replica_id, r.pid, r.state) for r in sup.replicas()] == [
        ("echo-0", None, "stopped"),
        ("echo-1", None, "stopped"),
    ]


def test_valid_fault_on_a_supervisor_that_was_not_started_is_a_gate_error(no_side_effects: None) -> None:
    sup = Supervisor([ServiceSpec(name="echo", command=ECHO)])
    with pytest.raises(GateError, match="not started"):
        sup.inject("stop_task", service="echo", percent=50)


@pytest.mark.parametrize(
    ("percent", "n", "expected"),
    [(0, 4, 0), (1, 4, 1), (25, 4, 1), (26, 4, 2), (30, 10, 3), (50, 3, 2), (100, 3, 3), (0.1, 1, 1)],
)
def test_fault_count_is_ceil_of_percent_and_at_least_one(percent: float, n: int, expected: int) -> None:
    assert _count_for(percent, n) == expected
