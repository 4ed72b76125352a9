"""``facet-insights``: the insights service's command (the lab's ``facet insights-service`` is the same)."""

from __future__ import annotations

import typer
from facet.service.entrypoint import run_with_settings
from facet_insights.service import run_insights
from facet_insights.settings import InsightsSettings

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


@app.command()
def insights(port: int | None = typer.Option(None, envvar="FACET_HTTP_PORT", help="HTTP port.")) -> None:
    """Run the insights service (the page at /, the API under /v1/insights)."""
    raise typer.Exit(run_with_settings(run_insights, InsightsSettings, http_port=port))


def main() -> None:
    app()
