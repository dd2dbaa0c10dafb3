"""Generated histories for the replay checker: a clean rebuild matches, one injected difference is named.

A small model of a projection: deposits and withdrawals on accounts (names with tabs, backslashes, ``\\N``,
quotes, commas, non-ASCII), some events redelivered. The live read model applies the stream with its
redeliveries, idempotently by event id; the rebuild applies the stream once. Rows are written in a
different order on each side. Then exactly one difference is injected: a row missing from the rebuild, an
extra row in it, one field of one row changed (any column, the last included, NULL for a value), or a
redelivery applied twice by the live side (the seeded projector bug). The checker must report a match on
the clean history and exactly that kind of difference, for exactly that one key, otherwise; with a
random number of buckets (one included).

The real gather runs (shadow schema, fingerprints, localisation) with faked topic bounds and a rebuild
that writes the generated rows (``_replay_rows``); all histories share one database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

import resgate.checks.topics
from resgate.checks.replay import ReplayConfig, check, gather
from resgate.local.postgres import create_database, drop_database
from tests.integration import _replay_rows as rr

pytestmark = pytest.mark.integration

ACCOUNTS = ["a0", "a1", "a\t2", "a\\N", "\\N", "a'3\"", "a,4", "konto-ß", "a\n5", "a 6"]
COLUMNS = [
    ("account", "text"),
    ("currency", "text"),
    ("balance", "bigint"),
    ("events", "bigint"),
    ("last_event", "text"),
]
Row = tuple[Any, ...]


def project(events: list[dict[str, Any]], *, idempotent: bool = True) -> dict[str, list[Any]]:
    """``{account: [account, currency, balance, events, last_event]}`` (idempotent by event id)."""
    seen: set[str] = set()
    rows: dict[str, list[Any]] = {}
    for e in events:
        if idempotent and e["event_id"] in seen:
            continue
        seen.add(e["event_id"])
        r = rows.setdefault(e["account"], [e["account"], e["currency"], 0, 0, None])
        r[2] += e["amount"] if e["type"] == "Deposited" else -e["amount"]
        r[3] += 1
        r[4] = e["event_id"]
    return rows


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(events once, events as delivered with redeliveries)``."""
    once = []
    for _ in range(draw(st.integers(1, 25))):
        account = draw(st.sampled_from(ACCOUNTS))
        once.append(
            {
                "event_id": str(uuid.UUID(int=draw(st.integers(0, 2**64)))),
                "type": draw(st.sampled_from(["Deposited", "Withdrawn"])),
                "account": account,
                "currency": "EUR" if ACCOUNTS.index(account) % 3 == 0 else "USD",
                "amount": draw(st.integers(1, 500)),
            }
        )
    once = list({e["event_id"]: e for e in once}.values())
    delivered = []
    for e in once:
        delivered.append(e)
        if draw(st.integers(0, 3)) == 0:
            delivered.append(e)  # a redelivery right after (a producer retry, an outbox re-publish)
    return once, delivered


@pytest.fixture(scope="module")
def dsn(pg_server: Any) -> Iterator[str]:
    name = f"genr_{uuid.uuid4().hex[:10]}"
    out = create_database(pg_server.dsn, name)
    try:
        yield out
    finally:
        drop_database(pg_server.dsn, name)


def _replay(dsn: str, live: list[Row], rebuilt: list[Row], buckets: int) -> Any:
    table = f"live_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as c:
        rr.create_table(c, sql.Identifier("public", table), COLUMNS, live)
    rr.ROWS.clear()
    rr.ROWS["balances"] = (COLUMNS, rebuilt)
    config = ReplayConfig.from_dict(
        {
            "read_models": [
                {
                    "name": "balances",
                    "table": f"public.{table}",
                    "key_columns": ["account"],
                    "shadow_table": "balances",
                }
            ],
            "topics": ["events"],
            "rebuild": {"callable": rr.REBUILD},
            "buckets": buckets,
        }
    )
    try:
        return check(gather(dsn, config, bootstrap="127.0.0.1:9"), config.thresholds)
    finally:
        rr.ROWS.clear()


SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resgate.checks.topics, "topic_bounds", rr.fake_bounds({"events": {0: (0, 100)}}))


@SETTINGS
@given(stream=streams(), buckets=st.integers(1, 8), data=st.data())
def test_a_generated_clean_rebuild_matches_in_any_row_order(
    dsn: str, bounds: None, stream: Any, buckets: int, data: st.DataObject
) -> None:
    once, delivered = stream
    live = [tuple(r) for r in project(delivered).values()]
    rebuilt = data.draw(st.permutations([tuple(r) for r in project(once).values()]))
    result = _replay(dsn, live, list(rebuilt), buckets)
    assert result.valid is True, result.to_dict()
    assert result.counts["matching"] == 1


INJECTIONS = ["missing_in_rebuilt", "extra_in_rebuilt", "different", "applied_twice"]


@settings(SETTINGS, max_examples=50)
@given(stream=streams(), buckets=st.integers(1, 8), kind=st.sampled_from(INJECTIONS), data=st.data())
def test_one_injected_difference_is_named_for_exactly_its_key(
    dsn: str, bounds: None, stream: Any, buckets: int, kind: str, data: st.DataObject
) -> None:
    once, delivered = stream
    live_rows = project(delivered)
    rebuilt_rows = project(once)
    account = data.draw(st.sampled_from(sorted(rebuilt_rows)))
    expected_kind, expected_columns = kind, None
    if kind == "missing_in_rebuilt":
        del rebuilt_rows[account]
    elif kind == "extra_in_rebuilt":
        account = "zz-extra\t\\N"
        rebuilt_rows[account] = [account, "USD", 1, 1, None]
    elif kind == "different":
        col = data.draw(st.integers(1, len(COLUMNS) - 1))
        row = rebuilt_rows[account]
        row[col] = None if row[col] is not None and data.draw(st.booleans()) else _other(row[col], col)
        expected_columns = [COLUMNS[col][0]]
    else:  # the live projector applies one event twice
        e = data.draw(st.sampled_from([e for e in once if e["account"] == account]))
        live_rows = project(_with_repeat(delivered, e), idempotent=False)
        expected_kind = "different"
        account = e["account"]
    live = [tuple(r) for r in live_rows.values()]
    rebuilt = data.draw(st.permutations([tuple(r) for r in rebuilt_rows.values()]))
    result = _replay(dsn, live, list(rebuilt), buckets)
    assert result.valid is False, result.to_dict()
    assert result.details["balances"]["diff_counts"] == {expected_kind: 1}
    assert result.counts["differing_rows"] == 1
    (ex,) = result.examples
    assert (ex["kind"], ex["key"]) == (expected_kind, {"account": account})
    if expected_columns is not None:
        assert ex["columns"] == expected_columns


def _other(value: Any, col: int) -> Any:
    if col == 2 or col == 3:
        return (value or 0) + 1
    return f"{value}~" if value is not None else ""


def _with_repeat(delivered: list[dict[str, Any]], e: dict[str, Any]) -> list[dict[str, Any]]:
    """What a non-idempotent live projector applied: each event once, and ``e`` one more time."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for d in delivered:
        if d["event_id"] in seen:
            continue
        seen.add(d["event_id"])
        out.append(d)
        if d["event_id"] == e["event_id"]:
            out.append(d)
    return out
