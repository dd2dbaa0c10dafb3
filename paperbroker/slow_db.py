"""A slow database for overload tests: paperbroker's setup (:func:`paperbroker.system.init_system`), then a
trigger that makes every order insert take :data:`ORDER_DB_S`. A gateway's capacity is then known whatever
the machine (8 pooled connections / 200 ms = 40 orders/s per replica), so a burst of 150/s is beyond it on a
fast machine as on a busy one. The overload gate (``tests/e2e/gate_overload_short.yaml``) names
:func:`init_slow_system` as its ``target.local.setup``; the integration test runs :data:`SLOW_ORDERS_SQL`."""

from __future__ import annotations

from typing import Any

import psycopg

from paperbroker.system import init_system

ORDER_DB_S = 0.2
SLOW_ORDERS_SQL = f"""
CREATE OR REPLACE FUNCTION slow_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep({ORDER_DB_S}); RETURN NEW; END $$;
DROP TRIGGER IF EXISTS slow_order ON orders;
CREATE TRIGGER slow_order BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION slow_order();
"""


def init_slow_system(dsn: str, bootstrap: str, **kwargs: Any) -> None:
    """paperbroker's schema and topics, then the slow-order trigger."""
    init_system(dsn, bootstrap, **kwargs)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SLOW_ORDERS_SQL)
