"""The serving benchmark's figure: the median of paired passes, with their range, never one pass."""

from __future__ import annotations

import pytest
from facet_lab.bench.services import paired_ratio


def test_the_ratio_is_the_median_of_paired_passes_with_its_range() -> None:
    pairs = [({"rps": served, "p99_ms": p99}, {"rps": 1000.0, "p99_ms": 1.0})
             for served, p99 in ((450.0, 90.0), (900.0, 40.0), (880.0, 45.0), (910.0, 38.0), (870.0, 50.0))]
    result = paired_ratio(pairs)
    assert result["ratio_median"] == pytest.approx(0.88)  # the slow outlier moves the median, not the figure
    assert (result["ratio_min"], result["ratio_max"]) == (pytest.approx(0.45), pytest.approx(0.91))
    assert result["p99_ms_median"] == pytest.approx(45.0)
