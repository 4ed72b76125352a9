"""Readers that replay the real public datasets as ingest-schema events."""
