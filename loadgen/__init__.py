"""The gate's load generator: a Locust locustfile, its client ledger and live stats, and a runner.

``loadgen.ledger_plugin`` is the Locust plugin that records every request of any locustfile in the client
ledger (the gate loads it beside the locustfile through ``loadgen/resgate_ledger_hook.py``), with a small
API for tasks to add domain fields; ``loadgen.locustfile`` drives an order gateway with realistic traders
(orders with idempotency keys and client-side retries, cancels, RFQs, reads) through that API;
``loadgen.ledger`` writes and merges the per-process ledger files; ``loadgen.stats`` parses Locust's
``--json`` output and the per-second live files; ``loadgen.run`` starts a headless Locust subprocess (or a
master and N worker processes, each with its own ledger part and completion marker) and stops it without
leaving a process behind; ``loadgen.pacing`` is the open model's schedule (intended starts, coordinated
omission); ``loadgen.upload`` ships the results to S3 on Fargate.

The package depends only on the standard library, Locust, (for upload) boto3 and the leaf package
``resgate.contract`` (errors, the environment variable names it reads, the ledger vocabulary), so the
Fargate image holds it with ``resgate/contract`` and nothing else of ResilienceGate.
"""

from __future__ import annotations

from resgate.contract.errors import ConfigError, GateError

DEFAULT_SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN")

__all__ = ["DEFAULT_SYMBOLS", "ConfigError", "GateError"]
