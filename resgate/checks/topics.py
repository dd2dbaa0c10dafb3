"""The checkers' reads of the target's topics: partition bounds, retention truncation, and a bounded
read of every partition up to given end offsets. Every Kafka client of the gate takes its connection
arguments from :func:`client_kwargs` here, so the brokers' security settings (PLAINTEXT, TLS, MSK IAM;
:class:`resgate.sections.kafka.KafkaSettings`) apply the same way to every client, locally and on AWS.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from resgate.contract.errors import GateError
from resgate.sections.kafka import KafkaSettings

PLAINTEXT = KafkaSettings()
# A signed MSK token is valid for 15 minutes; a new one is signed this long before it expires.
_TOKEN_REFRESH_MARGIN_S = 60.0


def client_kwargs(settings: KafkaSettings | None = None) -> dict[str, Any]:
    """The aiokafka client arguments (consumer, producer, admin) for the brokers' security settings.

    PLAINTEXT: ``{"security_protocol": "PLAINTEXT"}``; SSL adds ``ssl_context`` (verifying the brokers
    against ``ca_file``, else the system trust store); SASL_SSL with ``AWS_MSK_IAM`` adds
    ``sasl_mechanism="OAUTHBEARER"`` and ``sasl_oauth_token_provider`` (:func:`msk_iam_token_provider`).
    aiokafka and the signer are imported only when TLS or IAM is configured.
    """
    s = settings or PLAINTEXT
    out: dict[str, Any] = {"security_protocol": s.security_protocol}
    if s.tls:
        from aiokafka.helpers import create_ssl_context

        out["ssl_context"] = create_ssl_context(cafile=s.ca_file)
    if s.iam:
        assert s.region is not None  # validated by KafkaSettings
        out["sasl_mechanism"] = "OAUTHBEARER"
        out["sasl_oauth_token_provider"] = msk_iam_token_provider(s.region)
    return out


def msk_iam_token_provider(region: str) -> Any:
    """An aiokafka token provider whose ``await token()`` is an MSK IAM auth token for ``region``: a
    base64url presigned ``kafka-cluster:Connect`` URL signed by AWS's signer
    (``MSKAuthTokenProvider.generate_auth_token``) with the default credential chain, reused until a
    minute before it expires. A signing failure (no credentials) raises GateError."""
    return _token_provider_class()(region)


@functools.cache
def _token_provider_class() -> type:
    from aiokafka.abc import AbstractTokenProvider
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

    class MskIamTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
        def __init__(self, region: str) -> None:
            self.region = region
            self._token: str | None = None
            self._expires_at = 0.0

        async def token(self) -> str:
            if self._token is None or time.time() >= self._expires_at - _TOKEN_REFRESH_MARGIN_S:
                loop = asyncio.get_running_loop()
                try:  # the signer reads credentials (possibly from the network): not on the event loop
                    token, expiry_ms = await loop.run_in_executor(
                        None, MSKAuthTokenProvider.generate_auth_token, self.region
                    )
                except Exception as e:
                    raise GateError(f"could not sign an MSK IAM token for {self.region}: {e}") from e
                self._token, self._expires_at = token, float(expiry_ms) / 1000.0
            return self._token

    return MskIamTokenProvider


async def topic_bounds_async(
    bootstrap: str, topics: list[str], kafka: KafkaSettings | None = None
) -> dict[str, dict[int, tuple[int, int]]]:
    """Return ``{topic: {partition: (earliest_offset, end_offset)}}`` for each topic."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client_kwargs(kafka))
    await consumer.start()
    try:
        tps: list[TopicPartition] = []
        for t in topics:
            parts = await _partitions_for(consumer, t)
            if not parts:
                raise GateError(f"topic {t!r} does not exist on {bootstrap}")
            tps += [TopicPartition(t, p) for p in sorted(parts)]
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    out: dict[str, dict[int, tuple[int, int]]] = {}
    for tp in tps:
        out.setdefault(tp.topic, {})[tp.partition] = (begin[tp], end[tp])
    return out


