"""`resgate init`: the config it writes validates; nothing is written for bad input or over a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from resgate.cli import main
from resgate.config import load_config
from resgate.contract.errors import ConfigError
from resgate.scaffold import InitOptions, parse_service, scaffold


def test_init_writes_a_config_that_validates_with_the_services_faults_and_http_checks(tmp_path: Path) -> None:
    out = tmp_path / "gate.yaml"
    opts = InitOptions(name="shop", services=(("api", "${python} api.py --port ${port}"), ("worker", "w")))

    cfg = scaffold(opts, out)

    assert load_config(out).name == "shop" and cfg.name == "shop"
    api, worker = cfg.target.services
    assert api.command == ["${python}", "api.py", "--port", "${port}"] and api.expose and not worker.expose
    assert (api.replicas, api.health_path) == (2, "/ready")
    assert [(f.kind, f.target, f.at_s) for f in cfg.faults] == [("stop_task", "api", 10.0)]
    assert cfg.enabled_checks() == ["slo", "recovery", "retryable"]


def test_init_refuses_a_shell_style_port_and_says_to_write_the_placeholder(tmp_path: Path) -> None:
    out = tmp_path / "gate.yaml"
    opts = InitOptions(name="shop", services=(("api", "gunicorn -b 127.0.0.1:$PORT app:app"),))

    with pytest.raises(ConfigError, match=r"without a shell. Write \$\{port\}") as e:
        scaffold(opts, out)

    assert "services[0].command[2]" in str(e.value) and not out.exists()


def test_with_a_database_every_service_gets_the_embedded_postgres_and_an_outage_is_added(
    tmp_path: Path,
) -> None:
    opts = InitOptions(name="shop", services=(("api", "x"),), database=True, duration_s=20)

    cfg = scaffold(opts, tmp_path / "gate.yaml")

    assert cfg.target.services[0].env == {"DATABASE_URL": "${pg.dsn}"}
    db = cfg.faults[1]
    assert (db.kind, db.at_s, db.params.get("duration_s")) == ("db_blip", 13.0, 3.0), db


def test_an_invalid_config_is_reported_with_every_error_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "gate.yaml"
    opts = InitOptions(name="Not Valid", services=(("api", "x"),), replicas=0)

    with pytest.raises(ConfigError, match="2 errors") as e:
        scaffold(opts, out)

    assert "gate.name" in str(e.value) and "replicas" in str(e.value)
    assert not out.exists()


def test_existing_files_are_kept_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "gate.yaml"
    out.write_text("mine\n")
    opts = InitOptions(name="shop", services=(("api", "x"),))

    with pytest.raises(ConfigError, match="already exists"):
        scaffold(opts, out, write_locustfile=True)
    assert out.read_text() == "mine\n" and not (tmp_path / "locustfile.py").exists()

    scaffold(opts, out, force=True, write_locustfile=True)
    assert "gate: {name: shop}" in out.read_text()
    assert "class WebUser(FastHttpUser)" in (tmp_path / "locustfile.py").read_text()


@pytest.mark.parametrize("text", ["api", "=cmd", "api=", "api= "])
def test_a_service_must_be_name_equals_command(text: str) -> None:
    with pytest.raises(ConfigError, match="NAME=COMMAND"):
        parse_service(text)


def test_the_command_line_exits_2_and_writes_nothing_without_a_service_when_not_interactive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    out = tmp_path / "gate.yaml"

    assert main(["init", "shop", "--out", str(out)]) == 2

    assert "--service" in capsys.readouterr().err and not out.exists()


def test_the_command_line_prints_the_config_and_the_next_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gate.yaml"

    assert main(["init", "shop", "--service", "web=${python} app.py", "--out", str(out)]) == 0

    printed = capsys.readouterr().out
    assert out.read_text() in printed and f"next: resgate run {out}" in printed
