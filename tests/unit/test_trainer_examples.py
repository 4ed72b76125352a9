from __future__ import annotations

import tracemalloc

from facet.model.features import FeatureSpace, ItemCatalogue
from facet.workload.generator import JewelryWorkload, WorkloadConfig
from facet_trainer.examples import ExampleBuffer


def test_buffer_memory_stays_under_its_cap_on_a_long_stream() -> None:
    buffer = ExampleBuffer(ItemCatalogue(FeatureSpace(id_buckets=1024)), history=10, max_shoppers=200,
                            max_items=5_000)
    events = list(JewelryWorkload(WorkloadConfig(sessions=6_000, seed=1)).events())
    tracemalloc.start()
    peak_after_warmup = 0
    for count, event in enumerate(events):
        buffer.add(event, 0)
        if len(buffer) >= 64:
            buffer.take()
        if count == 3_000:
            tracemalloc.reset_peak()
        if count > 3_000:
            peak_after_warmup = max(peak_after_warmup, tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
    assert count > 20_000
    assert buffer.shoppers <= 200
    assert len({e.shopper_id for e in events}) > 1_000  # so most shoppers were evicted on the way
    assert peak_after_warmup < 8 * 1024 * 1024  # bounded by the caps, not by the stream


def test_buffer_examples_are_next_items_after_a_history() -> None:
    catalogue = ItemCatalogue(FeatureSpace(id_buckets=1024))
    buffer = ExampleBuffer(catalogue, history=3, max_shoppers=10, max_items=100)
    events = [e for e in JewelryWorkload(WorkloadConfig(sessions=50, seed=2)).events()][:40]
    produced = sum(buffer.add(e, 1) for e in events)
    windows = buffer.take()
    assert len(windows) == produced == windows.samples
    assert len(buffer) == 0
    assert (windows.regions == 1).all()
