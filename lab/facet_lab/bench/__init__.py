"""``facet bench``: speed, memory and quality measured against baselines in the same run (ratios)."""
