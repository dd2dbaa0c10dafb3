"""Benchmark of the replay checker against the floor of raw consume + raw COPY, in the same run.

Starts its own embedded Postgres and Kafka, publishes ``--events`` trade events over enough partitions
(each stays well under the mock broker's 5 MiB per-partition retention) and builds the live read model
(a trade blotter, one row per event, primary key ``trade_id``). Then it times:

- the floor: ``consume`` — every partition read from offset 0 to its end, records not parsed — plus
  ``copy`` — the read model's rows, already formatted, COPYed into a table with the same DDL;
- ``replay`` — :func:`resgate.checks.replay.gather` + :func:`check` with the blotter projection below as
  the rebuild callable, run in a child process so that its peak RSS is its own.

Reports replay / floor (target <= 1.5) with the phases of the replay, and the child's peak RSS (its
``VmHWM``: Linux carries ``ru_maxrss`` across exec, so the child's ``ru_maxrss`` would include this
parent's peak; it is recorded too). Peak RSS must not grow with the event count: compare
``--events 100000`` with ``--events 1000000`` (same partition count).
Writes ``benchmarks/results/bench_replay.json`` (one entry per event count) and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from resgate.checks.replay import ReplayConfig, check, gather
from resgate.checks.sqlutil import CopyBuffer, copy_text
from resgate.checks.topics import consume_until, topic_bounds
from resgate.local.kafka import EmbeddedKafka
from resgate.local.postgres import EmbeddedPostgres, create_database

RESULTS = Path(__file__).resolve().parent / "results" / "bench_replay.json"
TOPIC = "bench.trades"
TABLE = "trades_blotter"
DDL = (
    "CREATE TABLE {t} (trade_id text PRIMARY KEY, symbol text NOT NULL, seq bigint NOT NULL, "
    "qty bigint NOT NULL, price numeric(20, 6) NOT NULL, buyer text NOT NULL, seller text NOT NULL)"
)
EVENT_BYTES = 130  # about, for the partition count
PARTITION_BUDGET = 3 << 20  # bytes per partition, well under the mock's 5 MiB retention
DEFAULT_PARTITIONS = 48


def rss_mb() -> float:
    """``ru_maxrss`` in MB. Linux carries it across exec, so a child started by a big parent inherits
    the parent's peak: :func:`hwm_mb` is the child's own."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def hwm_mb() -> float:
    """Peak RSS of this process image (``VmHWM``; reset at exec), or ``ru_maxrss`` where unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss_mb()


def events(n: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(i, event)``: deterministic trade events over 50 symbols."""
    for i in range(n):
        sym = f"SYM{i % 50:02d}"
        yield (
            i,
            {
                "type": "TradeExecuted",
                "trade_id": f"t{i:08d}",
                "symbol": sym,
                "seq": i // 50 + 1,
                "qty": i % 97 + 1,
                "price": f"{100 + (i % 1000) / 100:.2f}",
                "buyer": f"c{i % 211}",
                "seller": f"c{i % 199}",
            },
        )


def row_line(e: dict[str, Any]) -> str:
    return (
        f"{e['trade_id']}\t{e['symbol']}\t{e['seq']}\t{e['qty']}\t{copy_text(e['price'])}\t"
        f"{copy_text(e['buyer'])}\t{copy_text(e['seller'])}\n"
    )


# --- the projection under test (the rebuild callable) ---------------------------------------------------


def project(conn: psycopg.Connection[Any], schema: str, end_offsets: Any, *, bootstrap: str) -> None:
    """Rebuild the trade blotter into ``schema``: stream the events, COPY one row per event."""
    conn.execute(sql.SQL(DDL).format(t=sql.Identifier(schema, TABLE)))
    ranges = {t: {int(p): (0, int(e)) for p, e in ps.items()} for t, ps in end_offsets.items()}

    async def load() -> None:
        loads = json.loads
        copy = sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(schema, TABLE))
        with conn.cursor() as cur, cur.copy(copy) as cp:
            async for batch in consume_until(bootstrap, ranges):
                # decode first: json.loads(bytes) sniffs the encoding and is about 2x slower
                cp.write("".join([row_line(loads(m.value.decode())) for m in batch]))

    asyncio.run(load())


# --- floor ------------------------------------------------------------------------------------------


def floor_consume(bootstrap: str, ranges: dict[str, dict[int, tuple[int, int]]]) -> tuple[float, int]:
    async def go() -> int:
        n = 0
        async for batch in consume_until(bootstrap, ranges):
            n += len(batch)
        return n

    t = time.perf_counter()
    n = asyncio.run(go())
    return time.perf_counter() - t, n


def floor_copy(dsn: str, n: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS floor_copy")
        conn.execute(sql.SQL(DDL).format(t=sql.Identifier("floor_copy")))
        t = time.perf_counter()
        buf = CopyBuffer()
        with conn.cursor() as cur, cur.copy("COPY floor_copy FROM STDIN") as cp:
            for line in (row_line(e) for _i, e in events(n)):
                if buf.add_line(line):
                    cp.write(buf.take())
            cp.write(buf.take())
        elapsed = time.perf_counter() - t
        conn.execute("DROP TABLE floor_copy")
    return elapsed


# --- setup ------------------------------------------------------------------------------------------


def publish(bootstrap: str, n: int, partitions: int) -> None:
    from aiokafka import AIOKafkaProducer

    async def go() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks=1, linger_ms=5, max_batch_size=128 * 1024
        )
        await producer.start()
        try:
            for i, e in events(n):
                await producer.send(
                    TOPIC, json.dumps(e, separators=(",", ":")).encode(), partition=i % partitions
                )
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(go())


