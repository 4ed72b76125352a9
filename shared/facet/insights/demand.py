"""What the global model expects each region to choose: the share of a new shopper's next choice that
falls on each item, from the region's embedding against every item vector (id and attributes).

A new shopper is the model's prior for the region: no history, only the region. That is exactly what
the federation learned about the region as a whole, and nothing about any one shopper.
"""

from __future__ import annotations

import numpy as np
import torch

from facet.model.network import ItemTensors, SequenceRecommender


def regional_demand(model: SequenceRecommender, items: ItemTensors, region_buckets: list[int]) -> np.ndarray:
    """[R, N] each region's expected share of choices per catalogue item (rows sum to 1)."""
    if not region_buckets or len(items[0]) == 0:
        return np.zeros((len(region_buckets), len(items[0])))
    scores = model.rank(items, [[] for _ in region_buckets], region_buckets)
    return torch.softmax(scores.double(), dim=1).numpy()
