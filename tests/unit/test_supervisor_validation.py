"""Bad supervisor input is one clear ConfigError naming the field, raised before any process is touched."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from resgate.contract.errors import ConfigError, GateError
from resgate.local.spec import ServiceSpec, count_for
from resgate.local.supervisor import Supervisor
from resgate.runner.local_target import parse_services, service_specs

ECHO = [sys.executable, "-m", "resgate.testing.echo_service"]


@pytest.fixture
def no_side_effects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to start or signal a process."""

    def _forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"side effect attempted: {args!r}")

    monkeypatch.setattr(subprocess, "Popen", _forbidden)
    monkeypatch.setattr(os, "killpg", _forbidden)
    monkeypatch.setattr(os, "kill", _forbidden)


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
        ("replica_values", [{"pg.dsn": "x"}, {"pg.dsn": "y"}]),  # two for one replica
        ("replica_values", [{"pg.dsn": 1}]),
        ("replica_values", {"pg.dsn": "x"}),
    ],
)
def test_bad_fields_name_the_field(no_side_effects: None, field: str, value: object) -> None:
    with pytest.raises(ConfigError) as exc:
        ServiceSpec(name="echo", command=ECHO, **{field: value})
    assert _where(exc).split(".")[0].split("[")[0] == field


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
    with pytest.raises(ConfigError) as exc:
        Supervisor([spec], start_failures=0)
    assert _where(exc) == "start_failures"


# Unknown fault kinds and unknown or missing fault parameters are the gate config's to reject (see
# tests/unit/test_config.py); these are the supervisor's own checks of its primitive process faults.
_BAD_FAULTS: list[tuple[str, Callable[[Supervisor], object], str]] = [
    ("percent above 100", lambda s: s.stop_replicas("echo", 150), "percent"),
    ("negative percent", lambda s: s.stop_replicas("echo", -1), "percent"),
    ("percent as a string", lambda s: s.stop_replicas("echo", "50"), "percent"),  # type: ignore[arg-type]
    ("unknown service", lambda s: s.stop_replicas("nope", 50), "service"),
    ("no service and no tags", lambda s: s.stop_replicas(None, 50), "service"),
    ("tags that match nothing", lambda s: s.stop_replicas("echo", 50, tags={"tier": "db"}), "tags"),
    ("negative hang duration", lambda s: s.hang("echo", 50, -1), "duration_s"),
    ("hang percent above 100", lambda s: s.hang("echo", 101, 1), "percent"),
]


@pytest.mark.parametrize(
    ("fault", "where"), [(f, w) for _, f, w in _BAD_FAULTS], ids=[name for name, _, _ in _BAD_FAULTS]
)
def test_bad_fault_parameters_are_config_errors_before_anything_happens(
    no_side_effects: None, fault: Callable[[Supervisor], object], where: str
) -> None:
    sup = Supervisor([ServiceSpec(name="echo", command=ECHO, replicas=2, tags={"tier": "web"})])
    with pytest.raises(ConfigError) as exc:
        fault(sup)
    assert _where(exc) == where
    assert sup.timeline() == []
    assert [(r.replica_id, r.pid, r.state) for r in sup.replicas()] == [
        ("echo-0", None, "stopped"),
        ("echo-1", None, "stopped"),
    ]


def test_valid_fault_on_a_supervisor_that_was_not_started_is_a_gate_error(no_side_effects: None) -> None:
    sup = Supervisor([ServiceSpec(name="echo", command=ECHO)])
    with pytest.raises(GateError, match="not started"):
        sup.stop_replicas("echo", 50)
    with pytest.raises(GateError, match="not started"):
        sup.hang("echo", 50, 1)


@pytest.mark.parametrize(
    ("percent", "n", "expected"),
    [(0, 4, 0), (1, 4, 1), (25, 4, 1), (26, 4, 2), (30, 10, 3), (50, 3, 2), (100, 3, 3), (0.1, 1, 1)],
)
def test_fault_count_is_ceil_of_percent_and_at_least_one(percent: float, n: int, expected: int) -> None:
    assert count_for(percent, n) == expected


def test_paperbroker_described_as_plain_data_becomes_specs_through_the_gate_config_parser(
    no_side_effects: None,
) -> None:
    from paperbroker.system import system_services

    described = system_services(dsn="postgresql://pb@127.0.0.1:1/pb", bootstrap="127.0.0.1:1", bugs="")
    specs = service_specs(parse_services(described), tags={"app": "paperbroker"})
    assert [(s.name, s.replicas) for s in specs] == [("gateway", 2), ("matcher", 1), ("projector", 1)]
    assert all(s.health_url == "http://127.0.0.1:{port}/ready" for s in specs)
    assert specs[0].tags == {"service": "gateway", "app": "paperbroker"}
    assert specs[0].env["PB_DSN"] == "postgresql://pb@127.0.0.1:1/pb"
    with pytest.raises(ConfigError) as exc:
        parse_services([{**described[0], "replica": 2}])
    assert _where(exc).startswith("target.local.services[0].replica")


def test_paperbroker_imports_nothing_of_the_gate_but_the_contract_package() -> None:
    root = Path(__file__).resolve().parents[2] / "paperbroker"
    gate_imports = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            gate_imports += [
                f"{path.name}: {n}"
                for n in names
                if n.split(".")[0] == "resgate" and not n.startswith("resgate.contract")
            ]
    assert gate_imports == []
