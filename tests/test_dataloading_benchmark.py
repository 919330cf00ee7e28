"""The data-loading benchmark script runs and reports every row (a smoke test: it asserts no speed)."""

from __future__ import annotations

import json

import pytest

from experiments.benchmarks import dataloading


@pytest.mark.parametrize("target_rate", [44100, 16000])
def test_dataloading_benchmark_reports_every_pipeline(tmp_path, target_rate):
    out = tmp_path / "figures.json"
    assert dataloading.main(["--clips", "10", "--seconds", "0.25", "--batch-size", "4", "--target-rate",
                             str(target_rate), "--work-dir", str(tmp_path / "work"), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["results"]
    assert len(rows) == 8 and next(iter(rows)).startswith("librosa per item")
    for name, row in rows.items():
        assert row["clips"] == 10, name  # every clip, once per timed epoch, in every pipeline
        assert row["clips_per_s"] > 0 and row["seconds"] > 0, name
        assert row["cpu_ms_per_clip"] is None or row["cpu_ms_per_clip"] >= 0, name
    assert set(report["speedup"]) == set(rows) and report["speedup"][next(iter(rows))] == 1.0
    assert report["target_rate"] == target_rate and report["cache_build_s"] >= 0
