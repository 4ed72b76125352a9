"""Facet's insights service: cross-border preference insights for merchandising, from the global model."""
