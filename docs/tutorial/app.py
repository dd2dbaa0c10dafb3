"""The tutorial's service (docs/TUTORIAL.md): a tiny WSGI application that is not paperbroker.

Items in Postgres (``DATABASE_URL``): ``GET /items`` counts them, ``POST /items`` adds one (``201`` with its
id; the same ``Idempotency-Key`` again gives the same item, ``200``), ``GET /ready`` says whether it can
reach the database (the supervisor's health check, so an outage shows in the service's health). While the
database is down the good service answers ``503`` with ``Retry-After: 1``; with
``APP_BUG=500_when_db_down`` it answers a bare ``500`` instead, the bug the gate's retryable check must
catch. Standard library and psycopg only.

``app`` is a plain WSGI application, so any WSGI server runs it: ``python app.py --port N`` serves it with
the standard library's ``wsgiref`` server (one request at a time, like a synchronous worker), and
``gunicorn -b 127.0.0.1:N app:app`` would serve the same file.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import make_server

import psycopg

DSN = os.environ["DATABASE_URL"]
BUG = os.environ.get("APP_BUG", "").strip()
SCHEMA = (
    "create table if not exists items"
    " (id bigserial primary key, name text not null, idempotency_key text unique)"
)
REASONS = {200: "OK", 201: "Created", 404: "Not Found", 500: "Internal Server Error"}
REASONS[503] = "Service Unavailable"


def db() -> psycopg.Connection:
    return psycopg.connect(DSN, connect_timeout=1, autocommit=True)


def db_down() -> tuple[int, dict[str, Any] | None, dict[str, str]]:
    if BUG == "500_when_db_down":
        return 500, None, {}
    return 503, {"error": "database unavailable"}, {"Retry-After": "1"}


def ready() -> tuple[int, dict[str, Any] | None, dict[str, str]]:
    """Ready = can reach its database, so an outage shows in its health."""
    try:
        with db() as conn:
            conn.execute("select 1")
    except psycopg.OperationalError:
        return 503, {"ready": False}, {"Retry-After": "1"}
    return 200, {"ready": True}, {}


def count_items() -> tuple[int, dict[str, Any] | None, dict[str, str]]:
    try:
        with db() as conn:
            (n,) = conn.execute("select count(*) from items").fetchone()
    except psycopg.OperationalError:
        return db_down()
    return 200, {"items": n}, {}


def add_item(body: dict[str, Any], key: str | None) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
    try:
        with db() as conn:
            row = conn.execute(
                "insert into items (name, idempotency_key) values (%s, %s)"
                " on conflict (idempotency_key) do nothing returning id",
                (str(body.get("name", "")), key),
            ).fetchone()
            if row is None:  # the same key again: the item it created, not a second one
                row = conn.execute("select id from items where idempotency_key = %s", (key,)).fetchone()
                return 200, {"id": row[0]}, {}
    except psycopg.OperationalError:
        return db_down()
    return 201, {"id": row[0]}, {}


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The WSGI application."""
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
    if method == "GET" and path == "/health":
        status, body, headers = 200, {"ok": True}, {}
    elif method == "GET" and path == "/ready":
        status, body, headers = ready()
    elif method == "GET" and path == "/items":
        status, body, headers = count_items()
    elif method == "POST" and path == "/items":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        status, body, headers = add_item(json.loads(raw or b"{}"), environ.get("HTTP_IDEMPOTENCY_KEY"))
    else:
        status, body, headers = 404, {"error": "not found"}, {}
    payload = json.dumps(body).encode() if body is not None else b""
    start_response(
        f"{status} {REASONS[status]}",
        [*headers.items(), ("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
    )
    return [payload]


def create_schema() -> None:
    try:
        with db() as conn:
            conn.execute(SCHEMA)
    except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable, psycopg.errors.DuplicateObject):
        pass  # the other replica created it at the same moment


create_schema()  # at import, so that any WSGI server (wsgiref below, gunicorn app:app) starts ready


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="serve the tutorial's app with the standard library's wsgiref")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    make_server("127.0.0.1", args.port, app).serve_forever()
