"""Configs under experiments/ parse without touching the disk; ``l2i crossval`` runs ESC-50 folds from one
config on a tiny fixture and reports mean ± std."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from experiments.cli import main
from fixtures_datasets import make_esc50

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["experiments/esc50/classifier.yaml", "experiments/sonyc_ust/classifier.yaml",
           "experiments/magnatagatune/classifier.yaml", "experiments/mtg_jamendo/classifier.yaml"]
DATA = {"esc50": "ESC50DataModule", "sonyc_ust": "SONYCUSTDataModule", "magnatagatune": "MagnaTagATuneDataModule",
        "mtg_jamendo": "MTGJamendoDataModule"}


@pytest.mark.parametrize("config", CONFIGS)
def test_config_prints_without_touching_the_disk(config, tmp_path, capsys, monkeypatch):
    """``l2i fit --config <file> --print_config`` from an empty folder: no data root, nothing written."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(ROOT / config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    dataset = Path(config).parent.name
    assert printed["data"]["class_path"].endswith(DATA[dataset])
    assert printed["data"]["init_args"]["root"].startswith("data/")
    assert printed["model"]["init_args"]["frontend"]["sample_rate"] == printed["data"]["init_args"]["sample_rate"]
    assert os.listdir(tmp_path) == []  # no cache, report or log folder created at parse time


def test_esc50_config_instantiates_without_data(tmp_path, monkeypatch):
    """Building the DataModule (as fit does before setup) reads nothing: the root is only needed at setup."""
    from experiments.cli import lightning_cli

    monkeypatch.chdir(tmp_path)
    cli = lightning_cli(["--config", str(ROOT / CONFIGS[0]), "--trainer.logger", "false",
                         "--model.init_args.backbone", "small_cnn", "--model.init_args.backbone_kwargs",
                         "{channels: [4, 4, 8, 8]}"], run=False)
    assert cli.datamodule.num_classes == 50 and cli.model.num_classes == 50  # linked into the model
    assert cli.model.class_names[:2] == ["dog", "rooster"]
    assert os.listdir(tmp_path) == []
    with pytest.raises(FileNotFoundError, match=r"ESC-50: root 'data/ESC-50-master' does not exist"):
        cli.datamodule.setup("fit")


@pytest.mark.slow
def test_crossval_runs_folds_and_reports_mean_std(tmp_path, capsys):
    fx = make_esc50(tmp_path, classes=(0, 1), clips_per_class_per_fold=2, seconds=0.25)
    out = tmp_path / "cv"
    tiny = [
        "--data.init_args.root", str(fx.root), "--data.init_args.sample_rate", "11025",
        "--data.init_args.duration_s", "0.25", "--data.init_args.loader.batch_size", "8", "--data.init_args.loader.num_workers", "0",
        "--data.init_args.loader.pin_memory", "false", "--data.init_args.loader.persistent_workers", "false",
        "--data.init_args.loader.cache_dir", str(tmp_path / "cache"),
        "--model.init_args.backbone", "small_cnn", "--model.init_args.backbone_kwargs", "{channels: [4, 4, 8, 8]}",
        "--model.init_args.frontend", "{sample_rate: 11025, n_fft: 256, hop_length: 128, n_mels: 32}",
        "--trainer.max_epochs", "1", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.accelerator", "cpu", "--trainer.num_sanity_val_steps", "0",
    ]
    code = main(["crossval", "--config", CONFIGS[0], "--out_dir", str(out), "--", *tiny])  # default: folds 1-5
    assert code == 0
    report = json.loads((out / "crossval.json").read_text())
    assert [r["fold"] for r in report["runs"]] == [1, 2, 3, 4, 5]
    assert [r["val_fold"] for r in report["runs"]] == [2, 3, 4, 5, 1]  # the next fold, 5 -> 1
    acc = [r["metrics"]["test/accuracy"] for r in report["runs"]]
    assert all(a in (0.0, 0.25, 0.5, 0.75, 1.0) for a in acc)  # 4 test clips per fold
    s = report["summary"]["test/accuracy"]
    assert s["n"] == 5 and s["mean"] == pytest.approx(np.mean(acc)) and s["std"] == pytest.approx(np.std(acc))
    assert all(r["best_checkpoint"] and Path(r["best_checkpoint"]).is_file() for r in report["runs"])
    assert (out / "fold-5").is_dir()
    md = (out / "crossval.md").read_text()
    assert "| metric | fold 1 | fold 2 | fold 3 | fold 4 | fold 5 | mean ± std |" in md
    assert f"| test/accuracy | {' | '.join(f'{a:.4f}' for a in acc)} | {s['text']} |" in md
    assert "test/accuracy: " in capsys.readouterr().out


def test_crossval_refuses_bad_folds(tmp_path):
    with pytest.raises(ValueError, match=r"folds must be among \(1, 2, 3, 4, 5\), got \[0, 6\]"):
        main(["crossval", "--config", CONFIGS[0], "--folds", "0", "6", "--out_dir", str(tmp_path)])
    with pytest.raises(ValueError, match=r"folds repeat"):
        main(["crossval", "--config", CONFIGS[0], "--folds", "1", "1", "--out_dir", str(tmp_path)])
