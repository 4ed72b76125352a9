"""A regional learner, free of Kafka: trains from the latest global model, produces compressed deltas,
and rebases onto new global versions without losing unsent local progress. The trainer service and the
federation benchmark both use it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from facet.compression.codecs import CodecSpec, ErrorFeedback
from facet.contracts import InterestCounts, ModelUpdate, TrainingMetrics
from facet.federation.updates import signed_update
from facet.model.examples import Windows
from facet.model.features import ItemCatalogue
from facet.model.network import ModelConfig, new_model
from facet.model.training import catalogue_tensors, make_optimizer, train_pass
from facet.privacy.dpsgd import private_step
from facet.privacy.settings import PrivacySettings
from facet.privacy.shoppers import ShopperWindows


@dataclass(frozen=True)
class PreparedUpdate:
    payload: bytes
    num_samples: int
    base_version: int
    loss: float
    steps: int
    samples_per_second: float
    raw_bytes: int
    codec: str

    def signed(self, key: bytes, *, trainer_id: str, region: str,
               statistics: InterestCounts | None = None) -> ModelUpdate:
        """The update to publish (with the region's noisy interest counts, when a release is due), signed
        with the trainer's key."""
        return signed_update(key, trainer_id=trainer_id, region=region, base_version=self.base_version,
                             num_samples=self.num_samples, codec=self.codec, payload=self.payload,
                             metrics=TrainingMetrics(loss=self.loss, samples_per_second=self.samples_per_second,
                                                     steps=self.steps), statistics=statistics)


class LocalLearner:
    """With ``privacy`` enabled the learner trains only with :meth:`train_private` (shopper-level DP-SGD),
    and what it publishes besides the noisy delta is data-independent: the sample count is the expected
    one and no loss or throughput is reported. ``lr`` is the non-private rate; DP-SGD uses ``privacy.lr``."""

    def __init__(
        self, config: ModelConfig, codec: str, *, lr: float = 3e-3, privacy: PrivacySettings | None = None,
        seed: int = 0,
    ) -> None:
        self.model = new_model(config, seed)
        # Under DP the privacy settings carry their own rate: DP-SGD's steps are few and large.
        self.optimizer = make_optimizer(self.model, privacy.lr if privacy is not None and privacy.enabled else lr)
        self.codec = CodecSpec.parse(codec)
        self.feedback = ErrorFeedback()
        self.privacy = privacy
        self.base_version: int | None = None
        #: (epoch, version) of the base: a restored aggregator's newer epoch wins over any older version.
        self.base_generation: tuple[int, int] | None = None
        self._anchor: dict[str, torch.Tensor] = {}
        self._samples = 0
        self._steps = 0
        self._losses: list[float] = []
        self._train_seconds = 0.0
        self._round = 0
        #: Throughput of the last update, kept locally (under DP it is not published).
        self.last_samples_per_second = 0.0
        self._generator = torch.Generator().manual_seed(seed)
        self._rng = np.random.default_rng(seed)
        #: Under DP: the data-independent sample count published with the next update.
        self._published_samples = 0

    @property
    def private(self) -> bool:
        return self.privacy is not None and self.privacy.enabled

    @property
    def ready(self) -> bool:
        return self.base_version is not None

    @property
    def unsent_samples(self) -> int:
        return self._samples

    def load_global(self, parameters: Mapping[str, torch.Tensor], version: int, epoch: int = 0) -> bool:
        """Rebase onto a newer global model: local = global + (local - anchor). False when not newer by
        (epoch, version)."""
        if self.base_generation is not None and (epoch, version) <= self.base_generation:
            return False
        with torch.no_grad():
            state = self.model.state_dict()
            for name, tensor in parameters.items():
                progress = state[name] - self._anchor[name] if self._anchor else 0
                state[name].copy_(tensor + progress)
            self._anchor = {name: tensor.detach().clone() for name, tensor in parameters.items()}
        self.base_version = version
        self.base_generation = (epoch, version)
        return True

    def train(self, catalogue: ItemCatalogue, windows: Windows, batch_size: int = 128,
              candidates: torch.Tensor | None = None) -> float:
        """One pass over the windows (the shared training loop); returns the mean loss.

        ``candidates`` (bool over the catalogue): the items the softmax ranks the target against, the same
        set centralized training uses, items seen in the federation's training data. None: the whole
        catalogue, which for the trainer service is exactly that (its catalogue is built from its stream).
        """
        if not self.ready:
            raise RuntimeError("no global model yet")
        if self.private:
            raise RuntimeError("a private learner trains only with train_private")
        result = train_pass(self.model, self.optimizer, catalogue_tensors(catalogue), windows,
                            batch_size=batch_size, candidates=candidates)
        self._samples += result.samples
        self._steps += result.steps
        self._train_seconds += result.seconds
        if result.steps:
            self._losses.append(result.loss)
        return result.loss

    def train_private(self, catalogue: ItemCatalogue, pool: ShopperWindows, steps: int,
                      candidates: torch.Tensor | None = None) -> float:
        """``steps`` DP-SGD steps over the shoppers in ``pool`` (each step Poisson-samples them afresh);
        returns the mean loss of the sampled shoppers. The caller accounts the steps against its budget."""
        if not self.ready:
            raise RuntimeError("no global model yet")
        if self.privacy is None or not self.private:
            raise RuntimeError("train_private needs privacy enabled")
        started = time.perf_counter()
        items = catalogue_tensors(catalogue)
        results = [private_step(self.model, self.optimizer, items, pool, self.privacy, self._rng, self._generator,
                                candidates) for _ in range(steps)]
        self._train_seconds += time.perf_counter() - started
        self._samples += sum(r.samples for r in results)
        self._published_samples += steps * max(1, round(self.privacy.sample_rate * pool.shoppers))
        self._steps += steps
        losses = [r.loss for r in results if r.shoppers]
        if losses:
            self._losses.append(float(np.mean(losses)))
        return float(np.mean(losses)) if losses else float("nan")

    def prepare_update(self) -> PreparedUpdate | None:
        """Compress local - anchor (plus the error-feedback residual); the anchor moves to local."""
        # Under DP a step with nobody sampled still carries its noise, and whether an update is sent must not
        # depend on who was sampled.
        if not self.ready or (self._steps if self.private else self._samples) == 0:
            return None
        with torch.no_grad():
            state = self.model.state_dict()
            delta = {name: state[name] - self._anchor[name] for name in state}
            self._round += 1
            payload = self.feedback.compress(delta, self.codec, seed=self._round)
            self._anchor = {name: tensor.detach().clone() for name, tensor in state.items()}
        raw = sum(t.numel() * 4 for t in delta.values())
        # Under DP everything published must be data-independent: the delta is (noise on every coordinate),
        # the expected sample count is, the true loss and throughput are not (they stay in the region).
        update = PreparedUpdate(
            payload=payload,
            num_samples=self._published_samples if self.private else self._samples,
            base_version=self.base_version or 0,
            loss=0.0 if self.private or not self._losses else sum(self._losses) / len(self._losses),
            steps=self._steps,
            samples_per_second=0.0 if self.private or not self._train_seconds
            else self._samples / self._train_seconds,
            raw_bytes=raw,
            codec=self.codec.name,
        )
        self.last_samples_per_second = self._samples / self._train_seconds if self._train_seconds else 0.0
        self._samples = self._steps = self._published_samples = 0
        self._losses = []
        self._train_seconds = 0.0
        return update
