"""``experiments/benchmarks/compare_reports.py``: two demo reports hold the same figures (timings and paths
aside, numbers to a tolerance), or it names each key that differs and exits 1."""

from __future__ import annotations

import json
import math

from experiments.benchmarks.compare_reports import compare, main


def _report(**changes) -> dict:
    """A report shaped like ``l2i demo``'s: flat dotted keys, a few nested tables and lists."""
    report = {
        "classifier.test_accuracy": 0.8125,
        "classifier.train_seconds": 12.3,
        "classifier.checkpoint": "runs/demo/classifier/checkpoints/best.ckpt",
        "dictionary.n_components": 64,
        "dictionary.relative_error": 0.2718,
        "posthoc.fidelity": 0.9,
        "posthoc.seconds": 40.1,
        "posthoc.duration_s": 3.0,
        "posthoc.converged": True,
        "evaluation.ground_truth.single.interpretation_median": float("nan"),
        "benchmark.rows": [{"name": "posthoc", "si_sdr": 4.5, "interp_ms_per_clip": 3.1},
                           {"name": "saliency", "si_sdr": -2.0, "interp_ms_per_clip": 0.4}],
        "benchmark.table": "runs/demo/benchmark.md",
        "wandb_run": "offline-run-20261128_120000-abc",
        "listening": "runs/demo/listening/index.html",
    }
    report.update(changes)
    return report


def _write(tmp_path, name: str, report: dict) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(report))
    return str(path)


def test_timings_paths_and_rounding_are_not_differences(tmp_path, capsys):
    new = _report(**{"classifier.train_seconds": 99.0, "posthoc.seconds": 1.0, "posthoc.duration_s": 7.0,
                     "classifier.checkpoint": "/elsewhere/best.ckpt", "benchmark.table": "/other/benchmark.md",
                     "wandb_run": "offline-run-20261129_000000-xyz", "listening": "elsewhere/index.html",
                     "posthoc.fidelity": 0.9 * (1 + 5e-5)})
    new["benchmark.rows"] = [dict(r, interp_ms_per_clip=r["interp_ms_per_clip"] * 3) for r in new["benchmark.rows"]]
    rc = main([_write(tmp_path, "old.json", _report()), _write(tmp_path, "new.json", new)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.strip().splitlines() == [
        "same figures: 10 figures compared, 0 differ (left aside: 5 timings, 4 paths, 0 ignored; rtol 0.0001, atol 1e-06)"]


def test_each_differing_figure_is_named_and_the_exit_status_is_1(tmp_path, capsys):
    new = _report(**{"posthoc.fidelity": 0.91, "dictionary.n_components": 72, "posthoc.converged": False,
                     "evaluation.ground_truth.single.interpretation_median": 1.5, "extra.figure": 1.0})
    del new["classifier.test_accuracy"]
    new["benchmark.rows"][1]["si_sdr"] = -2.5
    rc = main([_write(tmp_path, "old.json", _report()), _write(tmp_path, "new.json", new)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 1
    assert lines[:-1] == [
        "benchmark.rows[1].si_sdr: -2.0 -> -2.5",
        "classifier.test_accuracy: 0.8125 -> (absent)",
        "dictionary.n_components: 64 -> 72",
        "evaluation.ground_truth.single.interpretation_median: NaN -> 1.5",
        "extra.figure: (absent) -> 1.0",
        "posthoc.converged: true -> false",
        "posthoc.fidelity: 0.9 -> 0.91",
    ]
    assert lines[-1].startswith("differ: 11 figures compared, 7 differ")


def test_tolerances_ignore_patterns_and_types():
    old, new = {"a": 1.0, "b": 100.0, "c": 1, "d": True, "e": "x"}, {"a": 1.0 + 2e-6, "b": 100.02, "c": 1.0,
                                                                      "d": 1, "e": "y"}
    lines, counts = compare(old, new, rtol=1e-4, atol=1e-6)  # b is 2e-4 off relatively, a 2e-6
    assert [line.split(":")[0] for line in lines] == ["b", "d", "e"] and counts["compared"] == 5
    lines, _ = compare(old, new, rtol=1e-3, atol=1e-6)
    assert [line.split(":")[0] for line in lines] == ["d", "e"]
    lines, _ = compare(old, new, rtol=0.0, atol=1e-6)
    assert [line.split(":")[0] for line in lines] == ["a", "b", "d", "e"]
    lines, counts = compare(old, new, ignore=["d", "e"])
    assert [line.split(":")[0] for line in lines] == ["b"] and counts["ignored"] == 2
    assert compare({"x": math.inf}, {"x": math.inf})[0] == [] and compare({"x": math.inf}, {"x": 1e300})[0]
    assert compare({"x": "1"}, {"x": 1})[0] == ['x: "1" -> 1']


def test_a_file_that_is_not_a_report_is_one_line_and_exit_status_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main([str(bad), _write(tmp_path, "new.json", _report())]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"compare_reports: error: {bad}: cannot be read as JSON")
    assert main([_write(tmp_path, "list.json", [1, 2]), str(tmp_path / "new.json")]) == 2
    assert "holds a JSON list, not an object of figures" in capsys.readouterr().err
