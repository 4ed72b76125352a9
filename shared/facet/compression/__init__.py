"""Composable codecs for weight deltas: sparsify, quantize, then zstd."""
