"""The l2i command: every config under experiments/ parses, the demo pipeline writes its report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from experiments.cli import COMMANDS, main, read_config
from experiments.stages import LAZY_STAGES, STAGES

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.relative_to(ROOT) for p in (ROOT / "experiments").rglob("*.yaml"))


def _verb(path: Path) -> str | None:
    """Configs say in their header which command reads them: ``#   l2i <verb> --config <path>``."""
    for line in (ROOT / path).read_text().splitlines()[:10]:
        m = re.match(r"#\s+l2i (\w+) .*--config", line)
        if m:
            return m.group(1)
    return None


def _configs(path: Path) -> list[str]:
    """The ``--config`` files of the header's command when it names ``path`` among several (an overlay is read on
    top of its base config; the command may go on over ``\\``-continued lines), else ``[path]``."""
    header = re.sub(r"\\\n#\s*", " ", "\n".join((ROOT / path).read_text().splitlines()[:12]))
    for line in header.splitlines():
        if re.match(r"#\s+l2i \w+ ", line):
            named = re.findall(r"--config (\S+)", line)
            if len(named) > 1 and str(path) in named:
                return named
    return [str(path)]


def test_there_are_configs():
    assert Path("experiments/synthetic/classifier.yaml") in CONFIGS
    assert Path("experiments/demo.yaml") in CONFIGS


def _is_part(path: Path, content) -> bool:
    """A shared part that recipes name (a data set's data, a front-end, a list of callbacks), not a recipe."""
    return not isinstance(content, dict) or "class_path" in content or path.parent.name == "frontends"


