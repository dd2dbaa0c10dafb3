"""Benchmark of the idle fault proxy: the latency it adds and what it costs paperbroker's order intake.

1. **Round trip**: ``--pings`` request/response round trips of 64 bytes against a local echo server,
   direct and through an idle :class:`resgate.local.faultproxy.FaultProxy` (interleaved in rounds, so a
   busy machine hurts both alike); reports p50/p95 of each and the difference.
2. **Intake**: paperbroker's gateways (``bench_paperbroker.py`` setup, gateways only) driven by Locust for
   ``--duration`` seconds at ``--rate`` orders/s, with the gateways' ``${pg.dsn}`` direct and then through
   one idle proxy per gateway service, and the clients through the balancer with its (idle) toxics in
   both runs. Both sets of gateways run side by side and Locust drives one at a time, alternating
   direct, proxy, proxy, direct, ... (``--rounds`` pairs), so a machine that others load hurts both alike;
   each pair gives a ratio of accepted orders/s (proxy / direct), and the figure is the median of those
   ratios, with their spread (min, max). Offer more than the gateways can
   take (``--rate`` above their capacity, about 500/s on 2 cores) to compare capacities; a paced rate below
   capacity only shows whether the proxy keeps up with it.
   Targets: the idle proxy adds < 1 ms at p50 and lowers intake by ≤ 5 %.

Results go to ``benchmarks/results/faultproxy.json`` and stdout.

    .venv/bin/python benchmarks/bench_faultproxy.py [--pings 2000] [--duration 20] [--rate 400]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import socketserver
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_paperbroker import run_locust  # noqa: E402

from paperbroker.system import init_system, system_services  # noqa: E402
from resgate.local.balancer import Balancer  # noqa: E402
from resgate.local.faultproxy import FaultProxy, dsn_address, proxied_dsn  # noqa: E402
from resgate.local.kafka import EmbeddedKafka  # noqa: E402
from resgate.local.postgres import EmbeddedPostgres, create_database  # noqa: E402
from resgate.local.supervisor import Supervisor  # noqa: E402
from resgate.runner.local_target import parse_services, service_specs  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "faultproxy.json"
TARGETS = {"added_p50_ms": 1.0, "intake_ratio_min": 0.95}


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := self.request.recv(65536):
            self.request.sendall(data)


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def round_trips(pings: int) -> dict[str, Any]:
    """p50/p95 (ms) of 64-byte round trips direct and through an idle proxy, and the added latency."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = FaultProxy(server.server_address)  # type: ignore[arg-type]
    proxy.start()
    times: dict[str, list[float]] = {"direct": [], "proxy": []}
    try:
        socks = {
            "direct": socket.create_connection(server.server_address, timeout=5),  # type: ignore[arg-type]
            "proxy": socket.create_connection(proxy.address, timeout=5),
        }
        msg = b"x" * 64
        for s in socks.values():
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(pings):
            for name in ("direct", "proxy") if i % 2 else ("proxy", "direct"):
                s = socks[name]
                t0 = time.perf_counter()
                s.sendall(msg)
                got = 0
                while got < len(msg):
                    got += len(s.recv(4096))
                times[name].append((time.perf_counter() - t0) * 1000)
        for s in socks.values():
            s.close()
    finally:
        proxy.stop()
        server.shutdown()
        server.server_close()
    out: dict[str, Any] = {k: {"p50_ms": _pct(v, 0.5), "p95_ms": _pct(v, 0.95)} for k, v in times.items()}
    out["added_p50_ms"] = out["proxy"]["p50_ms"] - out["direct"]["p50_ms"]
    out["added_p95_ms"] = out["proxy"]["p95_ms"] - out["direct"]["p95_ms"]
    out["pings"] = pings
    return out


def _p50_ms(entry: dict[str, Any]) -> float:
    """p50 of a Locust ``--json`` entry's ``response_times`` histogram ({ms: count})."""
    hist = {int(k): v for k, v in entry["response_times"].items()}
    total, acc = sum(hist.values()), 0
    for ms in sorted(hist):
        acc += hist[ms]
        if acc >= total / 2:
            return float(ms)
    return 0.0


