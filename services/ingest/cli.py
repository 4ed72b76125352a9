"""``facet-ingest``: the ingest service's command (the lab's ``facet ingest`` is the same function)."""

from __future__ import annotations

import typer
from facet.service.entrypoint import run_with_settings
from facet_ingest.service import run_ingest
from facet_ingest.settings import IngestSettings

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


@app.command()
def ingest(
    port: int | None = typer.Option(None, envvar="FACET_HTTP_PORT", help="HTTP port (events, probes, metrics)."),
) -> None:
    """Run the storefront ingest gateway (POST /v1/events)."""
    raise typer.Exit(run_with_settings(run_ingest, IngestSettings, http_port=port))


def main() -> None:
    app()
