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
    # A few dozen shoppers: far too few for DP to pay, so the test lets any pool train (max_step_noise).
    privacy = PrivacySettings(epsilon=2.0, sample_rate=0.2, steps_per_period=6, period_seconds=100, pace=False,
                              max_step_noise=1e6)
    trainer = _trainer(privacy)
    try:
        await _spend_the_budget_then_roll(trainer)
    finally:
        await _stop(trainer)


def _trainer(privacy: PrivacySettings) -> TrainerService:
    settings = TrainerSettings(region="eu", signing_key="k" * 32, model=TINY_MODEL, privacy=privacy,
                               private_steps_per_update=4,
                               model_trust=ModelTrustSettings(public_keys=[MODEL_PUBLIC_KEY]))
    # Clients are built, never started: nothing here talks to a broker.
    return TrainerService(settings, KafkaSettings(bootstrap_servers="127.0.0.1:1"), TopicSettings())


async def _stop(trainer: TrainerService) -> None:
    for client in (trainer.producer, trainer.dlq_producer, trainer.consumer):
        await client.stop()


def _events(sessions: int) -> list:
    return list(JewelryWorkload(WorkloadConfig(sessions=sessions, seed=5, regions=("eu",))).events())


async def test_a_window_too_small_for_its_noise_trains_nothing_until_shoppers_arrive() -> None:
    events = _events(200)
    shoppers = len({event.shopper_id for event in events})
    base = PrivacySettings(epsilon=2.0, sample_rate=0.2, steps_per_period=6, period_seconds=100, pace=False)
    # The bound set so that about half the shoppers are enough.
    privacy = base.model_copy(update={"max_step_noise": base.noise_multiplier() / (0.2 * (shoppers // 2))})
    trainer = _trainer(privacy)
    try:
        trainer.learner.load_global(new_model(TINY_MODEL).state_dict(), version=1)
        seen: set[str] = set()
        for event in events:
            if len(seen | {event.shopper_id}) >= privacy.shoppers_needed():
                break
            seen.add(event.shopper_id)
            trainer.examples.add(event, trainer.region_bucket)
        trainer._new_events_since_update = True
        await trainer._train_private()
        assert trainer.examples.shoppers == privacy.shoppers_needed() - 1
        status = trainer.privacy_status()
        assert status["state"] == "too_few_shoppers" and status["shoppers_needed"] == privacy.shoppers_needed()
        assert trainer.budget is not None and trainer.budget.steps == 0  # the budget is kept, not spent
        assert trainer.learner.prepare_update() is None
        for event in events:
            trainer.examples.add(event, trainer.region_bucket)
        trainer._new_events_since_update = True
        await trainer._train_private()
        assert trainer.privacy_status()["state"] == "training" and trainer.budget.steps == 4
        assert trainer.learner.prepare_update() is not None
    finally:
        await _stop(trainer)


async def _spend_the_budget_then_roll(trainer: TrainerService) -> None:
    privacy = trainer.settings.privacy
    clock = _Clock(1_000.0)
    trainer.budget = PrivacyBudget(privacy, clock=clock)
    trainer.learner.load_global(new_model(TINY_MODEL).state_dict(), version=1)
    events = _events(200)

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