def intake(duration_s: int, rate: float, users: int, rounds: int) -> dict[str, Any]:
    """Accepted orders/s with the gateways' Postgres direct vs through an idle proxy.

    Two sets of gateways run side by side on the same Postgres and Kafka, one given the direct DSN and
    one the proxy's, each behind its own balancer; Locust drives one set at a time, ``rounds`` pairs in
    the order direct, proxy, proxy, direct, ... (so a drift of the machine's load favours neither). Returns
    the accepted orders/s of each run, the per-pair ratios (proxy / direct), their median and spread.
    """
    workdir = Path(tempfile.mkdtemp(prefix="faultproxy-bench-"))
    runs: dict[str, list[float]] = {"direct": [], "proxy": []}
    p50s: dict[str, list[float]] = {"direct": [], "proxy": []}
    cpu_ms: dict[str, list[float]] = {"direct": [], "proxy": []}
    with EmbeddedPostgres() as pg, EmbeddedKafka() as kafka, ExitStack() as stack:
        dsn = create_database(pg.dsn, "faultproxy_bench")
        init_system(dsn, kafka.bootstrap, "bench", kafka=kafka)
        proxy = stack.enter_context(FaultProxy(dsn_address(dsn), name="gateway-postgres"))
        hosts = {}
        for mode, gw_dsn in (("direct", dsn), ("proxy", proxied_dsn(dsn, proxy.address))):
            services = system_services(dsn=gw_dsn, bootstrap=kafka.bootstrap, topic_prefix="bench")
            specs = [s for s in service_specs(parse_services(services)) if s.name == "gateway"]
            sup = stack.enter_context(Supervisor(specs, log_dir=workdir / f"logs-{mode}"))
            if not sup.wait_healthy(90):
                raise RuntimeError(f"gateways did not become healthy; logs in {workdir}")
            bal = stack.enter_context(Balancer(0, lambda sup=sup: sup.healthy_endpoints("gateway")))
            hosts[mode] = f"http://127.0.0.1:{bal.port}"
        for i in range(rounds):
            for mode in ("direct", "proxy") if i % 2 == 0 else ("proxy", "direct"):
                cpu0 = time.process_time()  # this process: both balancers, the proxy, the supervisors
                entry = run_locust(
                    hosts[mode], users=users, rate=rate, duration_s=duration_s, workdir=workdir
                )
                cpu = time.process_time() - cpu0
                accepted = entry["num_requests"] - entry["num_failures"]
                runs[mode].append(accepted / duration_s)
                p50s[mode].append(_p50_ms(entry))
                cpu_ms[mode].append(cpu * 1000 / max(accepted, 1))
                print(
                    f"  round {i + 1} {mode:6} accepted/s {runs[mode][-1]:7.1f}  p50 {p50s[mode][-1]:.0f} ms "
                    f"in-process CPU {cpu_ms[mode][-1]:.3f} ms/order"
                )
    med = {k: statistics.median(v) for k, v in runs.items()}
    pairs = [p / d for d, p in zip(runs["direct"], runs["proxy"], strict=True) if d]
    # The proxy's CPU per order (the in-process CPU with it minus without), as a share of the machine at the
    # direct intake rate: what it can take from a CPU-bound intake, whatever else loads the machine.
    proxy_cpu_ms = statistics.median(cpu_ms["proxy"]) - statistics.median(cpu_ms["direct"])
    cores = os.cpu_count() or 1
    return {
        "accepted_per_s": runs,
        "post_orders_p50_ms": p50s,
        "in_process_cpu_ms_per_order": cpu_ms,
        "proxy_cpu_ms_per_order": proxy_cpu_ms,
        "proxy_cpu_share_at_direct_rate": proxy_cpu_ms / 1000 * med["direct"] / cores,
        "pair_ratios": pairs,
        "ratio": statistics.median(pairs) if pairs else None,
        "ratio_min": min(pairs, default=None),
        "ratio_max": max(pairs, default=None),
        "ratio_of_medians": med["proxy"] / med["direct"] if med["direct"] else None,
        "rate": rate,
        "users": users,
        "duration_s": duration_s,
        "rounds": rounds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pings", type=int, default=2000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rate", type=float, default=400.0)
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=8, help="direct/proxy pairs of intake runs")
    ap.add_argument("--skip-intake", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    result: dict[str, Any] = {
        "targets": TARGETS,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_before": os.getloadavg(),  # the machine is shared: a busy start explains noisy numbers
        "round_trip": round_trips(args.pings),
    }
    rt = result["round_trip"]
    print(
        f"round trip p50 direct {rt['direct']['p50_ms']:.3f} ms, proxy {rt['proxy']['p50_ms']:.3f} ms "
        f"(+{rt['added_p50_ms']:.3f}); p95 direct {rt['direct']['p95_ms']:.3f}, "
        f"proxy {rt['proxy']['p95_ms']:.3f} (+{rt['added_p95_ms']:.3f})"
    )
    if not args.skip_intake:
        result["intake"] = intake(args.duration, args.rate, args.users, args.rounds)
        it = result["intake"]
        print(
            f"intake accepted/s direct {it['accepted_per_s']['direct']} proxy {it['accepted_per_s']['proxy']}"
        )
        print(
            f"intake ratio proxy/direct, median of {len(it['pair_ratios'])} pairs {it['ratio']:.3f} "
            f"(min {it['ratio_min']:.3f}, max {it['ratio_max']:.3f}; target >= {TARGETS['intake_ratio_min']})"
        )
        print(
            f"proxy CPU {it['proxy_cpu_ms_per_order']:.3f} ms/order = "
            f"{it['proxy_cpu_share_at_direct_rate']:.1%} of the machine at the direct rate"
        )
    result["loadavg_after"] = os.getloadavg()
    result["pass"] = rt["added_p50_ms"] < TARGETS["added_p50_ms"] and (
        args.skip_intake or (result["intake"]["ratio"] or 0) >= TARGETS["intake_ratio_min"]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out}; pass={result['pass']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
