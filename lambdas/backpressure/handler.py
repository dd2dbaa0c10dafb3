"""Lambda handler of the backpressure assertion: an overload burst is shed clearly (429/503 with
Retry-After), accepted requests stay fast, and the target is back to its baseline soon after.

Evidence: ``faults.jsonl`` and ``ledger.jsonl`` in the run's S3 prefix.
"""

from __future__ import annotations

from lambdas.common.handler import check_handler

handler = check_handler("backpressure")
