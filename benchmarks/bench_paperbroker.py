"""Benchmark of paperbroker's order intake: accepted orders/s, latency of ``POST /orders`` and projection lag.

Starts an embedded Postgres and Kafka, the whole paperbroker system under the local supervisor (2 gateway
replicas behind the local balancer, ``--balancer http`` (the ALB, default) or ``tcp``, 1 matcher,
1 projector), and drives ``POST /orders``
with Locust headless (``FastHttpUser``, paced with ``constant_throughput``) for ``--duration`` seconds.
Meanwhile a probe thread submits a crossing buy/sell pair every ``--probe-interval`` seconds and measures
the time from the aggressor's acceptance (the 201) to its trade appearing in the trade blotter
(``rm_trades``) and from acceptance to the order blotter (``rm_orders``). Falls back to the
acceptance → topic lag (the outbox's ``sent_at - created_at``) when the projector tables are missing.

Percentiles come from Locust's merged ``response_times`` histogram (``--json``), never from averages.
Results go to ``benchmarks/results/paperbroker.json`` and stdout. Targets: ≥ 500 accepted orders/s,
p95 < 50 ms, projection lag < 2 s.

    .venv/bin/python benchmarks/bench_paperbroker.py [--duration 30] [--users 40] [--rate 600]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psycopg

from paperbroker.system import init_system, system_services
from resgate.local.kafka import EmbeddedKafka
from resgate.local.postgres import EmbeddedPostgres, create_database
from resgate.local.supervisor import Supervisor
from resgate.runner.local_target import parse_services, service_specs

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "paperbroker.json"
TARGETS = {"accepted_per_s": 500.0, "p95_ms": 50.0, "projection_lag_p95_s": 2.0}

LOCUSTFILE = r"""
import itertools, os, random, uuid
from locust import FastHttpUser, constant_throughput, task

SYMBOLS = [f"S{i:02d}" for i in range(20)]
RATE = float(os.environ.get("PB_BENCH_USER_RATE", "15"))
HOSTS = [h for h in os.environ.get("PB_BENCH_HOSTS", "").split(",") if h]  # direct mode: spread users
_ids = itertools.count()
_users = itertools.count()


class Trader(FastHttpUser):
    wait_time = constant_throughput(RATE)

    def on_start(self):
        self.client_id = f"bench-{uuid.uuid4().hex[:8]}"
        if HOSTS:
            self.client.base_url = HOSTS[next(_users) % len(HOSTS)]

    @task
    def order(self):
        sym = random.choice(SYMBOLS)
        body = {
            "client_id": self.client_id,
            "symbol": sym,
            "side": random.choice(("buy", "sell")),
            "qty": random.randint(1, 100),
            "price": f"{100 + random.randint(-20, 20) / 100:.2f}",
        }
        key = f"{self.client_id}-{next(_ids)}"
        self.client.post("/orders", json=body, headers={"Idempotency-Key": key}, name="POST /orders")
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_pids(data_dir: Path) -> list[int]:
    """The postmaster of ``data_dir`` and its children (backends, background workers)."""
    try:
        master = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [master]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == master:
                pids.append(int(entry))
    return pids


def cpu_snapshot(sup: Supervisor, pg: EmbeddedPostgres, kafka: EmbeddedKafka) -> dict[str, float]:
    """CPU seconds so far per component: each paperbroker service, postgres, the Kafka mock, this process
    (balancer + lag probe)."""
    out: dict[str, float] = {}
    for r in sup.replicas():
        if r.pid is not None:
            out[r.service] = out.get(r.service, 0.0) + cpu_seconds(r.pid)
    out["postgres"] = sum(cpu_seconds(p) for p in postgres_pids(Path(pg.data_dir)))
    kproc = getattr(kafka, "_proc", None)
    out["kafka_mock"] = cpu_seconds(kproc.pid) if kproc is not None else 0.0
    out["bench_process"] = cpu_seconds(os.getpid())
    return out


