"""The one ``facet`` command. Each subcommand is a thin shell over a module that does the work."""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path

import typer

from facet.config import DEFAULT_REGIONS
from facet.logging import configure_logging

app = typer.Typer(help="Facet: asynchronous federated learning for jewelry recommendations.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
topics_app = typer.Typer(help="Manage Facet's Kafka topics.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")


@app.callback()
def _main(
    log_level: str = typer.Option("INFO", envvar="FACET_LOG_LEVEL", help="Log level."),
    log_json: bool | None = typer.Option(None, "--log-json/--log-console", envvar="FACET_LOG_JSON",
                                         help="JSON logs (default: when stdout is not a terminal)."),
) -> None:
    configure_logging(log_level, log_json)


@app.command()
def broker(
    port: int = typer.Option(9092, help="Loopback port to listen on (0 picks a free one)."),
    log_file: Path | None = typer.Option(None, help="Write the broker's own log here."),
) -> None:
    """Run the embedded Tansu broker in the foreground for local development (Ctrl-C stops it)."""
    from facet.kafka.broker import EmbeddedTansu

    embedded = EmbeddedTansu(log_path=log_file, port=port or None)
    handle = embedded.start()
    typer.echo(f"embedded Kafka broker (Tansu, in-memory) at {handle.bootstrap_servers}; Ctrl-C to stop")
    typer.echo(f"export KAFKA_BOOTSTRAP_SERVERS={handle.bootstrap_servers}")

    stop_requested = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        # Only set a flag here: stopping the child from inside a signal handler races with wait().
        stop_requested.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop_requested.wait(0.2):
        if embedded.poll() is not None:
            typer.echo("embedded broker exited unexpectedly", err=True)
            raise typer.Exit(1)
    embedded.stop()
    typer.echo("embedded broker stopped")


@topics_app.command("create")
def topics_create(
    regions: str = typer.Option(",".join(DEFAULT_REGIONS), help="Comma-separated region codes."),
) -> None:
    """Create every Facet topic with its configs on KAFKA_BOOTSTRAP_SERVERS (idempotent)."""
    from facet.config import KafkaSettings, RegionSettings, TopicSettings
    from facet.kafka.admin import create_all_topics

    region_codes = RegionSettings(regions=tuple(r.strip() for r in regions.split(",") if r.strip())).regions
    created = asyncio.run(create_all_topics(KafkaSettings(), TopicSettings(), region_codes))
    typer.echo(f"created {len(created)} topic(s): {', '.join(created) or 'none (all existed)'}")


@app.command()
def run(
    sessions: int = typer.Option(3_000, min=1, help="Shopper sessions to generate."),
    seed: int = typer.Option(7, help="Workload seed."),
    out: Path = typer.Option(Path("runs"), help="Where the report is written."),
) -> None:
    """The main job: start the embedded broker (unless KAFKA_BOOTSTRAP_SERVERS), run, and report."""
    from facet.main_job import MainJobConfig, run_main_job

    report_path = asyncio.run(run_main_job(MainJobConfig(sessions=sessions, seed=seed, out_dir=out)))
    typer.echo(f"report: {report_path}")


if __name__ == "__main__":  # pragma: no cover
    app()
