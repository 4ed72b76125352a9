"""The update factory: what it signs is what it builds, and a changed copy is signed again."""

from __future__ import annotations

from facet.federation.signing import verify
from facet.federation.updates import resigned, signed_update

KEY = b"k" * 32


def test_a_built_update_is_signed_over_its_fields_and_has_a_fresh_id() -> None:
    update = signed_update(KEY, trainer_id="trainer-eu", region="eu", base_version=3, num_samples=10,
                           codec="fp32", payload=b"abc")
    other = signed_update(KEY, trainer_id="trainer-eu", region="eu", base_version=3, num_samples=10,
                          codec="fp32", payload=b"abc")
    assert verify(update, KEY) and update.update_id != other.update_id
    assert update.update_id.startswith("trainer-eu-")
    assert signed_update(None, trainer_id="t", region="eu", base_version=0, num_samples=1, codec="fp32",
                         payload=b"").signature is None


def test_a_changed_copy_is_signed_again_or_left_unsigned() -> None:
    update = signed_update(KEY, trainer_id="trainer-eu", region="eu", base_version=0, num_samples=10,
                           codec="fp32", payload=b"abc")
    changed = resigned(update, KEY, num_samples=11)
    assert changed.num_samples == 11 and verify(changed, KEY)
    stale_signature = update.model_copy(update={"num_samples": 11})
    assert not verify(stale_signature, KEY)
    assert resigned(update, None, payload=b"x").signature is None
