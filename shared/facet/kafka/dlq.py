"""Dead-letter publishing: a poison input is kept, with why it was refused, never dropped silently."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from facet.errors import PoisonMessageError
from facet.logging import get_logger
from facet.service import metric_names as names

log = get_logger(__name__)

DEAD_LETTERED = Counter(names.DEAD_LETTERED_TOTAL, "Inputs routed to the dead-letter topic", ["service", "reason"])
DEAD_LETTER_FAILURES = Counter(names.DEAD_LETTER_FAILURES_TOTAL,
                               "Inputs that could not be written to the dead-letter topic", ["service"])

#: Header names on a dead-lettered record (all values are UTF-8 bytes).
REASON_HEADER = "facet-dlq-reason"
DETAIL_HEADER = "facet-dlq-detail"
_MAX_DETAIL = 1_000


class DeadLetterPublisher:
    def __init__(self, producer: AIOKafkaProducer, topic: str, service: str) -> None:
        self._producer = producer
        self._topic = topic
        self._service = service

    async def publish(
        self,
        error: PoisonMessageError,
        *,
        value: bytes | None,
        key: bytes | None = None,
        source_topic: str = "",
        partition: int = -1,
        offset: int = -1,
    ) -> None:
        """Write the original bytes with the reason in headers; wait for the broker's ack."""
        headers = [
            (REASON_HEADER, error.reason.encode()),
            (DETAIL_HEADER, error.detail[:_MAX_DETAIL].encode("utf-8", "replace")),
            ("facet-dlq-service", self._service.encode()),
            ("facet-dlq-source-topic", source_topic.encode()),
            ("facet-dlq-source-partition", str(partition).encode()),
            ("facet-dlq-source-offset", str(offset).encode()),
            ("facet-dlq-failed-at", datetime.now(UTC).isoformat().encode()),
        ]
        await self._producer.send_and_wait(self._topic, value=value or b"", key=key, headers=headers)
        DEAD_LETTERED.labels(self._service, error.reason).inc()
        log.warning(
            "dead_lettered",
            reason=error.reason,
            detail=error.detail[:200],
            source_topic=source_topic,
            partition=partition,
            offset=offset,
        )

    async def publish_record(self, error: PoisonMessageError, record: object) -> None:
        """Dead-letter a consumed record (anything with aiokafka's ConsumerRecord attributes). Raises when the
        dead-letter topic cannot be written: a consumer that commits offsets must not move past it then."""
        await self.publish(error, value=getattr(record, "value", None), key=getattr(record, "key", None),
                           source_topic=getattr(record, "topic", ""), partition=getattr(record, "partition", -1),
                           offset=getattr(record, "offset", -1))

    async def publish_record_quietly(self, error: PoisonMessageError, record: object) -> None:
        """For readers that commit nothing (every replica reads the whole topic): a dead-letter topic that
        cannot be written is counted and logged, and reading goes on."""
        try:
            await self.publish_record(error, record)
        except Exception as exc:
            DEAD_LETTER_FAILURES.labels(self._service).inc()
            log.warning("dead_letter_failed", reason=error.reason, error=str(exc)[:200])
