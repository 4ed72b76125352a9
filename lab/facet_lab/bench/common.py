"""What every benchmark shares: JSON output with a top-level summary, and resource measurements."""

from __future__ import annotations

import json
import platform
import resource
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "measured_at": datetime.now(UTC).isoformat(),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_result(path: Path, summary: dict[str, Any], **sections: Any) -> dict[str, Any]:
    payload = {"summary": summary, **sections, "environment": environment()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    return payload
