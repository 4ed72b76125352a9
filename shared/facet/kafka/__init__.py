"""Kafka plumbing shared by every service: clients, topics, the broker provisioner, DLQ, shutdown."""
