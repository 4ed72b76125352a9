"""``facet-trainer``: the trainer service's command (the lab's ``facet trainer`` is the same function)."""

from __future__ import annotations

import typer
from facet.service.entrypoint import run_with_settings
from facet_trainer.service import run_trainer
from facet_trainer.settings import TrainerSettings

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


@app.command()
def trainer(
    region: str = typer.Option(..., envvar="FACET_TRAINER_REGION", help="Region whose events to learn from."),
    port: int | None = typer.Option(None, envvar="FACET_HTTP_PORT", help="HTTP port (probes, metrics)."),
) -> None:
    """Run one regional trainer replica (consumer group facet-trainer-<region>)."""
    raise typer.Exit(run_with_settings(run_trainer, TrainerSettings, region=region, http_port=port))


def main() -> None:
    app()
