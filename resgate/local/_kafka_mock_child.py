"""Child process that owns a librdkafka mock cluster and serves fault-control commands on stdin.

Protocol: on start it prints one JSON line ``{"bootstrap": "..."}`` (or ``{"error": "..."}``) on stdout.
Then it reads one JSON command per line from stdin and answers one JSON line: ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``. EOF on stdin (the parent died or closed it) ends the process, and the
cluster with it; PR_SET_PDEATHSIG backs that up if the parent is killed outright.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

RD_KAFKA_PRODUCER = 0
_PR_SET_PDEATHSIG = 1


def _load_librdkafka() -> ctypes.CDLL:
    import confluent_kafka  # the wheel ships librdkafka in confluent_kafka.libs

    site = Path(confluent_kafka.__file__).resolve().parent.parent
    libs = sorted(glob.glob(str(site / "confluent_kafka.libs" / "librdkafka*.so*")))
    if not libs:
        raise RuntimeError(f"librdkafka not found in {site / 'confluent_kafka.libs'}")
    lib = ctypes.CDLL(libs[0])
    vp, i32, i16, cp = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int16, ctypes.c_char_p
    sigs: dict[str, tuple[Any, list[Any]]] = {
        "rd_kafka_conf_new": (vp, []),
        "rd_kafka_conf_set": (ctypes.c_int, [vp, cp, cp, cp, ctypes.c_size_t]),
        "rd_kafka_new": (vp, [ctypes.c_int, vp, cp, ctypes.c_size_t]),
        "rd_kafka_mock_cluster_new": (vp, [vp, ctypes.c_int]),
        "rd_kafka_mock_cluster_bootstraps": (cp, [vp]),
        "rd_kafka_mock_topic_create": (ctypes.c_int, [vp, cp, ctypes.c_int, ctypes.c_int]),
        "rd_kafka_mock_broker_set_down": (ctypes.c_int, [vp, i32]),
        "rd_kafka_mock_broker_set_up": (ctypes.c_int, [vp, i32]),
        "rd_kafka_mock_broker_set_rtt": (ctypes.c_int, [vp, i32, ctypes.c_int]),
        "rd_kafka_mock_push_request_errors_array": (
            None,
            [vp, i16, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int)],
        ),
        "rd_kafka_mock_clear_request_errors": (None, [vp, i16]),
        "rd_kafka_err2str": (cp, [ctypes.c_int]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    return lib


class MockCluster:
    """The mock cluster and its controls, via ctypes."""

    def __init__(self, brokers: int) -> None:
        self.lib = _load_librdkafka()
        conf = self.lib.rd_kafka_conf_new()
        errstr = ctypes.create_string_buffer(512)
        # A quiet handle that only anchors the mock cluster; it never produces.
        self.lib.rd_kafka_conf_set(conf, b"log_level", b"0", errstr, 512)
        self.rk = self.lib.rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, 512)
        if not self.rk:
            raise RuntimeError(f"rd_kafka_new failed: {errstr.value.decode()}")
        self.mc = self.lib.rd_kafka_mock_cluster_new(self.rk, brokers)
        if not self.mc:
            raise RuntimeError("rd_kafka_mock_cluster_new failed")
        self.brokers = brokers

    @property
    def bootstrap(self) -> str:
        return self.lib.rd_kafka_mock_cluster_bootstraps(self.mc).decode()

    def _check(self, err: int, what: str) -> None:
        if err != 0:
            raise RuntimeError(f"{what}: {self.lib.rd_kafka_err2str(err).decode()}")

    def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd.get("op")
        if op == "create_topic":
            self._check(
                self.lib.rd_kafka_mock_topic_create(
                    self.mc, cmd["topic"].encode(), int(cmd["partitions"]), int(cmd.get("replication", 1))
                ),
                f"create_topic {cmd['topic']}",
            )
        elif op == "broker_down":
            self._check(self.lib.rd_kafka_mock_broker_set_down(self.mc, int(cmd["broker"])), "broker_down")
        elif op == "broker_up":
            self._check(self.lib.rd_kafka_mock_broker_set_up(self.mc, int(cmd["broker"])), "broker_up")
        elif op == "set_rtt":
            self._check(
                self.lib.rd_kafka_mock_broker_set_rtt(self.mc, int(cmd["broker"]), int(cmd["rtt_ms"])),
                "set_rtt",
            )
        elif op == "push_request_errors":
            errs = [int(e) for e in cmd["errors"]]
            arr = (ctypes.c_int * len(errs))(*errs)
            self.lib.rd_kafka_mock_push_request_errors_array(self.mc, int(cmd["api_key"]), len(errs), arr)
        elif op == "clear_request_errors":
            self.lib.rd_kafka_mock_clear_request_errors(self.mc, int(cmd["api_key"]))
        elif op == "ping":
            pass
        else:
            raise ValueError(f"unknown command {op!r}")
        return {"ok": True}


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def main() -> int:
    _die_with_parent()
    brokers = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    out = sys.stdout
    try:
        cluster = MockCluster(brokers)
        out.write(json.dumps({"bootstrap": cluster.bootstrap, "pid": os.getpid()}) + "\n")
        out.flush()
    except Exception as e:  # report why the cluster could not start, then exit non-zero
        out.write(json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")
        out.flush()
        return 1
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            reply = cluster.handle(json.loads(line))
        except Exception as e:
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    # Exit without running librdkafka's destructors: the process is going away anyway.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
