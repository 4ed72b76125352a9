"""Consumer lag from the fetch highwater mark.

``end_offsets`` and ``seek_to_end`` return wrong offsets on the embedded broker; the highwater that
every fetch response carries is right on both, so lag is computed from it.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer


async def consumer_lag(consumer: AIOKafkaConsumer) -> dict[int, int]:
    """Records not yet read, per assigned partition (0 until the first fetch reports a highwater)."""
    lag: dict[int, int] = {}
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            lag[tp.partition] = 0
            continue
        position = await consumer.position(tp)
        lag[tp.partition] = max(0, highwater - position)
    return lag
