"""The embedded Postgres really starts, stores data, survives a stop/start, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from resgate.contract.errors import DependencyMissing
from resgate.local import postgres as pgmod
from resgate.local.postgres import EmbeddedPostgres

pytestmark = pytest.mark.integration


def test_embedded_postgres_writes_and_reads_a_table_and_is_gone_afterwards() -> None:
    with EmbeddedPostgres() as pg:
        base = pg.base_dir
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("create table t (id int primary key, v text)")
            conn.execute("insert into t values (1, 'one'), (2, 'two')")
            rows = conn.execute("select id, v from t order by id").fetchall()
        assert rows == [(1, "one"), (2, "two")]
        assert base.exists()
        port = pg.port
    assert not base.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2)


def test_embedded_postgres_keeps_data_across_stop_and_start() -> None:
    with EmbeddedPostgres() as pg:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("create table t (id int)")
            conn.execute("insert into t values (7)")
        pg.stop()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg.dsn, connect_timeout=2)
        pg.start()
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("select id from t").fetchall() == [(7,)]


def test_embedded_postgres_runs_the_server_as_postgres_user_when_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("only meaningful as root")
    with EmbeddedPostgres() as pg, psycopg.connect(pg.dsn) as conn:
        assert conn.execute("select current_setting('data_directory')").fetchone()[0] == str(pg.data_dir)
        owner = os.stat(pg.data_dir).st_uid
        assert owner != 0


def test_missing_postgres_binaries_give_one_clear_error_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESGATE_PG_BIN", "/nonexistent")
    monkeypatch.setattr(pgmod.shutil, "which", lambda _name: None)
    monkeypatch.setattr(pgmod.glob, "glob", lambda _pattern: [])
    with pytest.raises(DependencyMissing) as err:
        EmbeddedPostgres()
    assert "apt-get install postgresql" in str(err.value)
    assert "RESGATE_PG_DSN" in str(err.value)


def test_pg_dsn_fixture_gives_an_empty_database(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        n = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        ).fetchone()[0]
    assert n == 0


def test_a_killed_gate_process_leaves_no_postgres_behind(tmp_path: Path) -> None:
    script = (
        "import os, sys\n"
        "from resgate.local.postgres import EmbeddedPostgres\n"
        "pg = EmbeddedPostgres(); pg.open()\n"
        "print(pg.base_dir, pg.port, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    base, port = out.stdout.split()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and Path(base).exists():
        time.sleep(0.2)
    assert not Path(base).exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2)
