"""One exception tree for the project. Each class says what the caller should do with the failure."""

from __future__ import annotations


class FacetError(Exception):
    """Root of every error Facet raises on purpose."""


class ConfigurationError(FacetError):
    """Settings are missing, contradictory or unsafe. Fatal at start-up."""


class RetriableError(FacetError):
    """A transient failure: back off and try again; the input is fine."""


class BrokerUnavailableError(RetriableError):
    """No Kafka broker answered within the deadline."""


class PoisonMessageError(FacetError):
    """The input itself is bad and will never succeed: route it to the dead-letter topic.

    ``reason`` is a short machine-readable code (used as a metric label and a DLQ header);
    the message text is for humans.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
