"""The lab's ``facet`` command: the services' own commands, the main job, the benchmarks and ops tools.
Each subcommand is a thin shell over a module that does the work."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path

import typer
from facet.config import DEFAULT_REGIONS
from facet.evaluation.datasets import DatasetName
from facet.logging import configure_logging
from facet_aggregator.cli import aggregator as aggregator_command
from facet_ingest.cli import ingest as ingest_command
from facet_insights.cli import insights as insights_service_command
from facet_recommender.cli import recommender as recommender_command
from facet_trainer.cli import trainer as trainer_command

from facet_lab.bench.cli import bench_app

app = typer.Typer(help="Facet: asynchronous federated learning for jewelry recommendations.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
topics_app = typer.Typer(help="Manage Facet's Kafka topics.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(bench_app, name="bench")
audit_app = typer.Typer(help="Audits: check a guarantee by attacking it.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@app.callback()
def _main(
    log_level: str = typer.Option("INFO", envvar="FACET_LOG_LEVEL", help="Log level."),
    log_json: bool | None = typer.Option(None, "--log-json/--log-console", envvar="FACET_LOG_JSON",
                                         help="JSON logs (default: when stdout is not a terminal)."),
) -> None:
    configure_logging(log_level, log_json)
    # A service subcommand configures its logging from these settings (as its own command does).
    os.environ["FACET_LOG_LEVEL"] = log_level
    if log_json is not None:
        os.environ["FACET_LOG_JSON"] = str(log_json).lower()


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


keys_app = typer.Typer(help="Make keys for a deployment.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
kafka_app = typer.Typer(help="Kafka security: principals, SCRAM users and ACLs.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")


@kafka_app.command("setup-script")
def kafka_setup_script(
    regions: str = typer.Option(",".join(DEFAULT_REGIONS), help="Comma-separated region codes."),
    zones: str = typer.Option("", help="A zone tier, e.g. 'apac:jp,in,ae;emea:eu,uk;americas:us,br' "
                              "(deploy/compose/kafka-setup-zones.sh)."),
) -> None:
    """Print the SCRAM-user and ACL script the compose `kafka-setup` job runs (deploy/compose/kafka-setup.sh)."""
    from facet.config import ZoneMap
    from facet.kafka.acls import setup_script

    typer.echo(setup_script([r.strip() for r in regions.split(",") if r.strip()], zones=ZoneMap.parse(zones)),
               nl=False)


@keys_app.command("model")
def keys_model() -> None:
    """An Ed25519 key pair for model broadcasts: the private key for the aggregator only
    (FACET_AGGREGATOR_MODEL_SIGNING_KEY), the public key for every consumer (..._MODEL_TRUST__PUBLIC_KEYS)."""
    from facet.federation.model_signing import generate_keypair

    private, public = generate_keypair()
    typer.echo(f"private (aggregator only): {private}")
    typer.echo(f"public (trainers, recommenders): {public}")


@keys_app.command("api")
def keys_api() -> None:
    """A new API key and the sha256 digest to configure (the key itself is never stored by a service)."""
    import secrets

    from facet.service.auth import hash_api_key

    key = secrets.token_urlsafe(32)
    typer.echo(f"key (give to the client): {key}")
    typer.echo(f"sha256 (configure in the service): {hash_api_key(key)}")


@topics_app.command("create")
def topics_create(
    regions: str = typer.Option(",".join(DEFAULT_REGIONS), help="Comma-separated region codes."),
) -> None:
    """Create every Facet topic with its configs on KAFKA_BOOTSTRAP_SERVERS (idempotent)."""
    from facet.kafka.admin import provision_topics

    typer.echo(provision_topics([r.strip() for r in regions.split(",") if r.strip()]))


@app.command()
def run(
    duration: float = typer.Option(180.0, min=5, help="Seconds to run before draining and reporting."),
    rate: float = typer.Option(400.0, min=1, help="Events per second sent through the HTTP ingest."),
    regions: str = typer.Option(",".join(DEFAULT_REGIONS), help="Comma-separated regions; the first is the "
                                "largest and gets two trainer replicas."),
    replay: str | None = typer.Option(None, help="Replay a real dataset (jewelry or retail) instead of the generator."),
    kill: str | None = typer.Option(None, help="Chaos: SIGKILL this process (e.g. trainer-us-1) mid-run."),
    kill_at: float = typer.Option(60.0, help="When to kill it (seconds)."),
    seed: int = typer.Option(7, help="Workload seed."),
    out: Path = typer.Option(Path("runs"), help="Where the report is written."),
    privacy: bool = typer.Option(False, help="Shopper-level DP in the trainers (off here: the run's population is "
                                 "too small for DP to pay; see README \"Privacy\")."),
    epsilon: float = typer.Option(8.0, help="The trainers' epsilon per shopper per day, spent within the run."),
) -> None:
    """The main job: the whole system on the embedded broker (unless KAFKA_BOOTSTRAP_SERVERS), then a report."""
    from facet_lab.system.run import SystemConfig, run_system

    config = SystemConfig(duration_s=duration, events_per_second=rate,
                          regions=tuple(r.strip() for r in regions.split(",") if r.strip()), replay=replay,
                          kill_process=kill, kill_at_s=kill_at, seed=seed, out_dir=out, privacy=privacy,
                          epsilon=epsilon)
    report_path = asyncio.run(run_system(config))
    typer.echo(f"report: {report_path} (plots beside it)")


# The services' own commands, as subcommands: `facet trainer --region us` runs exactly `facet-trainer --region us`.
app.command("aggregator")(aggregator_command)
app.command("trainer")(trainer_command)
app.command("ingest")(ingest_command)
app.command("recommender")(recommender_command)
app.command("insights-service")(insights_service_command)


@app.command("insights")
def insights(
    region: str = typer.Option(..., help="The region whose figures to print."),
    url: str = typer.Option("http://127.0.0.1:8084", envvar="FACET_INSIGHTS_URL", help="The insights service."),
    key: str = typer.Option(..., envvar="FACET_INSIGHTS_KEY", help="A key with the insights:read scope."),
) -> None:
    """Print one region's insights as tables: lifts, what is rising, similar markets, opportunities."""
    import httpx
    from facet.insights.views import InsightsOverview
    from rich.console import Console

    from facet_lab.insights_view import print_region

    response = httpx.get(url.rstrip("/") + "/v1/insights", headers={"X-API-Key": key}, timeout=30)
    if response.status_code != 200:
        typer.echo(f"insights service answered {response.status_code}: {response.text[:300]}", err=True)
        raise typer.Exit(1)
    overview = InsightsOverview.model_validate(response.json())
    found = next((r for r in overview.region_insights if r.region == region), None)
    if found is None:
        typer.echo(f"no insights for {region!r}; regions: {', '.join(overview.regions)}", err=True)
        raise typer.Exit(1)
    print_region(Console(), overview, found)


