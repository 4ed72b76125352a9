"""Cross-border preference insights derived from what already crosses borders: the global model."""
