"""Aggregator checkpoints survive truncation, corruption and a full disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from facet.federation.server import AggregatorState
from facet.storage import write_atomically
from facet_aggregator import checkpoint


def _state(version: int) -> AggregatorState:
    return AggregatorState(parameters={"w": torch.full((3,), float(version))}, version=version, epoch=7,
                           guard_history={"trainer-eu": {"samples": [1.0], "norms": [2.0], "influence": [2.0]}})


def test_a_truncated_latest_falls_back_to_the_newest_valid_checkpoint(tmp_path: Path) -> None:
    for version in (1, 2, 3):
        checkpoint.save(tmp_path, _state(version), {0: version * 10})
    (tmp_path / checkpoint.LATEST).write_text('{"version": 3, "param')
    restored = checkpoint.load(tmp_path)
    assert restored is not None and restored.state.version == 3 and restored.offsets == {0: 30}
    assert restored.state.epoch == 7 and restored.state.guard_history["trainer-eu"]["norms"] == [2.0]
    (tmp_path / "model-v00000003.safetensors").write_bytes(b"corrupt")
    restored = checkpoint.load(tmp_path)
    assert restored is not None and restored.state.version == 2 and restored.offsets == {0: 20}


def test_nothing_valid_means_a_fresh_start_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / checkpoint.LATEST).write_text("not json")
    assert checkpoint.load(tmp_path) is None


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint.save(tmp_path, _state(1), {0: 10})

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_atomically", disk_full)
    with pytest.raises(OSError):
        checkpoint.save(tmp_path, _state(2), {0: 20})
    monkeypatch.undo()
    restored = checkpoint.load(tmp_path)
    assert restored is not None and restored.state.version == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_atomic_writes_leave_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.bin"
    write_atomically(target, b"old")

    def failing_fsync(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("facet.storage.os.fsync", failing_fsync)
    with pytest.raises(OSError):
        write_atomically(target, b"new")
    assert target.read_bytes() == b"old" and not (tmp_path / "f.bin.tmp").exists()


def test_old_artifacts_are_pruned(tmp_path: Path) -> None:
    import os

    from facet.service.models import prune_artifacts, write_artifact

    for version in range(8):
        write_artifact(tmp_path, f"m-e1-v{version:08d}.safetensors", b"x", "http://a/v1/artifacts")
        os.utime(tmp_path / f"m-e1-v{version:08d}.safetensors", ns=(version * 10**9, version * 10**9))
    prune_artifacts(tmp_path, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"m-e1-v{v:08d}.safetensors" for v in (5, 6, 7)]


def test_a_zones_outbox_is_durable_with_its_state_and_gone_once_a_later_checkpoint_drops_it(tmp_path: Path) -> None:
    checkpoint.save(tmp_path, _state(1), {0: 5}, outbox=b"\x00forwarded update\xff")
    restored = checkpoint.load(tmp_path)
    assert restored is not None and restored.outbox == b"\x00forwarded update\xff" and restored.offsets == {0: 5}
    checkpoint.save(tmp_path, _state(2), {0: 7})
    restored = checkpoint.load(tmp_path)
    assert restored is not None and restored.outbox is None and restored.state.version == 2