@pytest.mark.parametrize("path", CONFIGS, ids=str)
def test_every_config_parses(path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    content = yaml.safe_load((ROOT / path).read_text()) or {}
    if _is_part(path, content):  # parsed with the recipes that name it (below); it must be named by one
        here, name = ROOT / path, path.name
        users = [p for p in CONFIGS if p != path and (f"experiments/{path.parent.name}/{name}" in (ROOT / p).read_text()
                 or (f" {name}" in (ROOT / p).read_text() and p.parent == path.parent)
                 or f"../{path.parent.name}/{name}" in (ROOT / p).read_text())]
        assert users and here.is_file(), f"{path}: a shared part that no recipe names"
        return
    if "stages" in content:  # a pipeline (l2i demo / benchmark): known stages, and their configs parse
        for name, settings in content["stages"].items():
            assert name in STAGES or name in LAZY_STAGES, f"{path}: unknown stage {name!r}"
            sub = (settings or {}).get("config")
            if sub:
                assert (ROOT / sub).is_file(), f"{path}: stage {name!r} names a missing config {sub}"
        return
    verb = _verb(path)
    assert verb is not None, f"{path}: header must say which command reads it ('#   l2i <verb> --config {path}')"
    assert verb in {"fit", "validate", "test", "predict"} | set(COMMANDS), f"{path}: unknown command {verb!r}"
    with pytest.raises(SystemExit) as exit_info:
        main([verb, *[arg for cfg in _configs(path) for arg in ("--config", cfg)], "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert isinstance(printed, dict) and printed, f"{path}: --print_config printed nothing"


def test_help_lists_the_verbs(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in ("fit", "demo", "nmf", "interpret"):
        assert verb in out
    assert main([]) == 2


def test_unknown_stage_is_refused(tmp_path):
    from experiments.pipeline import run_pipeline

    with pytest.raises(ValueError, match="unknown pipeline stage.*'nope'"):
        run_pipeline({"nope": {}}, tmp_path)


@pytest.mark.slow
def test_demo_pipeline_writes_flat_report(tmp_path):
    config = {
        "out_dir": str(tmp_path / "demo"),
        "seed": 0,
        "stages": {
            "classifier": {
                "config": "experiments/synthetic/classifier.yaml",
                "overrides": ["--trainer.max_epochs", "1", "--data.init_args.num_train", "64",
                              "--data.init_args.num_val", "32", "--data.init_args.num_test", "32",
                              "--data.init_args.duration_s", "1.0", "--trainer.enable_progress_bar", "false"],
            },
            "dictionary": {
                "config": "experiments/synthetic/nmf.yaml", "num_clips": 16, "eval_clips": 16, "images": False,
                "wandb": False, "data": {"init_args": {"duration_s": 1.0}}, "nmf": {"n_components": 8, "epochs": 1},
            },
        },
    }
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(yaml.safe_dump(config))
    assert main(["demo", "--config", str(cfg), "--stages", "classifier"]) == 0
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert 0.0 <= report["classifier.test_accuracy"] <= 1.0
    assert Path(report["classifier.checkpoint"]).is_file()
    assert report["classifier.seconds"] > 0
    md = (tmp_path / "demo" / "report.md").read_text()
    assert "classifier.test_accuracy" in md and "| figure | value | meaning |" in md
    assert md.index("## Summary") < md.index("| classifier: test accuracy (`classifier.test_accuracy`) |") < md.index("## Details")
    assert "- **Trained:** classifier `small_cnn` on SyntheticDataModule, 1 epoch(s)." in md
    # one layout: the stage's checkpoints (best and last), its resolved config, its W&B run, all in its folder
    stage = tmp_path / "demo" / "classifier"
    assert (stage / "checkpoints" / "best.ckpt").is_file() and (stage / "checkpoints" / "last.ckpt").is_file()
    resolved = yaml.safe_load((stage / "config.yaml").read_text())
    assert resolved["model"]["class_path"] == "lightning_modules.ClassifierModule"
    assert resolved["trainer"]["default_root_dir"] == str(stage)
    assert yaml.safe_load((stage / "args.yaml").read_text())["args"][:2] == ["--config", "experiments/synthetic/classifier.yaml"]
    assert list((stage / "wandb").glob("offline-run-*")) and (stage / "csv").is_dir()
    assert not (tmp_path / "demo" / "config.yaml").exists() and not (tmp_path / "demo" / "wandb").exists()
    # a later stage alone reuses the classifier the earlier run left in out_dir (its front-end feeds the NMF)
    assert main(["demo", "--config", str(cfg), "--stages", "dictionary"]) == 0
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["reused.classifier"] == str(tmp_path / "demo" / "classifier" / "classifier.ckpt")
    assert report["dictionary.frontend_from"] == report["reused.classifier"]
    assert 0.0 <= report["classifier.test_accuracy"] <= 1.0  # the earlier stage's figures stay in the report
    assert Path(report["dictionary.dictionary"]).is_file()


def test_every_checkpoint_callback_keeps_best_and_last_in_the_run_folder():
    """Every config that checkpoints does it with RunCheckpoint (``<default_root_dir>/checkpoints``, which does not
    depend on the logger's run id) and keeps ``last.ckpt`` (``--ckpt_path last`` resumes every stage)."""
    fit_configs = 0
    for path in CONFIGS:
        config = read_config(ROOT / path)  # the callback list a recipe names read in
        if not isinstance(config, dict) or "model" not in config or "trainer" not in config:
            continue  # not an `l2i fit` config (nmf, benchmark, demo)
        if "overlay on" in (ROOT / path).read_text().splitlines()[0] and "callbacks" not in config["trainer"]:
            continue  # an overlay (given after its base config) keeps the base's callbacks
        fit_configs += 1
        checkpoints = [cb for cb in config["trainer"].get("callbacks") or [] if "Checkpoint" in cb["class_path"]]
        assert len(checkpoints) == 1, path  # every fit config checkpoints, once
        cb = checkpoints[0]
        assert cb["class_path"] == "callbacks.checkpoint.RunCheckpoint", path
        assert cb["init_args"].get("save_last") is True and cb["init_args"].get("filename") == "best", path
        assert "dirpath" not in cb["init_args"], path
    assert fit_configs >= 17  # 4 per real data set, the synthetic ones, own data, the paper settings


def _ctx(tmp_path):
    from experiments.pipeline import PipelineContext

    ctx = PipelineContext(out_dir=tmp_path, targets={"posthoc.sisdr_over_mixture": ">= 3", "bydesign.accuracy_gap": "<= 0.02",
                                                     "posthoc.missing": "> 0"})
    ctx.report.update({"classifier.test_accuracy": 0.9625, "classifier.epochs": 8, "classifier.backbone": "small_cnn",
                       "classifier.data": "SyntheticDataModule", "classifier.seconds": 113.29,
                       "classifier.checkpoint": str(tmp_path / "classifier" / "classifier.ckpt"),
                       "posthoc.sisdr_over_mixture": 3.6348, "posthoc.sisdr_clips": 256.0, "posthoc.seconds": 54.31,
                       "bydesign.accuracy_gap": 0.0437, "bydesign.seconds": 123.0,
                       "evaluation.lmac.AI": 12.5, "evaluation.lmac.AD": 70.125, "evaluation.lmac.SPS": 6.404e-05,
                       "evaluation.threshold": 0.2, "evaluation.seconds": 12.9})
    for key in ("evaluation.lmac.AI", "evaluation.lmac.AD", "evaluation.lmac.SPS"):
        ctx.descriptions[key] = "L-MAC's mask metrics: AI, AD, AG, FF, FidIn in %"
    return ctx


def test_report_answers_in_thirty_seconds(tmp_path):
    """Summary first (stages, what was trained, links, key figures, each target with pass / fail), then the details
    grouped by stage with a shared sentence written once; counts as integers, seconds with one decimal."""
    from experiments.pipeline import write_report

    gallery = tmp_path / "posthoc" / "interpretations" / "index.html"
    gallery.parent.mkdir(parents=True)
    gallery.write_text("<html></html>")
    _, md_path = write_report(_ctx(tmp_path))
    md = md_path.read_text()
    summary = md[md.index("## Summary"): md.index("## Details")]
    assert "- **Stages run:** classifier, posthoc, bydesign, evaluation in 303.5 s." in summary
    assert "- **Trained:** classifier `small_cnn` on SyntheticDataModule, 8 epoch(s)." in summary
    assert "[posthoc/interpretations/index.html](posthoc/interpretations/index.html)" in summary
    assert "Targets: **1 of 3 met**." in summary
    assert "| `posthoc.sisdr_over_mixture` | 3.635 | >= 3 | pass |" in summary
    assert "| `bydesign.accuracy_gap` | 0.044 | <= 0.02 | **FAIL** |" in summary
    assert "| `posthoc.missing` | — | > 0 | not run |" in summary
    assert md.count("L-MAC's mask metrics") == 1
    assert "- `lmac.AI`, `lmac.AD`, `lmac.SPS`: L-MAC's mask metrics" in md
    assert "| `posthoc.sisdr_clips` | 256 |" in md and "| `classifier.seconds` | 113.3 |" in md
    assert "| `evaluation.lmac.SPS` | 6.40e-05 |" in md and "| `evaluation.lmac.AD` | 70.125 |" in md
    assert "| `evaluation.threshold` | 0.200 | relevance threshold τ these figures were computed with |" in md
    assert "| `classifier.epochs` | 8 | training epochs run |" in md


def test_a_malformed_target_is_refused_before_any_stage(tmp_path):
    from experiments.pipeline import run_pipeline

    with pytest.raises(ValueError, match="target 'at least 3'"):
        run_pipeline({"classifier": {}}, tmp_path, targets={"posthoc.sisdr_over_mixture": "at least 3"})
    assert not (tmp_path / "classifier").exists()


def test_summary_counts_a_stage_run_inside_another_once(tmp_path):
    """The demo's benchmark stage trains the L-MAC decoder inside its own time: the summary's total is the time of
    the stages the pipeline ran (benchmark), not benchmark + lmac."""
    from experiments.pipeline import PipelineContext, summary_lines

    ctx = PipelineContext(out_dir=tmp_path)
    ctx.report.update({"benchmark.seconds": 100.0, "lmac.seconds": 40.0})
    ctx.stage_seconds["benchmark"] = 100.0
    assert "- **Stages run:** benchmark, lmac in 100.0 s." in summary_lines(ctx)
    ctx.stage_seconds.clear()  # a report put together from figures alone: every stage's own time
    assert "- **Stages run:** benchmark, lmac in 140.0 s." in summary_lines(ctx)
