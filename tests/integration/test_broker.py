"""Provisioning the embedded broker: health-checked, usable by third-party clients, never orphaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest
from facet.kafka.broker import EmbeddedTansu, free_loopback_port, provision_broker

pytestmark = pytest.mark.integration


def _tansu_children() -> list[psutil.Process]:
    me = psutil.Process()
    return [p for p in me.children(recursive=True) if "tansu" in p.name()]


@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="external broker configured")
def test_embedded_broker_is_stopped_even_when_the_body_fails() -> None:
    before = {p.pid for p in _tansu_children()}
    with pytest.raises(RuntimeError), provision_broker(prefer="embedded") as handle:
        assert handle.kind == "embedded"
        assert {p.pid for p in _tansu_children()} - before, "broker process should be running"
        raise RuntimeError("test body failed")
    assert {p.pid for p in _tansu_children()} == before


def test_confluent_kafka_produces_and_consumes_through_facet_broker() -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    from confluent_kafka.admin import AdminClient, NewTopic
    port = free_loopback_port()
    facet = os.path.join(os.path.dirname(sys.executable), "facet")
    process = subprocess.Popen(
        [facet, "broker", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert process.stdout is not None
        line = ""
        deadline = time.monotonic() + 30
        while "Ctrl-C" not in line and time.monotonic() < deadline:
            line = process.stdout.readline()
        assert f"127.0.0.1:{port}" in line
        servers = f"127.0.0.1:{port}"
        topic = f"cfk-{uuid.uuid4().hex[:6]}"
        admin = AdminClient({"bootstrap.servers": servers})
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=20)
        producer = confluent_kafka.Producer({"bootstrap.servers": servers, "acks": "all"})
        for i in range(10):
            producer.produce(topic, key=b"k", value=f"m{i}".encode())
        assert producer.flush(20) == 0
        consumer = confluent_kafka.Consumer(
            {"bootstrap.servers": servers, "group.id": "cfk", "auto.offset.reset": "earliest",
             "session.timeout.ms": 6000}
        )
        consumer.subscribe([topic])
        got: list[bytes] = []
        deadline = time.monotonic() + 40
        while len(got) < 10 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                got.append(message.value())
        consumer.close()
        del producer  # librdkafka keeps reconnecting until the handle is gone
        assert got == [f"m{i}".encode() for i in range(10)]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        assert process.stdout is not None
        process.stdout.close()
    assert process.returncode == 0
    assert not [p for p in _tansu_children()
                if any(str(port) in a for a in p.cmdline())], "facet broker left Tansu behind"


def test_embedded_broker_stop_is_idempotent() -> None:
    broker = EmbeddedTansu()
    broker.start()
    pid = broker.pid
    broker.stop()
    broker.stop()
    assert (pid is not None and not psutil.pid_exists(pid)) or psutil.Process(pid).status() == "zombie"
