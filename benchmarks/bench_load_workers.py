"""Benchmark of the distributed local load: requests/s of one Locust process against a master with 1, 2
and N worker processes, on the same target, with the ledger and the merged p95.

The target is a tiny asyncio HTTP server (in this process, on 127.0.0.1) that answers every route of the
bundled traders at once with a fixed JSON body, so the load generator, not the target, is what is
measured. Each configuration runs ``--duration`` seconds with ``--users`` traders and no think time
(``RESGATE_WAIT_MIN_S=RESGATE_WAIT_MAX_S=0``); the configurations alternate over ``--rounds`` rounds so a
machine that others load hurts them alike. The **floor** is the single process (``workers: 0``, the
gate's default) measured in the same round; each distributed figure is given as a ratio to it. Per run:
requests/s (Locust's count over the test's span), the merged p95 (the master's histogram, merged bucket
by bucket), the ledger's records (must equal Locust's requests: every part complete) and the wall time
of the whole run (start to every process gone).

Results go to ``benchmarks/results/load_workers.json`` and stdout.

    .venv/bin/python benchmarks/bench_load_workers.py [--duration 15] [--users 40] [--workers 1,2,4]
        [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadgen.run import run_locust  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "load_workers.json"
BODY = b'{"order_id":"o1","status":"open","rfq_id":"r1","price":"100.00","filled_qty":0}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


class Target:
    """The asyncio server in a background thread; ``url`` once started."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.url = ""
        threading.Thread(target=self._run, daemon=True).start()
        if not self.ready.wait(10):
            raise RuntimeError("the benchmark's target did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(_serve, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self.ready.set()
        self.loop.run_forever()


def one_run(url: str, workers: int, users: int, duration_s: int) -> dict[str, Any]:
    env = {"RESGATE_WAIT_MIN_S": "0", "RESGATE_WAIT_MAX_S": "0", "RESGATE_RESEND_RATIO": "0"}
    with tempfile.TemporaryDirectory(prefix="bench-load-") as d:
        t0 = time.monotonic()
        run = run_locust(
            url, users=users, spawn_rate=users, duration_s=duration_s, ledger_dir=d, env=env, workers=workers
        )
        try:
            result = run.wait(timeout=duration_s + 120)
        finally:
            result = run.stop()
        wall = time.monotonic() - t0
    s = result.summary
    return {
        "workers": workers,
        "requests": result.total_requests,
        "rps": s.get("rps"),
        "p95_ms": s.get("p95_ms"),
        "p99_ms": s.get("p99_ms"),
        "ledger_records": result.ledger_records,
        "parts_complete": all(n["complete"] for n in result.nodes),
        "wall_s": round(wall, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--workers", default="1,2,4", help="comma-separated worker counts besides the floor (0)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    target = Target()
    runs: list[dict[str, Any]] = []
    for rnd in range(args.rounds):
        floor = one_run(target.url, 0, args.users, args.duration)
        floor["round"] = rnd
        runs.append(floor)
        for n in counts:
            r = one_run(target.url, n, args.users, args.duration)
            r["round"] = rnd
            r["ratio_to_floor"] = round(r["rps"] / floor["rps"], 3) if r["rps"] and floor["rps"] else None
            runs.append(r)
            print(json.dumps(r), flush=True)
        print(json.dumps(floor), flush=True)
    table = []
    for n in [0, *counts]:
        mine = [r for r in runs if r["workers"] == n]
        ratios = [r["ratio_to_floor"] for r in mine if r.get("ratio_to_floor") is not None]
        table.append(
            {
                "workers": n,
                "rps_median": round(statistics.median(r["rps"] for r in mine if r["rps"]), 1),
                "p95_ms_median": statistics.median(r["p95_ms"] for r in mine if r["p95_ms"] is not None),
                "ratio_to_floor_median": round(statistics.median(ratios), 3) if ratios else 1.0,
                "ratio_min": min(ratios) if ratios else 1.0,
                "ratio_max": max(ratios) if ratios else 1.0,
                "ledger_equals_requests": all(r["ledger_records"] == r["requests"] for r in mine),
                "parts_complete": all(r["parts_complete"] for r in mine),
                "wall_s_median": statistics.median(r["wall_s"] for r in mine),
            }
        )
    out = {
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
        "args": vars(args),
        "table": table,
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print("\nworkers | req/s (median) | x floor (min..max) | p95 ms | ledger == requests | wall s")
    for row in table:
        print(
            f"{row['workers']:>7} | {row['rps_median']:>14} | {row['ratio_to_floor_median']:.2f}"
            f" ({row['ratio_min']:.2f}..{row['ratio_max']:.2f}) | {row['p95_ms_median']} |"
            f" {row['ledger_equals_requests']} | {row['wall_s_median']}"
        )
    print(f"written to {RESULTS}")
    return 0 if all(r["ledger_equals_requests"] and r["parts_complete"] for r in table) else 1


if __name__ == "__main__":
    sys.exit(main())
