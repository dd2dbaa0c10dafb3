"""The matcher's leader lease: one leader per symbol group, with a fencing token, in Postgres.

**Symbol groups.** ``PB_SYMBOL_GROUPS`` = N splits the symbols into N groups by a stable hash
(:func:`group_of`: CRC-32 of the symbol modulo N, the same in every replica and every run), named by
:func:`group_names` (``all-symbols`` for the default single group, else ``symbols-<i>-of-<N>``). Each
group has its own lease row and its own fencing tokens; every replica competes for every group, so two
replicas can each lead a different group, and a replica that loses one group's lease keeps the others.

A lease is a row ``matcher_lease(grp, holder, token, expires_at, renewed_at)``. :func:`acquire` takes an
expired (or never held) lease and raises its ``token`` by one: every new leader gets a larger token than
any leader before it. :func:`renew` extends the lease only while the row still carries the caller's token,
so a deposed leader cannot renew. Lease times are the database's clock (``now()``), never a replica's.

**Fencing at the store.** A leader's every write transaction ends with :func:`fence`, just before its
commit, which reads the lease row ``FOR SHARE`` and raises :class:`Fenced` (the transaction rolls back)
unless the row still carries the writer's token. The shared row lock orders the write against a
takeover: an :func:`acquire` that bumps the token waits until the write has committed (and the new leader
then loads the state that includes it), and a write fenced after the takeover sees the new token and is
rolled back. Fencing last keeps the lock short: a leader stopped in the middle of a write (a pause)
holds no lock on the lease, so its successor is not kept waiting. So a leader that was paused,
partitioned or slow and believes it still leads cannot change the book, the sequence numbers or the
outbox: the store refuses it, whatever the process thinks (Kleppmann's fencing token).

:class:`Lease` is one replica's view: the token it holds, the local deadline until which it may act
without hearing from the store again (``ttl_s`` after the start of its last successful renewal, so a
renewal that took long shortens it), and when it last heard from the store (the heartbeat). A leader
pauses as soon as a renewal fails or the deadline passes, before the lease can expire in the store.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

import psycopg

LEASE_DDL = """
CREATE TABLE IF NOT EXISTS matcher_lease (
    grp text PRIMARY KEY,
    holder text NOT NULL,
    token bigint NOT NULL,
    expires_at timestamptz NOT NULL,
    renewed_at timestamptz NOT NULL
);
"""

DEFAULT_GROUP = "all-symbols"
"""The symbol group of a matcher: one group, every symbol (the orders topic is matched by one leader)."""

DEFAULT_TTL_S = 3.0


def group_names(count: int) -> list[str]:
    """The names of ``count`` symbol groups, in index order: ``[DEFAULT_GROUP]`` for one group (the lease
    row a single-group matcher always used), else ``symbols-<i>-of-<count>``."""
    if count < 1:
        raise ValueError(f"the number of symbol groups must be >= 1, got {count}")
    return [DEFAULT_GROUP] if count == 1 else [f"symbols-{i}-of-{count}" for i in range(count)]


def group_of(symbol: str, count: int) -> int:
    """The index of ``symbol``'s group among ``count``: CRC-32 of its UTF-8 bytes modulo ``count`` (stable
    across processes, unlike ``hash``); an empty symbol (a malformed event) belongs to group 0."""
    return zlib.crc32(symbol.encode()) % count if count > 1 else 0


class Fenced(Exception):
    """A write carried a fencing token that is no longer the lease's: this replica is not the leader."""


class LeaseLost(Exception):
    """The leader could not renew its lease in time (or was deposed): it stops matching at once."""


