"""The ``instruments`` stage of ``l2i demo`` (in the default experiments/demo.yaml): the authors' settings and the
class-block recipe side by side on the real-recording set, scored by the one evaluator, with a listening table of
mixture, true source and both interpretations (a page and a W&B table). Run through ``l2i demo`` with the default
config's own section and targets, made tiny (3 instruments, 1 s at 8 kHz, 1 epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import soundfile as sf
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = dict(instruments=["flute", "cello", "trumpet"], num_train=12, num_val=4, num_test=8, duration_s=1.0,
            classifier_epochs=1, posthoc_epochs=1, authors_components=6, block_components=2, nmf_epochs=1,
            batch_size=4, listening_clips=2)


def test_the_default_demo_runs_the_real_recording_stage_with_known_settings():
    from experiments.stages.instruments import DEFAULTS
    from experiments.pipeline import STAGE_ORDER, parse_target

    demo = yaml.safe_load((REPO / "experiments/demo.yaml").read_text())
    assert list(demo["stages"])[-1] == "instruments"  # after every synthetic stage: their figures come first
    assert set(demo["stages"]) <= set(STAGE_ORDER)
    assert set(demo["stages"]["instruments"]) <= set(DEFAULTS)  # a misspelt setting would stop the demo at the end
    for key, text in demo["targets"].items():
        parse_target(text)
        assert key.split(".", 1)[0] in demo["stages"], key  # every target is a figure of a stage the demo runs
    # the standalone config runs the same stage alone, at the stage's larger defaults
    alone = yaml.safe_load((REPO / "experiments/demo_instruments.yaml").read_text())
    assert list(alone["stages"]) == ["instruments"]


def test_the_listening_clips_are_those_with_several_instruments_first():
    from experiments.stages.instruments import several_first

    batch = {"waveform": torch.arange(4.0)[:, None].repeat(1, 3), "id": ["a", "b", "c", "d"], "sample_rate": 8000,
             "target": torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]])}
    picked = several_first(batch, 3)
    assert picked["id"] == ["b", "d", "a"] and picked["waveform"][:, 0].tolist() == [1.0, 3.0, 0.0]
    assert picked["target"].tolist() == [[1, 1, 0], [0, 1, 1], [1, 0, 0]] and picked["sample_rate"] == 8000


def test_l2i_demo_reports_both_side_by_side_with_a_listening_table_and_a_wandb_table(tmp_path):
    from experiments.cli import main
    from test_wandb_pipeline import finished_runs

    torch.set_num_threads(1)
    demo = yaml.safe_load((REPO / "experiments/demo.yaml").read_text())
    section = {**demo["stages"]["instruments"], **TINY, "cache_dir": str(tmp_path / "cache")}
    targets = {k: v for k, v in demo["targets"].items() if k.startswith("instruments.")}
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(yaml.safe_dump({"out_dir": str(tmp_path / "demo"), "seed": 0, "stages": {"instruments": section},
                                   "targets": targets}))
    assert main(["demo", "--config", str(cfg)]) == 0
    out = tmp_path / "demo"
    r = json.loads((out / "report.json").read_text())
    for name in ("authors", "recipe"):
        for key in ("pairs", "interpretation_median", "mixture_median", "over_mixture_median", "oracle_median"):
            assert isinstance(r[f"instruments.ground_truth.{name}.all.{key}"], float), (name, key)
        for key in ("pairs", "over_mixture_median", "specificity", "better_than_mixture"):
            assert isinstance(r[f"instruments.ground_truth.{name}.multi.{key}"], float), (name, key)
        assert 0.0 <= r[f"instruments.fidelity.{name}"] <= 1.0
    # the same clips and pairs for both; the mixture's figure does not depend on the interpreter
    assert r["instruments.ground_truth.authors.all.pairs"] == r["instruments.ground_truth.recipe.all.pairs"] >= 8
    assert r["instruments.ground_truth.authors.all.mixture_median"] == r["instruments.ground_truth.recipe.all.mixture_median"]
    assert r["instruments.ground_truth.recipe.all.oracle_median"] > r["instruments.ground_truth.recipe.all.mixture_median"]
    for phase in ("data", "classifier", "dictionary", "train.recipe", "eval.recipe", "listening"):
        assert r[f"instruments.{phase}_cpu_seconds"] >= 0 and r[f"instruments.{phase}_seconds"] > 0, phase
    assert r["instruments.cpu_seconds"] > 0  # every stage's CPU time, from the pipeline
    # the summary: both interpreters side by side, the listening page and the ground-truth tables linked
    md = (out / "report.md").read_text()
    summary = md[: md.index("## Details")]
    assert "| figure | authors' settings | recipe (class blocks, gated separation) |" in summary
    specificity = (f"| specificity: c's own interpretation closer to c's stem than another present instrument's | "
                   f"{r['instruments.ground_truth.authors.multi.specificity']:.3f} | "
                   f"{r['instruments.ground_truth.recipe.multi.specificity']:.3f} |")
    assert specificity in summary
    assert "[instruments/listening/index.html](instruments/listening/index.html)" in summary
    assert "[instruments/ground_truth.md](instruments/ground_truth.md)" in summary
    for key in targets:
        assert f"| `{key}` |" in summary, key
    tables = (out / "instruments" / "ground_truth.md").read_text()
    assert tables.count("| interpretation of c |") == 2 and "## recipe" in tables and "## authors" in tables
    # the listening page: mixture, true source and both interpretations of the same clips, at the rate of the set
    page = Path(r["instruments.listening"])
    rows = json.loads((page.parent / "rows.json").read_text())
    assert rows["interpreters"] == ["authors", "recipe"] and rows["has_sources"] and len(rows["rows"]) == 2
    assert rows["threshold"] is None  # each at its own threshold and options: what the evaluator scored
    several = ["," in row["true_label"] for row in rows["rows"]]
    assert several[0] and several == sorted(several, reverse=True), several  # clips with several instruments first
    for row in rows["rows"]:
        for column in ("mixture", "source", "authors", "recipe"):
            data, rate = sf.read(str(page.parent / row["files"][column]))
            assert rate == 8000 and data.shape[0] == 8000, (column, row["files"])
    # the same table in the stage's W&B run (offline), every audio cell a WAV inside the run's own folder
    assert r["instruments.wandb"] == "ok"
    (run,) = finished_runs(sorted((out / "instruments" / "wandb").glob("offline-run-*")))
    assert run["job_type"] == "instruments"
    manifest = next(m for name, m in run["artifacts"].items() if name.endswith("-listening"))
    table = json.loads(Path(manifest["listening.table.json"]).read_text())
    for row in table["data"]:
        cells = dict(zip(table["columns"], row))
        for column in ("mixture", "source", "authors", "recipe"):
            assert cells[column]["_type"] == "audio-file", column
            assert Path(manifest[cells[column]["path"]]).is_relative_to(run["folder"]), column
        assert isinstance(cells["recipe_si_sdr"], float)
    truth = next(m for name, m in run["artifacts"].items() if name.endswith("-ground_truth"))
    gt = json.loads(Path(truth["ground_truth.table.json"]).read_text())
    assert [row[0] for row in gt["data"]] == ["authors", "recipe"] and "multi.specificity" in gt["columns"]
    assert run["summary"]["instruments/ground_truth.recipe.multi.specificity"] == r["instruments.ground_truth.recipe.multi.specificity"]
