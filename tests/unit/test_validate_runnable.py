"""`resgate validate` checks what `resgate run` needs before anything starts: the services' programs, the
locustfile (relative to the config file's folder), and the `${port}` / `$NAME` rules of commands run
without a shell; every error names the service or field and the config file's line."""

from __future__ import annotations

from pathlib import Path

import pytest

from resgate.cli import main
from resgate.config import load_config
from resgate.config.runnable import check_runnable, fixed_port, resolve_locustfile
from resgate.contract.errors import ConfigError, ConfigErrors

CONFIG = """\
gate: {name: web}
target:
  local:
    services:
      - name: web
        command: [COMMAND, -b, "127.0.0.1:${port}", app:app]
        expose: true
load: {locustfile: LOCUSTFILE}
checks: {integrity: false, replay: false}
"""


def _write(folder: Path, command: str = "python3", locustfile: str = "locustfile.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gate.yaml"
    path.write_text(CONFIG.replace("COMMAND", command).replace("LOCUSTFILE", locustfile))
    return path


def test_validate_names_a_missing_program_and_a_missing_locustfile_with_the_service_and_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path, command="gunicron")

    assert main(["validate", str(config)]) == 2

    err = capsys.readouterr().err
    assert "(2 errors)" in err
    assert f"target.local.services[0].command[0] ({config}:6): service 'web': executable 'gunicron'" in err
    assert f"load.locustfile ({config}:8): locustfile 'locustfile.py' not found (looked in {tmp_path}" in err


def test_validate_passes_when_the_program_is_on_the_path_and_the_locustfile_is_beside_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _write(tmp_path / "project")
    (tmp_path / "project" / "locustfile.py").write_text("")
    monkeypatch.chdir(tmp_path)  # not the config's folder: the locustfile is found from the config's

    assert main(["validate", str(config)]) == 0

    assert "ok: gate 'web'" in capsys.readouterr().out


def test_a_relative_program_is_looked_for_in_the_config_files_folder(tmp_path: Path) -> None:
    config = _write(tmp_path, command="./bin/serve")
    (tmp_path / "locustfile.py").write_text("")
    with pytest.raises(ConfigError, match=r"looked for .*/bin/serve; relative paths are taken from"):
        check_runnable(load_config(config))
    program = tmp_path / "bin" / "serve"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)

    check_runnable(load_config(config))


def test_the_packaged_loadgen_locustfile_is_found_from_any_config_folder(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, locustfile="loadgen/locustfile.py"))

    assert resolve_locustfile(cfg).parts[-2:] == ("loadgen", "locustfile.py")


@pytest.mark.parametrize(
    ("arg", "fix"),
    [
        ("127.0.0.1:$PORT", "Write ${port} for the replica's port"),
        ("--home=$HOME", "Write ${env:HOME} for the gate's environment variable HOME"),
    ],
)
def test_a_shell_variable_in_a_command_is_refused_with_the_fix(tmp_path: Path, arg: str, fix: str) -> None:
    config = tmp_path / "gate.yaml"
    config.write_text(CONFIG.replace("COMMAND", "python3").replace('"127.0.0.1:${port}"', f'"{arg}"'))

    with pytest.raises(ConfigError) as e:
        load_config(config)

    assert not isinstance(e.value, ConfigErrors)
    assert e.value.where == f"target.local.services[0].command[2] ({config}:6)"
    assert "service commands run without a shell" in str(e.value) and fix in str(e.value)


def test_a_doubled_dollar_and_the_port_placeholder_are_accepted(tmp_path: Path) -> None:
    config = tmp_path / "gate.yaml"
    config.write_text(CONFIG.replace("COMMAND", "python3").replace("app:app", "cost=$$5"))

    assert load_config(config).target.services[0].command[2:] == ["127.0.0.1:${port}", "cost=$$5"]


def test_an_unknown_balancer_mode_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    config = tmp_path / "gate.yaml"
    config.write_text(
        CONFIG.replace("COMMAND", "python3").replace("expose: true", "expose: true\n        balancer: nlb")
    )

    with pytest.raises(ConfigError, match=r"must be one of \['http', 'tcp'\]") as e:
        load_config(config)

    assert e.value.where.startswith("target.local.services[0].balancer")


@pytest.mark.parametrize(
    ("args", "index"),
    [(["--port", "8000"], 2), (["-b", "0.0.0.0:8000"], 2), (["--bind=127.0.0.1:8000"], 1)],
)
def test_a_fixed_port_is_refused_with_the_placeholder_as_the_fix(args: list[str], index: int) -> None:
    assert fixed_port(["gunicorn", *args, "app:app"]) == (index, 8000)


def test_the_port_placeholder_and_other_numbers_are_not_a_fixed_port() -> None:
    assert fixed_port(["gunicorn", "-b", "127.0.0.1:${port}", "--workers", "4", "app:app"]) is None


def test_validate_names_the_service_and_line_of_a_fixed_port(tmp_path: Path) -> None:
    config = _write(tmp_path)
    config.write_text(config.read_text().replace('"127.0.0.1:${port}"', '"127.0.0.1:8000"'))
    (tmp_path / "locustfile.py").write_text("")

    with pytest.raises(ConfigError) as e:
        check_runnable(load_config(config))

    assert e.value.where == f"target.local.services[0].command[2] ({config}:6)"
    assert "service 'web' is given the fixed port 8000" in str(e.value) and "Write ${port}" in str(e.value)
