"""``facet-aggregator``: the aggregator service's command (the lab's ``facet aggregator`` is the same function)."""

from __future__ import annotations

import typer
from facet.service.entrypoint import run_with_settings
from facet_aggregator.service import run_aggregator
from facet_aggregator.settings import AggregatorSettings

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


@app.command()
def aggregator(
    port: int | None = typer.Option(None, envvar="FACET_HTTP_PORT", help="HTTP port (probes, metrics, artifacts)."),
) -> None:
    """Run the aggregator: staleness-weighted async FedAvg over facet.updates.v1."""
    raise typer.Exit(run_with_settings(run_aggregator, AggregatorSettings, http_port=port))


def main() -> None:
    app()
