"""Facet's shared library: contracts, Kafka plumbing, settings, logging, and the learning math."""

__version__ = "0.1.0"
