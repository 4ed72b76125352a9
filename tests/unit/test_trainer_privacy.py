"""The trainer service under its privacy budget: it trains while the period's budget lasts, then stops
contributing (and says so) until the period rolls."""

from __future__ import annotations

from facet.config import KafkaSettings, TopicSettings
from facet.model.network import new_model
from facet.privacy.accounting import PrivacyBudget
from facet.privacy.settings import PrivacySettings
from facet.service.model_feed import ModelTrustSettings
from facet.workload.generator import JewelryWorkload, WorkloadConfig
from facet_trainer.service import TrainerService
from facet_trainer.settings import TrainerSettings

from tests.helpers import MODEL_PUBLIC_KEY, TINY_MODEL


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_a_trainer_whose_budget_is_spent_stops_contributing_until_the_period_rolls() -> None:
    privacy = PrivacySettings(epsilon=2.0, sample_rate=0.2, steps_per_period=6, period_seconds=100, pace=False)
    settings = TrainerSettings(region="eu", signing_key="k" * 32, model=TINY_MODEL, privacy=privacy,
                               private_steps_per_update=4,
                               model_trust=ModelTrustSettings(public_keys=[MODEL_PUBLIC_KEY]))
    # Clients are built, never started: nothing here talks to a broker.
    trainer = TrainerService(settings, KafkaSettings(bootstrap_servers="127.0.0.1:1"), TopicSettings())
    try:
        await _spend_the_budget_then_roll(trainer)
    finally:
        for client in (trainer.producer, trainer.dlq_producer, trainer.consumer):
            await client.stop()


async def _spend_the_budget_then_roll(trainer: TrainerService) -> None:
    privacy = trainer.settings.privacy
    clock = _Clock(1_000.0)
    trainer.budget = PrivacyBudget(privacy, clock=clock)
    trainer.learner.load_global(new_model(TINY_MODEL).state_dict(), version=1)
    events = [e for e in JewelryWorkload(WorkloadConfig(sessions=200, seed=5, regions=("eu",))).events()]

    def arrive(batch: list) -> None:
        for event in batch:
            trainer.examples.add(event, trainer.region_bucket)
        trainer._new_events_since_update = True

    arrive(events[: len(events) // 3])
    await trainer._train_private()
    assert trainer.budget.steps == 4 and trainer.learner.prepare_update() is not None
    arrive(events[len(events) // 3 : 2 * len(events) // 3])
    await trainer._train_private()
    assert trainer.budget.steps == 6 and trainer.learner.prepare_update() is not None  # only what was left
    arrive(events[2 * len(events) // 3 :])
    await trainer._train_private()
    assert trainer.learner.prepare_update() is None  # nothing to send: the region sits this period out
    status = trainer.privacy_status()
    assert status["exhausted"] is True and status["state"] == "budget_exhausted"
    assert abs(float(status["epsilon_spent"]) - 2.0) < 0.05  # type: ignore[arg-type]
    clock.now = 1_100.0  # the period rolls
    trainer._new_events_since_update = True
    await trainer._train_private()
    assert trainer.privacy_status()["state"] == "training"
    assert trainer.learner.prepare_update() is not None