@app.command("eval")
def evaluate(
    dataset: str = typer.Option("synthetic", help="synthetic, jewelry or retail."),
    mode: list[str] = typer.Option(["centralized", "local"], help="centralized and/or local (repeatable)."),
    json_path: Path = typer.Option(Path("reports/eval.json"), "--json", help="Where to write the JSON report."),
    epochs: int | None = typer.Option(None, min=1, help="Training epochs (default: tuned per dataset)."),
    seed: int = typer.Option(0),
    cold_start: bool = typer.Option(False, "--cold-start",
                                    help="Measure launches instead: a time split where the items first seen after "
                                         "the cutoff are new, against content baselines."),
    budget: float = typer.Option(0.005, min=0, max=0.5,
                                 help="With --cold-start: the share of overall NDCG@10 the cold-start policy may "
                                      "cost on the validation split."),
) -> None:
    """Offline evaluation: leave-last-out, ranking against all items, baselines in the same run."""
    if cold_start:
        from facet_lab.coldstart import run_cold_start_eval

        if dataset not in {d.value for d in DatasetName}:
            raise typer.BadParameter(f"unknown dataset {dataset!r}; use synthetic, jewelry or retail")
        path = json_path if json_path != Path("reports/eval.json") else Path(f"reports/eval-coldstart-{dataset}.json")
        run_cold_start_eval(dataset, path, epochs=epochs, seed=seed, budget=budget)
        return
    from facet_lab.evaluate import run_eval_command

    run_eval_command(dataset, mode, json_path, epochs, seed)


@audit_app.command("privacy")
def audit_privacy(
    json_path: Path = typer.Option(Path("reports/audit-privacy.json"), "--json"),
    epsilon: float = typer.Option(8.0, help="The budget the accountant is audited at."),
    delta: float = typer.Option(1e-7),
    sample_rate: float = typer.Option(0.05, help="Poisson sampling rate of shoppers per step."),
    steps: int = typer.Option(100, min=1, help="DP-SGD steps (the period's, all spent)."),
    clip_norm: float = typer.Option(1.0),
    sessions: int = typer.Option(1_500, help="Synthetic sessions of the region's real shoppers."),
    canaries: int = typer.Option(1_000, min=10, help="Canary shoppers, each trained on with probability 1/2."),
    lr: float | None = typer.Option(None, help="Adam's learning rate under DP (default: the trainer's)."),
    seed: int = typer.Option(0),
) -> None:
    """One-run privacy audit: canaries in, membership guesses out, an empirical lower bound on epsilon that
    must not exceed the accountant's. Exits 1 when it does."""
    import json

    from facet.privacy.settings import PrivacySettings

    from facet_lab.bench.common import write_result
    from facet_lab.privacy_audit import AuditSetup, run_privacy_audit

    privacy = PrivacySettings(epsilon=epsilon, delta=delta, sample_rate=sample_rate, steps_per_period=steps,
                              clip_norm=clip_norm, pace=False,
                              lr=PrivacySettings.model_fields["lr"].default if lr is None else lr)
    result = run_privacy_audit(AuditSetup(sessions=sessions, canaries=canaries, privacy=privacy, seed=seed))
    summary = result.pop("summary")
    write_result(json_path, summary, **result)
    typer.echo(json.dumps(summary, indent=2))
    typer.echo(f"full result: {json_path}")
    if not summary["accounting_holds"]:
        typer.echo("AUDIT FAILED: the empirical lower bound exceeds the accountant's epsilon", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    app()
