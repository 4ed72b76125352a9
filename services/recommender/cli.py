"""``facet-recommender``: the recommender service's command (the lab's ``facet recommender`` is the same function)."""

from __future__ import annotations

import typer
from facet.service.entrypoint import run_with_settings
from facet_recommender.service import run_recommender
from facet_recommender.settings import RecommenderSettings

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


@app.command()
def recommender(
    region: str = typer.Option(..., envvar="FACET_RECOMMENDER_REGION", help="Region to serve."),
    port: int | None = typer.Option(None, envvar="FACET_HTTP_PORT", help="HTTP port."),
) -> None:
    """Run a regional recommender (GET/POST /v1/recommendations)."""
    raise typer.Exit(run_with_settings(run_recommender, RecommenderSettings, region=region, http_port=port))


def main() -> None:
    app()
