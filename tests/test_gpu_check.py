"""The prepared GPU check runs end to end in its CPU dry mode (the parts' code paths at toy sizes), so it
cannot rot before a GPU comes: every figure comes with its baseline of the same run and a ratio."""

from __future__ import annotations

import json
import math

from experiments.benchmarks import gpu_check

FIGURES = {"nmf", "interpretations", "posthoc_step", "train_bf16_cl", "load_uncached_mp3", "load_cached"}


def test_gpu_check_dry_mode_reports_every_figure_against_its_baseline(tmp_path, capsys):
    out = tmp_path / "figures.json"
    assert gpu_check.main(["--dry", "--json", str(out), "--work-dir", str(tmp_path / "work")]) == 0
    report = json.loads(out.read_text())
    assert report["mode"].startswith("dry") and report["device"] == "cpu"
    assert report["errors"] == {} and report["skipped"] == []
    figs = {f["name"]: f for f in report["figures"]}
    assert set(figs) == FIGURES
    for name, f in figs.items():
        assert f["value"] > 0 and f["baseline_value"] > 0 and math.isfinite(f["ratio"]) and f["ratio"] > 0, name
        assert f["met"] is None, name  # toy sizes: targets are not judged
    for name in ("interpretations", "train_bf16_cl", "load_uncached_mp3", "load_cached"):  # throughputs: ours / baseline
        assert math.isclose(figs[name]["ratio"], figs[name]["value"] / figs[name]["baseline_value"], rel_tol=0.02), name
    for name in ("nmf", "posthoc_step"):  # times: baseline / ours for the NMF speed-up, ours / baseline for the step
        f = figs[name]
        expect = f["baseline_value"] / f["value"] if name == "nmf" else f["value"] / f["baseline_value"]
        assert math.isclose(f["ratio"], expect, rel_tol=1e-6), name
    assert figs["nmf"]["target"] == ">= 50x" and figs["posthoc_step"]["target"] == "<= 2.0"
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FIGURE ")]
    assert {line.split()[1] for line in printed} == FIGURES  # one line per figure (printed again as a summary)


def test_targets_are_judged_in_their_direction():
    fig = gpu_check._figure("x", "x", 49.0, 1.0, "s", "b", ">= 50x")
    assert gpu_check._met(fig) is False
    assert gpu_check._met(gpu_check._figure("x", "x", 50.0, 1.0, "s", "b", ">= 50x")) is True
    assert gpu_check._met(gpu_check._figure("x", "x", 2.5, 1.0, "s", "b", "<= 2.0", ratio=2.5)) is False
    assert gpu_check._met(gpu_check._figure("x", "x", 1.9, 1.0, "s", "b", "<= 2.0", ratio=1.9)) is True
    assert gpu_check._met(gpu_check._figure("x", "x", 1.0, 1.0, "s", "b", None)) is None