def percentile_from_histogram(hist: dict[int, int], q: float) -> float:
    """The ``q`` quantile (0..1) of a ``{ms_bucket: count}`` histogram (Locust's rounded buckets)."""
    total = sum(hist.values())
    if total == 0:
        return float("nan")
    rank = q * total
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return float(bucket)
    return float(max(hist))


def quantiles(values: list[float]) -> dict[str, float | None]:
    """``{p50, p95, p99, max, n}`` of raw samples (nearest rank)."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "n": 0}
    s = sorted(values)

    def q(p: float) -> float:
        return s[min(len(s) - 1, max(0, round(p * len(s) + 0.5) - 1))]

    return {"p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": s[-1], "n": len(s)}


def post(url: str, body: dict[str, Any], key: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": key},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {}
    except OSError:
        return 0, {}


def tables_exist(dsn: str, *names: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return all(conn.execute("SELECT to_regclass(%s)", (n,)).fetchone()[0] is not None for n in names)


class LagProbe(threading.Thread):
    """Every ``interval_s``: a resting sell and a crossing buy on a probe symbol; time to the blotters."""

    def __init__(self, base_url: str, dsn: str, interval_s: float, stop: threading.Event) -> None:
        super().__init__(name="lag-probe", daemon=True)
        self.base_url, self.dsn, self.interval_s, self.stop_event = base_url, dsn, interval_s, stop
        self.trade_lags: list[float] = []
        self.order_lags: list[float] = []
        self.timeouts = 0

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            n = 0
            while not self.stop_event.is_set():
                n += 1
                price = "50.00"
                sell = {"client_id": "probe-s", "symbol": "ZPROBE", "side": "sell", "qty": 1, "price": price}
                buy = {"client_id": "probe-b", "symbol": "ZPROBE", "side": "buy", "qty": 1, "price": price}
                s_status, _ = post(f"{self.base_url}/orders", sell, f"ps-{n}-{uuid.uuid4().hex[:6]}")
                b_status, b = post(f"{self.base_url}/orders", buy, f"pb-{n}-{uuid.uuid4().hex[:6]}")
                t_acc = time.monotonic()
                if s_status != 201 or b_status != 201:
                    self.stop_event.wait(self.interval_s)
                    continue
                oid = b["order_id"]
                order_seen = trade_seen = None
                deadline = t_acc + 10
                # poll the order blotter by primary key (cheap); look in rm_trades (no index on the order
                # ids, so a scan) only once the order shows a fill, to keep the probe's own load small
                while time.monotonic() < deadline and trade_seen is None:
                    row = conn.execute(
                        "SELECT filled_qty FROM rm_orders WHERE order_id = %s", (oid,)
                    ).fetchone()
                    if row is not None and order_seen is None:
                        order_seen = time.monotonic() - t_acc
                    filled = row is not None and bool(row[0])
                    if (filled or time.monotonic() > t_acc + 3) and conn.execute(
                        "SELECT 1 FROM rm_trades WHERE symbol = 'ZPROBE' AND buy_order_id = %s", (oid,)
                    ).fetchone():
                        trade_seen = time.monotonic() - t_acc
                        break
                    time.sleep(0.01)
                if trade_seen is None:
                    self.timeouts += 1
                else:
                    self.trade_lags.append(trade_seen)
                if order_seen is not None:
                    self.order_lags.append(order_seen)
                self.stop_event.wait(self.interval_s)


def run_locust(
    host: str,
    *,
    users: int,
    rate: float,
    duration_s: int,
    workdir: Path,
    direct_hosts: list[str] | None = None,
) -> dict[str, Any]:
    """Run Locust headless; return the ``POST /orders`` entry of its ``--json`` output.

    With ``direct_hosts`` the users are spread over those base URLs (no balancer in the path)."""
    locustfile = workdir / "locustfile_paperbroker.py"
    locustfile.write_text(LOCUSTFILE)
    env = {
        **os.environ,
        "PB_BENCH_USER_RATE": str(rate / users),
        "PB_BENCH_HOSTS": ",".join(direct_hosts or []),
    }
    cmd = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--host", host,
        "-u", str(users), "-r", str(users), "-t", f"{duration_s}s", "--json", "--only-summary",
        "--exit-code-on-error", "0", "--stop-timeout", "5", "--loglevel", "WARNING",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration_s + 120, cwd=workdir)
    try:
        stats = json.loads(proc.stdout)
    except ValueError as e:
        raise RuntimeError(f"locust gave no JSON (rc={proc.returncode}): {proc.stderr[-2000:]}") from e
    for entry in stats:
        if entry.get("name") == "POST /orders":
            return entry
    raise RuntimeError(f"no POST /orders entry in locust output: {proc.stdout[:500]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=30, help="seconds of load (default 30)")
    ap.add_argument("--users", type=int, default=40, help="Locust users (default 40)")
    ap.add_argument(
        "--rate", type=float, default=600.0, help="target requests/s over all users (default 600)"
    )
    ap.add_argument("--probe-interval", type=float, default=0.5, help="seconds between lag probes")
    ap.add_argument(
        "--direct", action="store_true", help="Locust against both gateways directly, without the balancer"
    )
    ap.add_argument(
        "--balancer",
        choices=("http", "tcp"),
        default="http",
        help="the local balancer's mode (http: the ALB, default; tcp: the byte proxy)",
    )
    ap.add_argument("--no-probe", action="store_true", help="skip the projection-lag probe")
    ap.add_argument(
        "--gateway-only",
        action="store_true",
        help="start only the gateways (no matcher/projector): intake cost",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    t_start = time.time()
    loadavg_before = os.getloadavg()  # the machine is shared: a busy start explains noisy numbers
    workdir = Path(tempfile.mkdtemp(prefix="pb-bench-"))
    with EmbeddedPostgres() as pg, EmbeddedKafka() as kafka:
        dsn = create_database(pg.dsn, "paperbroker_bench")
        init = init_system(dsn, kafka.bootstrap, "bench", kafka=kafka)
        services = system_services(dsn=dsn, bootstrap=kafka.bootstrap, topic_prefix="bench")
        specs = service_specs(parse_services(services), tags={"app": "paperbroker"})
        if args.gateway_only:
            specs = [s for s in specs if s.name == "gateway"]
        with Supervisor(specs, log_dir=workdir / "logs") as sup:
            if not sup.wait_healthy(90):
                print(f"system did not become healthy; logs in {workdir / 'logs'}", file=sys.stderr)
                return 2
            try:
                from resgate.local.balancer import Balancer
                from resgate.local.http_balancer import HttpBalancer

                if args.balancer == "http":
                    Balancer = HttpBalancer  # type: ignore[misc]
            except ImportError:  # no balancer: Locust spreads its users over the gateways directly
                Balancer, args.direct = None, True  # type: ignore[assignment,misc]
            gateways = sup.healthy_endpoints("gateway")
            with contextlib.ExitStack() as stack:
                if Balancer is not None and not args.direct:
                    bal = stack.enter_context(Balancer(0, lambda: sup.healthy_endpoints("gateway")))
                    host = f"http://127.0.0.1:{bal.port}"
                else:
                    host = f"http://{gateways[0][0]}:{gateways[0][1]}"
                blotter = not args.gateway_only and tables_exist(dsn, "rm_trades", "rm_orders")
                stop = threading.Event()
                probe = (
                    LagProbe(host, dsn, args.probe_interval, stop) if blotter and not args.no_probe else None
                )
                if probe:
                    probe.start()
                cpu0 = cpu_snapshot(sup, pg, kafka)
                children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.time()
                direct = [f"http://{h}:{p}" for h, p in gateways] if args.direct else None
                entry = run_locust(
                    host,
                    users=args.users,
                    rate=args.rate,
                    duration_s=args.duration,
                    workdir=workdir,
                    direct_hosts=direct,
                )
                load_s = time.time() - t0
                cpu1 = cpu_snapshot(sup, pg, kafka)
                children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu_share = {k: round(100 * (cpu1[k] - cpu0.get(k, 0.0)) / load_s, 1) for k in cpu1}
                locust_cpu = children1.ru_utime + children1.ru_stime - children0.ru_utime - children0.ru_stime
                cpu_share["locust"] = round(100 * locust_cpu / load_s, 1)
                stop.set()
                if probe:
                    probe.join(15)
                # quiesce (bounded): the outbox drains
                deadline = time.monotonic() + 30
                with psycopg.connect(dsn) as conn:
                    while time.monotonic() < deadline:
                        unsent = conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[
                            0
                        ]
                        if unsent == 0:
                            break
                        time.sleep(0.2)
                    topic_lag = conn.execute(
                        "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP"
                        " (ORDER BY extract(epoch FROM sent_at - created_at)), count(*)"
                        " FROM outbox WHERE sent_at IS NOT NULL AND event_type = 'OrderAccepted'"
                    ).fetchone()
                    orders_in_db = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
                    trades = conn.execute("SELECT count(*) FROM rm_trades").fetchone()[0] if blotter else None

    hist = {int(k): int(v) for k, v in entry["response_times"].items()}
    ok = int(entry["num_requests"]) - int(entry["num_failures"])
    wall = max(1e-9, float(entry["last_request_timestamp"]) - float(entry["start_time"]))
    lag_q = quantiles(probe.trade_lags) if probe else None
    results = {
        "benchmark": "paperbroker POST /orders",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
        "setup": {
            "gateways": 2,
            "services": [s.name for s in specs],
            "balancer": None if args.direct else args.balancer,
            "users": args.users,
            "target_rate_per_s": args.rate,
            "duration_s": args.duration,
            "cpus": os.cpu_count(),
            "topics": init["topics"],
        },
        "requests": int(entry["num_requests"]),
        "failures": int(entry["num_failures"]),
        "accepted": ok,
        "accepted_per_s": round(ok / wall, 1),
        "latency_ms": {
            "p50": percentile_from_histogram(hist, 0.50),
            "p95": percentile_from_histogram(hist, 0.95),
            "p99": percentile_from_histogram(hist, 0.99),
            "max": float(entry["max_response_time"]),
        },
        "orders_in_db": orders_in_db,
        "trades_in_blotter": trades,
        "acceptance_to_topic_s": {
            "p50": topic_lag[0][0] if topic_lag[0] else None,
            "p95": topic_lag[0][1] if topic_lag[0] else None,
            "p99": topic_lag[0][2] if topic_lag[0] else None,
            "n": topic_lag[1],
        },
        "acceptance_to_trade_blotter_s": lag_q,
        "acceptance_to_order_blotter_s": quantiles(probe.order_lags) if probe else None,
        "probe_timeouts": probe.timeouts if probe else None,
        "load_wall_s": round(load_s, 1),
        "cpu_percent_during_load": cpu_share,
        "loadavg_before": loadavg_before,
        "loadavg_after": os.getloadavg(),
    }
    lag95 = lag_q["p95"] if lag_q and lag_q["p95"] is not None else results["acceptance_to_topic_s"]["p95"]
    results["targets"] = TARGETS
    results["meets_targets"] = {
        "accepted_per_s": results["accepted_per_s"] >= TARGETS["accepted_per_s"],
        "p95_ms": results["latency_ms"]["p95"] < TARGETS["p95_ms"],
        "projection_lag_p95_s": lag95 is not None and lag95 < TARGETS["projection_lag_p95_s"],
    }
    shutil.rmtree(workdir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    lat = results["latency_ms"]
    print(
        f"accepted {results['accepted']} orders ({results['accepted_per_s']}/s),"
        f" failures {results['failures']}\n"
        f"POST /orders latency p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms, p99 {lat['p99']:.0f} ms\n"
        f"acceptance -> trade blotter: {lag_q}\n"
        f"acceptance -> topic: {results['acceptance_to_topic_s']}\n"
        f"CPU % of one core during the load: {cpu_share}\n"
        f"meets targets: {results['meets_targets']}\nwritten to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
