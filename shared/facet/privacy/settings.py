"""A region's privacy settings: the budget (epsilon, delta per period) and the DP-SGD parameters that
spend it. The noise multiplier is not a setting: it is derived from the budget, the sampling rate and the
planned steps per period with Opacus, so the configured epsilon is what the accountant will report when
the period's steps are spent."""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PrivacySettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: Off only for development: production regions train with shopper-level DP-SGD.
    enabled: bool = True
    #: The budget: (epsilon, delta) per shopper per period, in one region.
    epsilon: float = Field(default=8.0, gt=0, le=100)
    #: Well below 1 / (shoppers in a region): 1e-7 suits regions of up to a million shoppers.
    delta: float = Field(default=1e-7, gt=0, lt=1e-3)
    period_seconds: float = Field(default=86_400.0, gt=0)
    #: Poisson sampling: each shopper takes part in a step with this probability, independently.
    sample_rate: float = Field(default=0.05, gt=0, le=1)
    #: DP-SGD steps the budget pays for in one period; the noise is set so they spend exactly ``epsilon``.
    steps_per_period: int = Field(default=2_000, ge=1)
    #: Bound on one shopper's whole contribution to a step (the L2 norm of their clipped gradient).
    clip_norm: float = Field(default=0.1, gt=0)
    #: A sampled shopper contributes at most this many windows (a random choice of theirs): bounds compute,
    #: not privacy (clipping does that).
    max_windows_per_shopper: int = Field(default=4, ge=1)
    #: Shoppers whose per-shopper gradients are computed together (memory ~ chunk × catalogue × positions
    #: floats, the scores, a few times over). Measured on one core, 100k synthetic sessions (2,658 items),
    #: seconds per sample: 5.0e-4 at 8, 3.8e-4 at 16, 3.1–3.4e-4 at 32, 5.2e-4 at 64 (before the dense
    #: forward stopped forming a [catalogue, dim] gradient per shopper).
    chunk_shoppers: int = Field(default=32, ge=1, le=256)
    #: Parameters not trained under DP. Per-item id and companion rows are most of the model (3M of 3.5M
    #: coordinates) and each gets the signal of the few shoppers who touched that item, while the noise
    #: lands on all of them; the attribute path, the encoder and the item biases carry what DP can learn.
    frozen_parameters: tuple[str, ...] = ("item_id.weight", "companion.weight")
    #: Adam's learning rate under DP-SGD (the trainer's own ``lr`` is for non-private training). DP takes
    #: few, large steps (one per Poisson sample of shoppers), so it needs a larger rate: at 104k shoppers,
    #: ε 8, `facet bench privacy` kept 0.746 of the non-private NDCG@10 at 1e-2, 0.946 at 3e-2, 0.675 at 1e-1
    #: with 168 steps a region; paced like the federation (the large markets take ~500 steps), 0.82 at 3e-2
    #: (it overshoots late) and 0.906 at 1.5e-2. The right rate falls as a period holds more steps, and a
    #: day of the service's pacing holds 2,000, so the default is the lower one (on jewelry's short bench
    #: budget, 11–55 steps a region, it under-trains: ε 8 kept 0.62 at 1.5e-2 against 0.93 at 3e-2).
    lr: float = Field(default=1.5e-2, gt=0, le=1)
    #: Spread the period's steps evenly over it (plus ``burst_steps``), so a trainer never spends a day's
    #: budget in its first hour and then sits silent.
    pace: bool = True
    burst_steps: int = Field(default=20, ge=1)
    #: The most noise a step may carry and still be taken: the noise's standard deviation on the step's
    #: mean gradient, in clip norms (``noise_multiplier / expected shoppers``). A pool too small for its
    #: budget gives updates that are almost all noise on every coordinate, and in FedBuff such an update
    #: weighs about as much as a large market's (measured on retail at ε 8: with its 36 markets under 100
    #: shoppers, at 0.09–0.4, training, 0.019 NDCG@10; sitting out, 0.029; no DP 0.157; on jewelry at ε 1
    #: and 2 the bound cost 12–15 %, its pools up to 0.11 still helping). Such a pool trains nothing
    #: and its region serves the global model until it has shoppers enough. Measured per step: 0.002–0.0035
    #: in the synthetic regions at 104k shoppers, 0.004–0.016 on jewelry at ε 8 and 0.020–0.11 at ε 1,
    #: 0.006 in retail's UK. 0.05 keeps every region that is not a handful of shoppers at its budget.
    max_step_noise: float = Field(default=0.05, gt=0)

    @model_validator(mode="after")
    def _solvable(self) -> PrivacySettings:
        if self.enabled:
            self.noise_multiplier()  # fails early, at start-up, on a budget no noise can meet
        return self

    def noise_multiplier(self) -> float:
        """The Gaussian noise (in units of ``clip_norm``) that makes ``steps_per_period`` steps at
        ``sample_rate`` cost exactly ``epsilon`` at ``delta`` under Opacus' RDP accountant."""
        return _noise_multiplier(self.epsilon, self.delta, self.sample_rate, self.steps_per_period)

    def step_noise(self, shoppers: int) -> float:
        """The noise's standard deviation on a step's mean gradient over a pool of ``shoppers``, in clip
        norms: the noise multiplier over the expected number of shoppers a step samples."""
        return self.noise_multiplier() / max(self.sample_rate * shoppers, 1e-12)

    def shoppers_needed(self) -> int:
        """The smallest pool whose steps carry at most ``max_step_noise``."""
        return math.ceil(self.noise_multiplier() / (self.sample_rate * self.max_step_noise) - 1e-9)

    def too_few_shoppers(self, shoppers: int) -> bool:
        """Whether a pool of ``shoppers`` is too small to train at this budget (see ``max_step_noise``).
        Like the step's divisor (the expected shoppers), it reads the pool's size, taken as public: a
        region's shopper count, not who they are."""
        return shoppers < self.shoppers_needed()


#: Rényi orders the accountant optimises over: Opacus' defaults (up to 63) plus higher ones, which low
#: noise and few steps need (Opacus warns when its best order is its largest).
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 96, 128, 192, 256, 512, 1024]


@lru_cache(maxsize=256)
def _noise_multiplier(epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():  # "optimal order is the largest": a looser bound, never an unsafe one
        warnings.simplefilter("ignore", UserWarning)
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                          steps=steps, accountant="rdp", epsilon_tolerance=0.005,
                                          alphas=RDP_ORDERS))


class ReleasePrivacy(PrivacySettings):
    """A budget for releases of counts (:mod:`facet.insights.statistics`): every release is one step at
    sampling rate 1 over a contribution of norm 1 (in units of the counts' sensitivity). By default a budget
    of its own, epsilon 2 per day in one daily release (noise multiplier 2.6, from the accountant): splitting
    a budget over k releases multiplies the noise variance of their sum by about k² (measured: a day summed
    from 4 releases carries 16 times the noise variance of one), and merchandising reads weeks, not hours.
    Its own class so a setting that changes one field (``..._PRIVACY__PERIOD_SECONDS``) keeps these
    defaults for the rest."""

    epsilon: float = Field(default=2.0, gt=0, le=100)
    sample_rate: float = Field(default=1.0, gt=0, le=1)
    steps_per_period: int = Field(default=1, ge=1)
    clip_norm: float = Field(default=1.0, gt=0)
    pace: bool = False

    @property
    def release_seconds(self) -> float:
        """One release interval: the period over its releases."""
        return self.period_seconds / self.steps_per_period


STATISTICS_PRIVACY = ReleasePrivacy()
