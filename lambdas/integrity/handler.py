"""Lambda handler of the integrity assertion: the client ledger against the orders/trades tables and topics.

Evidence: ``ledger.jsonl`` streamed from the run's S3 prefix into the target database (DSN from the Secrets
Manager secret ``db_secret_arn``) and the configured topics (``kafka_bootstrap``). The event's ``config``
is the ``checks.integrity`` section; ``quiesce: {"settled": false}`` makes the result unknown, as locally.
"""

from __future__ import annotations

from lambdas.common import settings
from lambdas.common.handler import check_handler
from lambdas.common.sources import database_sources

handler = check_handler("integrity", config_keys=settings.CONFIG_KEYS, sources=database_sources)