def build_live(dsn: str, n: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(DDL).format(t=sql.Identifier(TABLE)))
        buf = CopyBuffer()
        with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(TABLE))) as cp,
        ):
            for _i, e in events(n):
                if buf.add_line(row_line(e)):
                    cp.write(buf.take())
            cp.write(buf.take())
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(TABLE)))


CONFIG = {
    "read_models": [{"name": "trades_blotter", "table": f"public.{TABLE}", "key_columns": ["trade_id"]}],
    "topics": [TOPIC],
    "rebuild": {"callable": "__main__:project", "timeout_s": 600},
}


def child(dsn: str, bootstrap: str) -> int:
    """Run the replay once in this (fresh) process; print timings and peak RSS as JSON."""
    config = ReplayConfig.from_dict(CONFIG)
    rss0 = hwm_mb()
    t = time.perf_counter()
    findings = gather(dsn, config, bootstrap=bootstrap)
    result = check(findings, config.thresholds)
    elapsed = time.perf_counter() - t
    m = findings.models[0]
    print(
        json.dumps(
            {
                "replay_s": elapsed,
                "valid": result.valid,
                "error": result.error,
                "rows": m.rebuilt_rows,
                "timings": m.timings,
                "peak_rss_mb": hwm_mb(),
                "rss_before_mb": rss0,
                "ru_maxrss_mb": rss_mb(),
            }
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=0, help="default: 48, or more if the volume needs it")
    ap.add_argument("--repeat", type=int, default=2, help="timed repetitions; the best of each is kept")
    ap.add_argument("--child", nargs=2, metavar=("DSN", "BOOTSTRAP"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(*args.child)

    n = args.events
    # The same partition count for every size up to 1M, so that peak RSS compares like with like.
    partitions = args.partitions or max(DEFAULT_PARTITIONS, math.ceil(n * EVENT_BYTES / PARTITION_BUDGET))
    with EmbeddedPostgres() as pg, EmbeddedKafka(brokers=1) as kafka:
        dsn = create_database(pg.dsn, "bench")
        kafka.create_topic(TOPIC, partitions)
        t = time.perf_counter()
        publish(kafka.bootstrap, n, partitions)
        build_live(dsn, n)
        setup_s = time.perf_counter() - t
        bounds = topic_bounds(kafka.bootstrap, [TOPIC])
        if any(b > 0 for b, _e in bounds[TOPIC].values()):
            print("a partition was truncated by the mock's retention: use more partitions", file=sys.stderr)
            return 2
        ranges = {TOPIC: {p: (0, e) for p, (_b, e) in bounds[TOPIC].items()}}
        consumes, copies, replays = [], [], []
        child_out: dict[str, Any] = {}
        for _ in range(args.repeat):
            c_s, consumed = floor_consume(kafka.bootstrap, ranges)
            consumes.append(c_s)
            copies.append(floor_copy(dsn, n))
            proc = subprocess.run(
                [sys.executable, __file__, "--events", str(n), "--child", dsn, kafka.bootstrap],
                capture_output=True,
                text=True,
                timeout=900,
            )
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 2
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            replays.append(out["replay_s"])
            if not child_out or out["replay_s"] <= min(replays):
                child_out = out

    floor_s = min(consumes) + min(copies)
    replay_s = min(replays)
    entry = {
        "events": n,
        "partitions": partitions,
        "consumed": consumed,
        "setup_s": round(setup_s, 2),
        "floor_consume_s": round(min(consumes), 3),
        "floor_copy_s": round(min(copies), 3),
        "floor_s": round(floor_s, 3),
        "replay_s": round(replay_s, 3),
        "replay_runs_s": [round(x, 3) for x in replays],
        "ratio": round(replay_s / floor_s, 3),
        "replay_phases_s": child_out.get("timings"),
        "verdict": child_out.get("valid"),
        "rebuilt_rows": child_out.get("rows"),
        "peak_rss_mb": round(child_out.get("peak_rss_mb", 0), 1),
        "rss_before_replay_mb": round(child_out.get("rss_before_mb", 0), 1),
        "ru_maxrss_mb_inherited": round(child_out.get("ru_maxrss_mb", 0), 1),
        "targets": {"ratio": 1.5, "peak_rss": "flat between 100k and 1M events"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[str(n)] = entry
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    print(f"replay benchmark, {n:,} events over {partitions} partitions, read model {TABLE}")
    print(f"  {'phase':<30}{'seconds':>10}")
    print(f"  {'floor: raw consume':<30}{min(consumes):>10.2f}")
    print(f"  {'floor: raw COPY of the rows':<30}{min(copies):>10.2f}")
    print(f"  {'floor total':<30}{floor_s:>10.2f}")
    print(f"  {'replay (measure + check)':<30}{replay_s:>10.2f}   ratio {replay_s / floor_s:.2f}")
    for k, v in (child_out.get("timings") or {}).items():
        print(f"    {k:<28}{v:>10.2f}")
    print(
        f"  verdict {entry['verdict']}, peak RSS of the replay process {entry['peak_rss_mb']} MB "
        f"({entry['rss_before_replay_mb']} MB before the replay started)"
    )
    print(f"  written to {RESULTS}")
    return 0 if entry["verdict"] is True else 1


if __name__ == "__main__":
    sys.exit(main())