async def acquire(conn: psycopg.AsyncConnection, group: str, holder: str, ttl_s: float) -> int | None:
    """Take the lease of ``group`` if nobody holds it, it expired or ``holder`` held it (a replica restarted
    under its own name need not wait out its predecessor's lease: the new token fences that one anyway);
    returns the new token, else None."""
    cur = await conn.execute(
        "INSERT INTO matcher_lease (grp, holder, token, expires_at, renewed_at)"
        " VALUES (%(g)s, %(h)s, 1, now() + make_interval(secs => %(t)s), now())"
        " ON CONFLICT (grp) DO UPDATE SET holder = EXCLUDED.holder, token = matcher_lease.token + 1,"
        " expires_at = EXCLUDED.expires_at, renewed_at = EXCLUDED.renewed_at"
        " WHERE matcher_lease.expires_at < now() OR matcher_lease.holder = EXCLUDED.holder"
        " RETURNING token",
        {"g": group, "h": holder, "t": ttl_s},
    )
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def lease_free(conn: psycopg.AsyncConnection, group: str, holder: str) -> bool:
    """True when :func:`acquire` by ``holder`` would take the lease of ``group`` now (never held, expired,
    or ``holder``'s own), without taking it."""
    cur = await conn.execute(
        "SELECT expires_at < now() OR holder = %s FROM matcher_lease WHERE grp = %s", (holder, group)
    )
    row = await cur.fetchone()
    return row is None or bool(row[0])


async def renew(conn: psycopg.AsyncConnection, group: str, holder: str, token: int, ttl_s: float) -> bool:
    """Extend the lease while it still carries ``token`` (held by ``holder``); False when deposed."""
    cur = await conn.execute(
        "UPDATE matcher_lease SET expires_at = now() + make_interval(secs => %(t)s), renewed_at = now()"
        " WHERE grp = %(g)s AND holder = %(h)s AND token = %(k)s RETURNING 1",
        {"g": group, "h": holder, "k": token, "t": ttl_s},
    )
    return (await cur.fetchone()) is not None


async def fence(conn: psycopg.AsyncConnection, group: str, token: int) -> None:
    """Inside the caller's write transaction: raise :class:`Fenced` unless ``token`` is the lease's.

    The row stays share-locked until the transaction ends, so no takeover can slip in before the commit.
    """
    cur = await conn.execute("SELECT token FROM matcher_lease WHERE grp = %s FOR SHARE", (group,))
    row = await cur.fetchone()
    current = int(row[0]) if row else None
    if current != token:
        raise Fenced(f"fencing token {token} is stale: the lease of {group!r} carries {current}")


class Lease:
    """One replica's view of its lease: ``token`` while leading, the local deadline and the heartbeat."""

    def __init__(self, group: str, holder: str, ttl_s: float = DEFAULT_TTL_S) -> None:
        if ttl_s <= 0:
            raise ValueError(f"lease ttl must be > 0, got {ttl_s}")
        self.group = group
        self.holder = holder
        self.ttl_s = ttl_s
        self.token: int | None = None
        self.valid_until = 0.0
        self.renewed_at = 0.0  # monotonic start of the last renewal the store granted
        self.last_heard: float | None = None
        self.lost_reason: str | None = None

    def held(self, now: float | None = None) -> bool:
        """True while this replica holds a token, no renewal failed and the local deadline is ahead."""
        now = time.monotonic() if now is None else now
        return self.token is not None and self.lost_reason is None and now < self.valid_until

    def granted(self, token: int, started: float) -> None:
        """The store granted (or renewed) ``token`` to a request sent at ``started`` (monotonic)."""
        self.token = token
        self.renewed_at = started
        self.valid_until = started + self.ttl_s
        self.last_heard = time.monotonic()
        self.lost_reason = None

    def heard(self) -> None:
        """The store answered (an acquisition attempt that found the lease taken counts too)."""
        self.last_heard = time.monotonic()

    def lose(self, reason: str) -> None:
        """Stop leading now (a renewal failed, the store refused, the session ends)."""
        if self.token is not None and self.lost_reason is None:
            self.lost_reason = reason

    def release(self) -> None:
        """Forget the token (the session ended)."""
        self.token = None
        self.lost_reason = None

    def figures(self, now: float | None = None) -> dict[str, Any]:
        """The health figures: ``{leader: 0|1, fencing_token, lease_group, heartbeat_age_s}``.

        ``heartbeat_age_s`` is the time since this replica last heard from the lease store (None before
        the first answer); ``fencing_token`` is the token it acts under (None on a standby).
        """
        now = time.monotonic() if now is None else now
        held = self.held(now)
        return {
            "leader": 1 if held else 0,
            "fencing_token": self.token if held else None,
            "lease_group": self.group,
            "heartbeat_age_s": None if self.last_heard is None else round(now - self.last_heard, 3),
        }
