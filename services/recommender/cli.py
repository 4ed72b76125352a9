"""``facet-recommender``: the recommender service's command (the lab's ``facet recommender`` is the same function)."""

from __future__ import annotations

import typer
from facet.config import KafkaSettings, TopicSettings
from facet.service.entrypoint import run_service
from facet_recommender.service import run_recommender
from facet_recommender.settings import RecommenderSettings

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


@app.command()
def recommender(
    region: str = typer.Option(..., envvar="FACET_RECOMMENDER_REGION", help="Region to serve."),
    port: int | None = typer.Option(None, envvar="FACET_HTTP_PORT", help="HTTP port."),
) -> None:
    """Run a regional recommender (GET/POST /v1/recommendations)."""
    overrides: dict[str, object] = {"region": region}
    if port is not None:
        overrides["http_port"] = port
    code = run_service(lambda: run_recommender(RecommenderSettings(**overrides), KafkaSettings(), TopicSettings()))
    raise typer.Exit(code)


def main() -> None:
    app()
