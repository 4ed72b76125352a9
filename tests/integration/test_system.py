"""The README's main job, short: every process up, learning visible, a killed process survived."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_short_main_job_learns_survives_a_kill_and_reports(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "facet_lab.cli", "--log-level", "WARNING", "run", "--duration", "45",
               "--rate", "300", "--regions", "us,eu,jp", "--kill", "trainer-us-1", "--kill-at", "15",
               "--out", str(tmp_path)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=170)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    (report_path,) = tmp_path.glob("*/report.json")
    report = json.loads(report_path.read_text())
    final = report["final"]
    assert final["global_version"] >= 5
    assert set(final["updates_applied_by_region"]) == {"us", "eu", "jp"}, "every region's trainer contributed"
    assert final["ndcg10"] > final["popularity_ndcg10"], (final["ndcg10"], final["popularity_ndcg10"])
    first = report["first_evaluation"]
    assert final["ndcg10"] > first["ndcg10"], "the global model got better during the run"
    actions = [(i["process"], i["action"]) for i in report["incidents"]]
    assert ("trainer-us-1", "killed (SIGKILL, chaos)") in actions
    assert ("trainer-us-1", "restarted") in actions
    assert report["clean_shutdown"], report["exit_codes"]
    assert report["sample_recommendation"]["status"] == 200
    launches = report["launches"]  # the generator launches items during the run; their steps are scored
    assert launches["launched_items"] > 0 and launches["warm_steps_scored"] > 0, launches
    freshness = report["freshness"]["by_region"]  # every region's events reached a served model, and it says when
    assert set(freshness) == {"us", "eu", "jp"}, freshness
    assert all(0 < f["p50"] <= f["p95"] <= 45 and f["events"] > 0 for f in freshness.values()), freshness
    comparison = report["centralized_comparison"]  # the same held-out cases, a model trained on the same events
    assert set(comparison["regions"]) == set(final["regions"]), comparison
    assert comparison["overall"]["centralized"] > 0 and comparison["overall"]["ratio"] > 0, comparison
    for plot in ("ndcg10_over_time.png", "bytes_sent.png"):
        assert (report_path.parent / plot).stat().st_size > 10_000
