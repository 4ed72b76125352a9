"""Follow ``facet.models.v1``: every process that needs the global model reads the topic from the start
(never ``seek_to_end``, which is wrong on the embedded broker) and acts on each newer signed generation.

Nothing on the topic is trusted: a record must decode, name our model, carry the aggregator's Ed25519
signature, be newer by (epoch, version) than what is loaded, and hold exactly the tensors this process
expects, before ``on_model`` sees it. Anything else is counted, logged, dead-lettered when a publisher is
given, and skipped; the loop never stops for a record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import torch
from prometheus_client import Counter
from pydantic import BaseModel, Field

from facet import wire
from facet.config import KafkaSettings
from facet.contracts import MAX_INLINE_MODEL_BYTES, GlobalModel
from facet.errors import PoisonMessageError, RetriableError
from facet.federation.model_signing import ModelVerifier
from facet.federation.validation import TensorSpec, spec_of
from facet.kafka.clients import assign_whole_topic, make_consumer
from facet.kafka.dlq import DeadLetterPublisher
from facet.logging import get_logger
from facet.model.network import ModelConfig
from facet.service import metric_names as names
from facet.service.health import Health
from facet.service.models import fetch_parameters

log = get_logger(__name__)

OnModel = Callable[[dict[str, torch.Tensor], GlobalModel], Awaitable[None]]

MODELS_REJECTED = Counter(names.MODEL_FEED_REJECTED_TOTAL, "Model broadcasts refused by this process",
                          ["reason"])


class ModelTrustSettings(BaseModel):
    """What a model consumer trusts (nested in each consumer's settings: ``..._MODEL_TRUST__...``)."""

    #: Hex Ed25519 public keys of the aggregator; two during a key rotation.
    public_keys: list[str] = Field(default_factory=list, max_length=8)
    #: Artifacts are fetched only under this URL prefix (the aggregator's ``/v1/artifacts``).
    artifact_base_url: str | None = None
    fetch_attempts: int = Field(default=5, ge=1, le=50)
    fetch_backoff_s: float = Field(default=0.5, gt=0, le=60)
    fetch_timeout_s: float = Field(default=30.0, gt=0)
    #: Development only: accept unsigned broadcasts (refused unless set explicitly).
    allow_unsigned: bool = False

    def check(self) -> None:
        """Called by each consumer's settings validator: no keys means no trust, unless said explicitly."""
        if not self.public_keys and not self.allow_unsigned:
            raise ValueError("model_trust.public_keys is required: consumers load only models the aggregator "
                             "signed (set model_trust.allow_unsigned=true only for experiments)")

    def verifier(self) -> ModelVerifier | None:
        return ModelVerifier(self.public_keys) if self.public_keys else None


class ModelGate:
    """The checks a broadcast passes before it is fetched and loaded; pure, so it is tested without Kafka."""

    def __init__(self, model_name: str, trust: ModelTrustSettings, spec: TensorSpec) -> None:
        self.model_name = model_name
        self.trust = trust
        self.spec = dict(spec)
        self.verifier = trust.verifier()
        self.max_bytes = min(MAX_INLINE_MODEL_BYTES, _expected_bytes(spec) + 64 * 1024)
        self.current: tuple[int, int] = (-1, -1)

    @classmethod
    def for_model(cls, model_name: str, trust: ModelTrustSettings, config: ModelConfig) -> ModelGate:
        """The gate of a process that serves or trains ``config``: it admits exactly that model's tensors."""
        from facet.model.network import new_model

        return cls(model_name, trust, spec_of(new_model(config).state_dict()))

    def admit(self, value: bytes | None) -> GlobalModel:
        """The decoded broadcast if it may be loaded; PoisonMessageError (with a reason) otherwise."""
        model = wire.decode(value, GlobalModel, max_bytes=self.max_bytes + 1024 * 1024)
        if model.model_name != self.model_name:
            raise PoisonMessageError("wrong_model", f"broadcast for {model.model_name!r}")
        if self.verifier is not None:
            if model.signature is None:
                raise PoisonMessageError("unsigned", f"version {model.version} carries no signature")
            if not self.verifier.verify(model):
                raise PoisonMessageError("bad_signature", f"version {model.version} fails verification")
        if model.artifact is not None and model.artifact.size_bytes > self.max_bytes:
            raise PoisonMessageError("oversize", f"artifact of {model.artifact.size_bytes} bytes for a model "
                                                 f"of {self.max_bytes}")
        return model

    def newer(self, model: GlobalModel) -> bool:
        return model.generation > self.current

    def load(self, model: GlobalModel) -> dict[str, torch.Tensor]:
        """Fetch (with retries) and check the tensors; marks the generation as current."""
        attempts = self.trust.fetch_attempts
        for attempt in range(1, attempts + 1):
            try:
                parameters = fetch_parameters(model, self.spec, allowed_prefix=self.trust.artifact_base_url,
                                              max_bytes=self.max_bytes, timeout_s=self.trust.fetch_timeout_s)
                break
            except RetriableError:
                if attempt == attempts:
                    raise
                time.sleep(self.trust.fetch_backoff_s * 2 ** (attempt - 1))
        self.current = model.generation
        return parameters


def _expected_bytes(spec: TensorSpec) -> int:
    total = 0
    for shape, dtype in spec.values():
        count = 1
        for dim in shape:
            count *= dim
        total += count * torch.empty((), dtype=dtype).element_size()
    return total


async def follow_models(
    kafka: KafkaSettings,
    topic: str,
    gate: ModelGate,
    on_model: OnModel,
    stop: asyncio.Event,
    dlq: DeadLetterPublisher | None = None,
    health: Health | None = None,
) -> None:
    """``health``, when given, is ticked on every poll: for a process whose only loop is this one."""
    consumer = make_consumer(kafka, kafka.federation_servers(), group_id=None)
    await consumer.start()
    try:
        if not await assign_whole_topic(consumer, topic, stop):
            return
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            if health is not None:
                health.tick()
            newest: GlobalModel | None = None
            for records in batches.values():
                for record in records:
                    try:
                        model = gate.admit(record.value)
                    except PoisonMessageError as error:
                        await _reject(error, record, dlq)
                        continue
                    if gate.newer(model) and (newest is None or model.generation > newest.generation):
                        newest = model
            if newest is not None:
                await _load(gate, newest, on_model, dlq)
    finally:
        await consumer.stop()


async def _load(gate: ModelGate, model: GlobalModel, on_model: OnModel, dlq: DeadLetterPublisher | None) -> None:
    try:
        parameters = await asyncio.to_thread(gate.load, model)
    except RetriableError as error:
        MODELS_REJECTED.labels("fetch_failed").inc()
        log.warning("model_fetch_failed", epoch=model.epoch, version=model.version, error=str(error)[:300])
        return
    except PoisonMessageError as error:
        await _reject(error, None, dlq, model)
        return
    await on_model(parameters, model)


async def _reject(error: PoisonMessageError, record: object, dlq: DeadLetterPublisher | None,
                  model: GlobalModel | None = None) -> None:
    MODELS_REJECTED.labels(error.reason).inc()
    log.warning("model_message_rejected", reason=error.reason, detail=error.detail[:200],
                offset=getattr(record, "offset", None), version=model.version if model else None)
    if dlq is not None and record is not None:
        await dlq.publish_record_quietly(error, record)

