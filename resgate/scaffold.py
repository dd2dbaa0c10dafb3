"""`resgate init`: a first gate config for the user's own services, validated before it is written.

The config runs the user's services under the local supervisor (``replicas`` each, the first one, or the
one named by ``expose``, behind the balancer), drives them with the user's locustfile (the gate adds the
client ledger itself, see :mod:`loadgen.ledger_plugin`), kills half the replicas of the exposed service a
third of the way into the load and, with ``database``, gives every service the embedded Postgres as
``DATABASE_URL`` and stops that database for a few seconds two thirds of the way in. The checks are the
ones that need nothing but HTTP: slo, recovery and retryable.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from resgate.config import GateConfig, load_config_text
from resgate.config.json_schema import SCHEMA_FILE, gate_config_schema
from resgate.contract.errors import ConfigError

STARTER_LOCUSTFILE = '''\
"""A starter locustfile: replace the paths with your service's. Plain Locust: the gate records every
request in its client ledger by itself."""

from locust import FastHttpUser, between, task


class WebUser(FastHttpUser):
    wait_time = between(0.05, 0.2)

    @task
    def index(self):
        self.client.get("/")
'''


@dataclass(frozen=True)
class InitOptions:
    """What `resgate init` was told: the gate's name, ``services`` as ``(name, command)``, and the rest."""

    name: str
    services: tuple[tuple[str, str], ...]
    expose: str | None = None
    replicas: int = 2
    health_path: str = "/ready"
    database: bool = False
    locustfile: str = "locustfile.py"
    users: int = 10
    duration_s: int = 30
    p95_ms: int = 500
    env: dict[str, str] = field(default_factory=dict)


def parse_service(text: str) -> tuple[str, str]:
    """``NAME=COMMAND`` → ``(name, command)``; ConfigError naming ``--service`` otherwise."""
    name, sep, command = text.partition("=")
    if not sep or not name.strip() or not command.strip():
        raise ConfigError(f"expected NAME=COMMAND, got {text!r}", where="--service")
    return name.strip(), command.strip()


def config_text(opts: InitOptions) -> str:
    """The gate config YAML for ``opts`` (not yet validated; see :func:`scaffold`)."""
    if not opts.services:
        raise ConfigError("give at least one service (NAME=COMMAND)", where="--service")
    exposed = opts.expose or opts.services[0][0]
    if exposed not in [n for n, _ in opts.services]:
        raise ConfigError(f"no service named {exposed!r}", where="--expose")
    services = []
    for name, command in opts.services:
        svc: dict[str, object] = {
            "name": name,
            "command": shlex.split(command),
            "replicas": opts.replicas,
            "health_path": opts.health_path,
        }
        env = dict(opts.env)
        if opts.database:
            env.setdefault("DATABASE_URL", "${pg.dsn}")
        if env:
            svc["env"] = env
        if name == exposed:
            svc["expose"] = True
        services.append(svc)
    baseline = max(3, opts.duration_s // 6)
    faults: list[dict[str, object]] = [
        {"name": f"kill-{exposed}", "kind": "stop_task", "target": exposed, "percent": 50,
         "at_s": max(baseline, opts.duration_s // 3)},
    ]  # fmt: skip
    if opts.database:
        faults.append(
            {
                "name": "db-down",
                "kind": "db_blip",
                "duration_s": 3,
                "at_s": max(baseline, 2 * opts.duration_s // 3),
            }
        )
    doc = {
        "gate": {"name": opts.name},
        "target": {"environment": "local", "local": {"services": services}},
        "load": {
            "users": opts.users,
            "duration_s": opts.duration_s,
            "baseline_s": baseline,
            "locustfile": opts.locustfile,
        },
        "faults": faults,
        "checks": {
            "slo": {"p95_ms": opts.p95_ms},
            "recovery": {"rto_s": 30},
            "retryable": {},
            "integrity": False,
            "replay": False,
        },
    }
    header = (
        f"# yaml-language-server: $schema={SCHEMA_FILE}\n"
        f"# Gate config for {opts.name}, written by `resgate init`. Reference: the README's configuration\n"
        "# reference. integrity and replay need your orders/trades tables and topics: see the README.\n"
        "# Commands run without a shell: ${port} is each replica's own port (also in its PORT variable).\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)


def scaffold(
    opts: InitOptions, out: Path, *, force: bool = False, write_locustfile: bool = False
) -> GateConfig:
    """Validate the config for ``opts`` and write it to ``out``, the gate config's JSON Schema next to it
    (:data:`~resgate.config.json_schema.SCHEMA_FILE`, named by the config's ``yaml-language-server`` line)
    and, when asked, a starter locustfile; nothing is written when the config is invalid or a file exists
    and ``force`` is not given."""
    text = config_text(opts)
    cfg = load_config_text(text, str(out))
    locustfile = out.parent / opts.locustfile
    targets = [out] + ([locustfile] if write_locustfile else [])
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise ConfigError(f"{', '.join(existing)} already exists (use --force to replace)", where="--out")
    out.write_text(text)
    (out.parent / SCHEMA_FILE).write_text(json.dumps(gate_config_schema(), indent=2) + "\n")
    if write_locustfile:
        locustfile.write_text(STARTER_LOCUSTFILE)
    return cfg
