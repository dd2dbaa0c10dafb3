"""The local target starts Postgres and Kafka only for a run that needs them: an HTTP-only service with
integrity and replay off starts neither; paperbroker's gate starts both."""

from __future__ import annotations

from resgate.cli import default_config_path
from resgate.config import load_config, load_config_text
from resgate.runner.local_target import needs_kafka, needs_postgres

HTTP_ONLY = """\
gate: {name: web}
target:
  local:
    services:
      - {name: web, command: [python3, -m, http.server, "${port}"], expose: true, health_path: /}
checks: {integrity: false, replay: false}
"""


def test_an_http_only_service_with_integrity_and_replay_off_needs_no_infra() -> None:
    cfg = load_config_text(HTTP_ONLY)

    assert not needs_postgres(cfg) and not needs_kafka(cfg)


def test_a_service_that_uses_the_database_needs_postgres_only() -> None:
    cfg = load_config_text(HTTP_ONLY.replace("expose: true", 'expose: true, env: {DB: "${pg.dsn}"}'))

    assert needs_postgres(cfg) and not needs_kafka(cfg)


def test_paperbroker_needs_both() -> None:
    cfg = load_config(default_config_path())

    assert needs_postgres(cfg) and needs_kafka(cfg)
