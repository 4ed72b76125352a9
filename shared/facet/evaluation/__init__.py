"""Offline evaluation: time-ordered leave-last-out, ranking against all items, baselines."""
