"""Benchmark of the stream ledger's cost: how many market-data messages per second one load process
receives with its subscribers recording every event into the stream ledger, against the same subscribers
recording nothing.

A feed (:class:`paperbroker.feed.MarketFeed` in an aiohttp server, in a child process) publishes synthetic
trades on 4 symbols at ``--rate`` trades/s; ``--subscribers`` subscribers to every symbol run as greenlets
in this process under gevent's monkey patching, as Locust's StreamUser does
(:class:`loadgen.stream_client.Subscriber`). Rounds alternate ledger on / off (``--rounds`` pairs of
``--seconds`` each, after a 1 s warm-up), so a machine that others load hurts both alike. The figure is
the median over pairs of (messages/s with the ledger) / (messages/s without); offer more than one process
can take (rate x subscribers) to compare capacities.

Results go to ``benchmarks/results/stream_ledger.json`` and stdout.

    .venv/bin/python benchmarks/bench_stream_ledger.py [--subscribers 20] [--rate 1000] [--seconds 5]
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and "--serve" not in sys.argv:
    from gevent import monkey

    monkey.patch_all()

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SYMBOLS = ["AAPL", "MSFT", "GOOG", "AMZN"]


def serve(port: int, rate: float) -> None:
    """The child: a feed on ``port`` publishing ``rate`` trades/s round-robin over :data:`SYMBOLS`."""
    import asyncio

    from aiohttp import web

    from paperbroker.feed import MarketFeed
    from resgate.contract.stream import STREAM_PATH

    feed = MarketFeed(history=10_000)

    async def publish() -> None:
        seq = {s: 0 for s in SYMBOLS}
        start, n = time.monotonic(), 0
        while True:
            due = int((time.monotonic() - start) * rate)
            while n < due:
                sym = SYMBOLS[n % len(SYMBOLS)]
                seq[sym] += 1
                feed.add_trade({"symbol": sym, "seq": seq[sym], "price": "100", "qty": 1, "ts": time.time()})
                n += 1
            await asyncio.sleep(0.005)

    async def main() -> None:
        app = web.Application()
        app.router.add_get(STREAM_PATH, feed.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("ready", flush=True)
        await publish()

    asyncio.run(main())


def one_round(url: str, subscribers: int, seconds: float, ledger_dir: Path | None) -> float:
    """Messages/s the subscribers received over ``seconds`` (after 1 s of warm-up)."""
    import gevent

    from loadgen.ledger import LedgerWriter
    from loadgen.stream_client import Subscriber, SubscriberState
    from resgate.contract.stream import EV_MSG

    writer = LedgerWriter(ledger_dir, prefix="stream", flush_every=2000) if ledger_dir else None
    counted = {"n": 0, "on": False}

    def record(r: dict[str, Any]) -> None:
        if counted["on"] and r["event"] == EV_MSG:
            counted["n"] += 1
        if writer is not None:
            writer.write(r)

    subs = [Subscriber(url, SubscriberState(f"b{i}", SYMBOLS), record) for i in range(subscribers)]
    greenlets = [gevent.spawn(s.run) for s in subs]
    gevent.sleep(1.0)
    counted["on"] = True
    t0 = time.monotonic()
    gevent.sleep(seconds)
    counted["on"] = False
    elapsed = time.monotonic() - t0
    for s in subs:
        s.stop()
    gevent.joinall(greenlets, timeout=5)
    if writer is not None:
        writer.flush()
    return counted["n"] / elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=20)
    ap.add_argument("--rate", type=float, default=1000.0, help="trades/s the feed publishes")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--serve", nargs=2, metavar=("PORT", "RATE"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stream_ledger.json")
    args = ap.parse_args(argv)
    if args.serve:
        serve(int(args.serve[0]), float(args.serve[1]))
        return 0
    from resgate.contract.stream import STREAM_PATH
    from resgate.local.ports import free_port

    port = free_port()
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), str(args.rate)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        url = f"ws://127.0.0.1:{port}{STREAM_PATH}"
        pairs = []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.rounds):
                on = one_round(url, args.subscribers, args.seconds, Path(tmp) / f"r{i}")
                off = one_round(url, args.subscribers, args.seconds, None)
                pairs.append({"with_ledger_msgs_s": round(on, 1), "without_msgs_s": round(off, 1)})
                print(f"round {i + 1}: with ledger {on:,.0f} msg/s, without {off:,.0f} msg/s", flush=True)
    finally:
        child.terminate()
        child.wait(10)
    ratios = [p["with_ledger_msgs_s"] / p["without_msgs_s"] for p in pairs if p["without_msgs_s"]]
    result = {
        "subscribers": args.subscribers,
        "offered_msgs_s": args.rate * args.subscribers,
        "seconds": args.seconds,
        "rounds": pairs,
        "ratio_median": round(statistics.median(ratios), 3) if ratios else None,
        "ratio_min": round(min(ratios), 3) if ratios else None,
        "ratio_max": round(max(ratios), 3) if ratios else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
