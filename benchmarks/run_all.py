"""Run every benchmark in turn (``make bench``): paperbroker intake, integrity and replay at 100k and 1M.

Each script prints its own table and writes ``benchmarks/results/<name>.json``; this only sequences them
so that they do not compete for the two cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = [
    ["bench_paperbroker.py", "--duration", "30"],
    ["bench_load_workers.py", "--duration", "10", "--rounds", "2"],
    ["bench_integrity.py", "--events", "100000"],
    ["bench_integrity.py", "--events", "1000000"],
    ["bench_replay.py", "--events", "100000"],
    ["bench_replay.py", "--events", "1000000"],
    ["bench_stream_ledger.py"],
]


def main() -> int:
    failed = 0
    for script, *args in RUNS:
        print(f"\n=== {script} {' '.join(args)}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / script), *args])
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
