"""The l2i command: every config under experiments/ parses, the demo pipeline writes its report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from experiments.cli import COMMANDS, main
from experiments.pipeline import LAZY_STAGES, STAGES

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
    top of its base config), else ``[path]``."""
    for line in (ROOT / path).read_text().splitlines()[:12]:
        if re.match(r"#\s+l2i \w+ ", line):
            named = re.findall(r"--config (\S+)", line)
            if len(named) > 1 and str(path) in named:
                return named
    return [str(path)]


def test_there_are_configs():
    assert Path("experiments/synthetic/classifier.yaml") in CONFIGS
    assert Path("experiments/demo.yaml") in CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=str)
def test_every_config_parses(path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    content = yaml.safe_load((ROOT / path).read_text()) or {}
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
    # a later stage alone reuses the classifier the earlier run left in out_dir (its front-end feeds the NMF)
    assert main(["demo", "--config", str(cfg), "--stages", "dictionary"]) == 0
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["reused.classifier"] == str(tmp_path / "demo" / "classifier" / "classifier.ckpt")
    assert report["dictionary.frontend_from"] == report["reused.classifier"]
    assert 0.0 <= report["classifier.test_accuracy"] <= 1.0  # the earlier stage's figures stay in the report
    assert Path(report["dictionary.dictionary"]).is_file()
