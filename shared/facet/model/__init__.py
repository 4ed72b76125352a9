"""The sequence-aware jewelry recommender: only shared weights, no per-shopper parameters."""
