"""Lambda handler of the recovery assertion: after each fault, healthy again within the RTO?

Evidence: ``faults.jsonl`` and ``health.jsonl`` in the run's S3 prefix (the timeline step writes them from
the FIS experiments and ECS tasks), plus the ledger's error-ratio windows when ``ledger.jsonl`` is present;
optional ``observed_until`` (epoch seconds).
"""

from __future__ import annotations

from lambdas.common.handler import check_handler

handler = check_handler("recovery")
