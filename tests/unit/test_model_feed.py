"""The model gate: what a trainer or recommender will load from facet.models.v1 (no broker needed)."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator

import pytest
import torch
from facet import wire
from facet.contracts import ArtifactPointer, GlobalModel
from facet.errors import PoisonMessageError
from facet.federation.model_signing import ModelSigner, generate_keypair
from facet.federation.validation import spec_of
from facet.service.model_feed import ModelGate, ModelTrustSettings
from facet.service.models import to_bytes

PRIVATE, PUBLIC = generate_keypair()
SIGNER = ModelSigner(PRIVATE)
PARAMETERS = {"w": torch.ones(4, 3), "b": torch.zeros(3)}


def _gate(**trust: object) -> ModelGate:
    return ModelGate("m", ModelTrustSettings(public_keys=[PUBLIC], **trust), spec_of(PARAMETERS))


def _model(version: int = 1, epoch: int = 0, parameters: dict[str, torch.Tensor] = PARAMETERS) -> GlobalModel:
    return GlobalModel(model_name="m", epoch=epoch, version=version, parameters=to_bytes(parameters))


def _reason(gate: ModelGate, value: bytes | None) -> str:
    with pytest.raises(PoisonMessageError) as caught:
        gate.admit(value)
    return caught.value.reason


def test_unsigned_forged_and_foreign_models_are_refused() -> None:
    gate = _gate()
    assert _reason(gate, wire.encode(_model(version=2**61))) == "unsigned"
    forged = SIGNER.sign(_model()).model_copy(update={"version": 2**61})
    assert _reason(gate, wire.encode(forged)) == "bad_signature"
    other = ModelSigner(generate_keypair()[0]).sign(_model())
    assert _reason(gate, wire.encode(other)) == "bad_signature"
    assert _reason(gate, wire.encode(SIGNER.sign(_model()).model_copy(update={"model_name": "x"}))) == "wrong_model"


def test_any_bytes_are_a_reason_never_an_exception() -> None:
    gate = _gate()
    for value in (None, b"", b"\xc1", b"\x81\xa6schema\xa5facet", b"\xd6\xff" + b"\xff" * 4, b"\x91" * 5000):
        assert _reason(gate, value)


def test_generations_order_by_epoch_then_version() -> None:
    gate = _gate()
    loaded = gate.admit(wire.encode(SIGNER.sign(_model(version=9))))
    gate.load(loaded)
    assert not gate.newer(SIGNER.sign(_model(version=9)))
    assert not gate.newer(SIGNER.sign(_model(version=3)))
    assert gate.newer(SIGNER.sign(_model(version=10)))
    assert gate.newer(SIGNER.sign(_model(version=0, epoch=1))), "a restored aggregator's new epoch moves the fleet"


def test_tensors_other_than_the_expected_ones_are_refused_before_loading() -> None:
    gate = _gate()
    for wrong in ({"w": torch.ones(400, 3), "b": torch.zeros(3)}, {"w": torch.ones(4, 3)},
                  {"w": torch.ones(4, 3, dtype=torch.float64), "b": torch.zeros(3)}):
        model = gate.admit(wire.encode(SIGNER.sign(_model(parameters=wrong))))
        with pytest.raises(PoisonMessageError) as caught:
            gate.load(model)
        assert caught.value.reason == "wrong_tensors"
    assert gate.current == (-1, -1)


class _Artifacts(http.server.BaseHTTPRequestHandler):
    blob = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.blob)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def artifact_server() -> Iterator[str]:
    _Artifacts.blob = to_bytes(PARAMETERS)
    server = http.server.HTTPServer(("127.0.0.1", 0), _Artifacts)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/artifacts"
    server.shutdown()
    server.server_close()


def _pointer_model(uri: str, blob: bytes, size: int | None = None) -> GlobalModel:
    pointer = ArtifactPointer(uri=uri, sha256=hashlib.sha256(blob).hexdigest(), size_bytes=size or len(blob))
    return SIGNER.sign(GlobalModel(model_name="m", version=1, artifact=pointer))


def test_artifacts_only_from_the_configured_aggregator_bounded_and_checked(artifact_server: str) -> None:
    blob = _Artifacts.blob
    gate = _gate(artifact_base_url=artifact_server)
    fetched = gate.load(gate.admit(wire.encode(_pointer_model(f"{artifact_server}/m.safetensors", blob))))
    assert torch.equal(fetched["w"], PARAMETERS["w"])
    elsewhere = gate.admit(wire.encode(_pointer_model("file:///etc/passwd", blob)))
    with pytest.raises(PoisonMessageError, match="not under"):
        gate.load(elsewhere)
    sibling = gate.admit(wire.encode(_pointer_model(artifact_server + "-evil/m.safetensors", blob)))
    with pytest.raises(PoisonMessageError, match="not under"):
        gate.load(sibling)
    assert _reason(gate, wire.encode(_pointer_model(f"{artifact_server}/m.safetensors", blob, 200_000_000))) == (
        "oversize")
    lying = gate.admit(wire.encode(_pointer_model(f"{artifact_server}/m.safetensors", blob + b"x")))
    with pytest.raises(PoisonMessageError):
        gate.load(lying)
    no_base = _gate()
    with pytest.raises(PoisonMessageError):
        no_base.load(no_base.admit(wire.encode(_pointer_model(f"{artifact_server}/m.safetensors", blob))))


def test_consumers_refuse_to_start_without_a_model_key() -> None:
    with pytest.raises(ValueError, match="public_keys"):
        ModelTrustSettings().check()
    ModelTrustSettings(allow_unsigned=True).check()
