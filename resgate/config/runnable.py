"""What `resgate run` needs from the machine, checked before anything starts (and by `resgate validate`).

Parsing (:mod:`resgate.config.schema`) proves a config well formed; :func:`check_runnable` proves it can
run here: each service's program exists (on the PATH, or at the path given, relative paths taken from
the config file's folder, where the services run), no service is given a fixed port (``--port 8000``:
every replica gets its own, ``${port}``), and the locustfile exists (relative to the config file's
folder; the packaged configs' ``loadgen/...`` also from the installed ``loadgen`` package). Every error
names the service or field and the config file's line, and they are all reported at once.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from resgate.config.fields import Errors
from resgate.config.model import GateConfig, LocalService
from resgate.config.placeholders import fill
from resgate.contract.errors import ConfigError


def config_dir(cfg: GateConfig) -> Path:
    """The folder relative paths of ``cfg`` are taken from: its file's folder (the current folder for a
    config that did not come from a file)."""
    source = cfg.source or ""
    if not source or source.startswith("<"):
        return Path.cwd()
    return Path(source).resolve().parent


def locustfile_candidates(cfg: GateConfig) -> list[Path]:
    """Where the locustfile is looked for, in order: as given when absolute; else the config file's folder,
    then (for the packaged configs' ``loadgen/locustfile.py``) beside the installed ``loadgen`` package."""
    p = Path(cfg.load.locustfile)
    if p.is_absolute():
        return [p]
    out = [config_dir(cfg) / p]
    if p.parts and p.parts[0] == "loadgen":
        import loadgen

        out.append(Path(loadgen.__file__).resolve().parent.parent / p)
    return out


def resolve_locustfile(cfg: GateConfig) -> Path:
    """The locustfile's path (the first candidate that exists); ConfigError at ``load.locustfile`` naming
    every place looked in otherwise."""
    candidates = locustfile_candidates(cfg)
    for c in candidates:
        if c.is_file():
            return c
    looked = ", ".join(str(c) for c in candidates)
    raise ConfigError(
        f"locustfile {cfg.load.locustfile!r} not found (looked in {looked}; relative paths are taken from "
        "the config file's folder)",
        where=cfg.where("load.locustfile"),
    )


def _executable(service: LocalService, cwd: Path) -> str | None:
    """The program ``service`` would start (None when it cannot be found)."""
    values = {"python": sys.executable, "pg.dsn": "", "kafka.bootstrap": "", "run_id": ""}
    cmd0 = fill(service.command[0], values, keep=("port",))
    env_path = service.env.get("PATH", os.environ.get("PATH", os.defpath))
    if "/" in cmd0:
        path = Path(cmd0) if os.path.isabs(cmd0) else cwd / cmd0
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(cmd0, path=env_path)


_PORT_FLAGS = ("--port", "-p", "--bind", "-b", "--listen", "--http", "--host-port")
_FIXED_PORT = re.compile(r"^(?:[\w.\-\[\]]*:)?(\d{2,5})$")


def fixed_port(command: list[str]) -> tuple[int, int] | None:
    """``(index, port)`` of a literal port given to a port flag (``--port 8000``, ``-b 0.0.0.0:8000``,
    ``--bind=127.0.0.1:8000``), None when there is none."""
    for i, arg in enumerate(command):
        flag, eq, value = arg.partition("=")
        if eq and flag in _PORT_FLAGS:
            candidate, at = value, i
        elif arg in _PORT_FLAGS and i + 1 < len(command):
            candidate, at = command[i + 1], i + 1
        else:
            continue
        m = _FIXED_PORT.match(candidate)
        if m:
            return at, int(m.group(1))
    return None


def check_runnable(cfg: GateConfig) -> None:
    """Raise ConfigError (one) or ConfigErrors (several) for whatever would stop `resgate run` here."""
    errs = Errors()
    cwd = config_dir(cfg)
    for s in cfg.target.services:
        if _executable(s, cwd) is None:
            cmd0 = s.command[0]
            hint = (
                f" (looked for {cwd / cmd0}; relative paths are taken from the config file's folder)"
                if "/" in cmd0 and not os.path.isabs(cmd0)
                else " on the PATH (give its full path, or install it)"
            )
            errs.errors.append(
                ConfigError(
                    f"service {s.name!r}: executable {cmd0!r} not found{hint}",
                    where=cfg.where(f"{s.path}.command[0]"),
                )
            )
        fixed = fixed_port(s.command)
        if fixed is not None:
            at, port = fixed
            errs.errors.append(
                ConfigError(
                    f"service {s.name!r} is given the fixed port {port}: each replica gets its own port, and "
                    f"its health check and the balancer use that one. Write ${{port}} instead of {port}",
                    where=cfg.where(f"{s.path}.command[{at}]"),
                )
            )
    errs.attempt(resolve_locustfile, cfg)
    errs.raise_any()
