"""Workloads: the synthetic cross-border jewelry generator and readers that replay real datasets."""