async def _partitions_for(consumer: Any, topic: str, timeout_s: float = 10.0) -> set[int]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return set(parts)
        if loop.time() > deadline:
            return set()
        await consumer._client.force_metadata_update()  # metadata is fetched lazily
        await asyncio.sleep(0.1)


def topic_bounds(
    bootstrap: str, topics: list[str], kafka: KafkaSettings | None = None
) -> dict[str, dict[int, tuple[int, int]]]:
    """Synchronous :func:`topic_bounds_async`."""
    return asyncio.run(topic_bounds_async(bootstrap, topics, kafka))


def truncated_partitions(bounds: dict[str, dict[int, tuple[int, int]]]) -> list[tuple[str, int, int]]:
    """Partitions whose earliest offset is above 0 (retention dropped history): ``[(topic, p, earliest)]``."""
    return [(t, p, b) for t, parts in bounds.items() for p, (b, _e) in sorted(parts.items()) if b > 0]


@dataclass
class TopicRead:
    """Counters :func:`consume_until` fills in when given one: messages and value bytes yielded."""

    messages: int = 0
    bytes: int = 0


async def consume_until(
    bootstrap: str,
    ranges: Mapping[str, Mapping[int, tuple[int, int]]],
    *,
    timeout_s: float = 300.0,
    max_records: int = 5000,
    max_partition_fetch_bytes: int = 1 << 20,
    read: TopicRead | None = None,
    kafka: KafkaSettings | None = None,
) -> AsyncIterator[list[Any]]:
    """Yield batches of aiokafka ``ConsumerRecord`` s, each partition read from ``begin`` to ``end``.

    ``ranges`` is ``{topic: {partition: (begin, end)}}`` (``end`` excluded; from :func:`topic_bounds`,
    typically begin = earliest offset). Records at or beyond ``end`` are not yielded. Memory is bounded by
    the fetch sizes (about partitions x ``max_partition_fetch_bytes`` of prefetched records), not by the
    size of the log; keep producer batches below ``max_partition_fetch_bytes``. Raises
    :class:`GateError` when the range cannot be read within ``timeout_s`` (the message says which
    partitions stopped where).
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    targets: dict[Any, int] = {}
    starts: dict[Any, int] = {}
    for topic, parts in ranges.items():
        for p, (begin, end) in parts.items():
            if end > begin:
                tp = TopicPartition(topic, int(p))
                targets[tp] = int(end)
                starts[tp] = int(begin)
    if not targets:
        return
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=max_partition_fetch_bytes,
        fetch_max_bytes=max(8 << 20, max_partition_fetch_bytes),
        **client_kwargs(kafka),
    )
    await consumer.start()
    try:
        consumer.assign(list(targets))
        for tp, begin in starts.items():
            consumer.seek(tp, begin)
        remaining = set(targets)
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                progress = []
                for tp in sorted(remaining, key=lambda t: (t.topic, t.partition)):
                    progress.append(
                        f"{tp.topic}[{tp.partition}] at {await consumer.position(tp)}/{targets[tp]}"
                    )
                raise GateError(f"could not read the topics within {timeout_s:.0f}s: {', '.join(progress)}")
            batch = await consumer.getmany(*remaining, timeout_ms=200, max_records=max_records)
            out: list[Any] = []
            for tp, msgs in batch.items():
                end = targets[tp]
                if not msgs:
                    continue
                if msgs[-1].offset < end - 1:
                    out.extend(msgs)
                    continue
                out.extend(m for m in msgs if m.offset < end)
                remaining.discard(tp)
                consumer.pause(tp)
            for tp in [tp for tp in remaining if not batch.get(tp)]:
                # position() also covers offsets that hold no record (compaction, transaction markers)
                if await consumer.position(tp) >= targets[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
            if out:
                if read is not None:
                    read.messages += len(out)
                    read.bytes += sum(len(m.value) for m in out if m.value is not None)
                yield out
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
