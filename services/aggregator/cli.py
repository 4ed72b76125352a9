"""``facet-aggregator``: the aggregator service's command (the lab's ``facet aggregator`` is the same function)."""

from __future__ import annotations

import typer
from facet.config import KafkaSettings, TopicSettings
from facet.service.entrypoint import run_with_settings
from facet_aggregator.service import run_aggregator
from facet_aggregator.settings import AggregatorSettings
from facet_aggregator.zone import run_zone

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


async def run_tier(settings: AggregatorSettings, kafka: KafkaSettings, topics: TopicSettings) -> None:
    """The global aggregator, or a zone's tier when the settings name a zone."""
    await (run_zone if settings.zone is not None else run_aggregator)(settings, kafka, topics)


@app.command()
def aggregator(
    port: int | None = typer.Option(None, envvar="FACET_HTTP_PORT", help="HTTP port (probes, metrics, artifacts)."),
    zone: str | None = typer.Option(None, help="Run as this zone's tier: aggregate its regions' updates from "
                                    "facet.updates.<zone>.v1 and forward one update per step to the global "
                                    "aggregator (FACET_AGGREGATOR_ZONE)."),
) -> None:
    """Run the aggregator: staleness-weighted async FedAvg over facet.updates.v1 (or a zone's topic)."""
    raise typer.Exit(run_with_settings(run_tier, AggregatorSettings, http_port=port, zone=zone))


def main() -> None:
    app()
