"""Lambda handler of the retryable assertion: every failed request failed in a clear, retryable way.

Evidence: ``ledger.jsonl`` in the run's S3 prefix, streamed.
"""

from __future__ import annotations

from lambdas.common.handler import check_handler

handler = check_handler("retryable")
