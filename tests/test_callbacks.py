"""Callbacks: a tiny post-hoc interpreter (the project's PostHocInterpreterModule) trained with the InterpretationLogger + MetricsCallback in W&B offline
mode; the run folder holds decodable WAVs, the W&B table JSON, and an HTML gallery whose references exist and
which opens in headless Chromium without errors, its audio players knowing their durations. W&B failures
(import, init, log) never stop training and the metrics still reach the CSV log."""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from callbacks.interpretation_logger import COLUMNS, InterpretationLogger, select_clips
from callbacks.metrics import MetricsCallback
from callbacks.safe_logging import SafeWandbLogger
from browser_helpers import dump_dom, layout, screenshot
from evaluation_helpers import NUM_CLASSES, SR, OracleInterpreter, datamodule, dictionary, one_thread, trained_classifier

pytestmark = pytest.mark.slow


class TinyInterpreterModule(L.LightningModule):
    """A stand-in interpreter module: trains a small Θ-like head to mimic f (so there is a loss and epochs),
    explains with the oracle interpreter (knows the sources of the registered clips)."""

    def __init__(self, classifier, oracle: OracleInterpreter):
        super().__init__()
        self.classifier = classifier
        self.oracle = oracle
        self.head = nn.Linear(classifier.frontend.config.n_mels, NUM_CLASSES)
        self.task, self.num_classes = "multiclass", NUM_CLASSES
        self.class_names = list(datamodule().class_names)

    @property
    def frontend(self):
        return self.classifier.frontend

    def training_step(self, batch, batch_idx):
        with torch.no_grad():
            feats = self.classifier.frontend(batch["waveform"])
            target = self.classifier(batch["waveform"]).argmax(-1)
        loss = nn.functional.cross_entropy(self.head(feats.logmel.mean(-1)), target)
        self.log("train/loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        feats = self.classifier.frontend(batch["waveform"])
        loss = nn.functional.cross_entropy(self.head(feats.logmel.mean(-1)), self.classifier(batch["waveform"]).argmax(-1))
        self.log("val/loss", loss)

    test_step = validation_step

    def interpret(self, waveform, target=None, threshold=0.2, **kwargs):
        return self.oracle.interpret(waveform.cpu(), target, threshold, **kwargs)

    def configure_optimizers(self):
        return torch.optim.Adam(self.head.parameters(), lr=1e-2)


def _posthoc_module():
    """The project's PostHocInterpreterModule on the tiny classifier and NMF dictionary."""
    from l2i.dictionary import DictionaryArtifact
    from lightning_modules.posthoc import PostHocInterpreterModule

    clf = trained_classifier()
    art = DictionaryArtifact(W=dictionary(), frontend=clf.frontend.config)
    return PostHocInterpreterModule(
        classifier=clf, dictionary=art, layers=["block2", "block3", "block4"], hidden=32, lr=3e-3,
        num_classes=NUM_CLASSES, task="multiclass",
        loss_weights={"reconstruction": {0: 5.0}, "fidelity": {0: 1.0}, "sparsity": {0: 0.2}},
    )


def _fit(tmp: Path, logger, epochs: int = 2, test: bool = True, images: bool = True, posthoc: bool = False):
    clf = trained_classifier()
    dm = datamodule(num_train=32, num_val=24, num_test=16, batch_size=8)
    if posthoc:
        module = _posthoc_module()
    else:
        oracle = OracleInterpreter(clf, dictionary())
        dm.setup("fit")
        for loader in (dm.val_dataloader(), dm.test_dataloader()):
            for b in loader:
                oracle.register(b)
        module = TinyInterpreterModule(clf, oracle)
    gallery = InterpretationLogger(every_n_epochs=1, clips_per_class=1, max_clips=NUM_CLASSES, images=images)
    metrics = MetricsCallback(max_batches=1)
    trainer = L.Trainer(max_epochs=epochs, logger=logger, callbacks=[gallery, metrics], default_root_dir=str(tmp),
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", devices=1, log_every_n_steps=1, num_sanity_val_steps=0)
    with one_thread():
        trainer.fit(module, datamodule=dm)
        if test:
            trainer.test(module, datamodule=dm, verbose=False)
    return trainer, gallery, metrics


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    logger = SafeWandbLogger(save_dir=str(tmp), project="l2i-test", name="tiny", offline=True)
    trainer, gallery, metrics = _fit(tmp, logger, posthoc=True)
    run_dir = Path(logger.experiment.dir).parent
    import wandb

    wandb.finish()
    return tmp, logger, trainer, gallery, metrics, run_dir


def test_select_clips_is_per_class_and_stable():
    ds = datamodule().dataset("val", 40)
    a = select_clips(ds, NUM_CLASSES, clips_per_class=2)
    assert a == select_clips(ds, NUM_CLASSES, clips_per_class=2)
    labels = [int(ds[i]["target"]) for i in a]
    assert sorted(labels) == sorted([c for c in range(NUM_CLASSES)] * 2)


def test_run_folder_has_decodable_wavs_of_the_right_rate_and_length(pipeline):
    _, logger, _, gallery, _, run_dir = pipeline
    assert logger.usable, logger.failed
    folders = sorted(f.parent.name for f in (run_dir / "interpretations").glob("*/index.html"))
    assert folders == ["test-final", "val-epoch000", "val-epoch001"]
    wavs = sorted((run_dir / "interpretations" / "val-epoch001").glob("*.wav"))
    assert len(wavs) >= 3 * NUM_CLASSES
    loud = 0
    for w in wavs:
        data, rate = sf.read(w)
        assert rate == SR and data.shape == (SR,)
        assert np.abs(data).max() <= 1.0
        loud += float(np.sqrt(np.mean(data**2))) > 1e-4
    assert loud >= 0.9 * len(wavs)  # inputs, interpretations and residuals are not silent
    for w in wavs:
        if w.name.endswith("_input.wav"):
            assert float(np.abs(sf.read(w)[0]).max()) > 0.01


def test_wandb_table_json_lists_the_columns(pipeline):
    run_dir = pipeline[5]
    tables = list(run_dir.rglob("*.table.json"))
    assert tables, f"no W&B table in {run_dir}"
    for t in tables:
        table = json.loads(t.read_text())
        assert table["columns"] == COLUMNS
        assert len(table["data"]) == NUM_CLASSES
    # W&B (>= 0.2x) stores a run table's media in the table's artifact, staged (offline) inside the run folder
    staging = run_dir / "staging" / "artifacts" / "staging"
    rates = []
    for f in staging.rglob("*"):
        if f.is_file() and f.read_bytes()[:4] == b"RIFF":
            rates.append(sf.info(str(f)).samplerate)
    assert rates and all(r == SR for r in rates), f"W&B audio not found / wrong rate in {staging}: {rates[:5]}"


def test_gallery_references_existing_files(pipeline):
    run_dir = pipeline[5]
    page = run_dir / "interpretations" / "val-epoch001" / "index.html"
    text = page.read_text()
    refs = re.findall(r"src='([^']+)'", text)
    # input, true source (the synthetic set knows it), interpretation, residual; spectrogram, relevance
    assert sum(r.endswith(".wav") for r in refs) == 4 * NUM_CLASSES and sum(r.endswith(".png") for r in refs) == 2 * NUM_CLASSES
    assert sum(r.endswith("_source.wav") for r in refs) == NUM_CLASSES
    for r in refs:
        assert (page.parent / r).is_file(), r
    assert "val/fidelity_top1" in text  # the epoch's metrics are on the page
    top = (run_dir / "interpretations" / "index.html").read_text()
    assert "val-epoch001/index.html" in top and "test-final/index.html" in top


def test_metrics_reach_the_csv_log_per_epoch(pipeline):
    _, logger, _, _, metrics, _ = pipeline
    path = Path(logger.csv.log_dir) / "metrics.csv"
    rows = list(csv.DictReader(path.open()))
    vals = [r["val/fidelity_top1"] for r in rows if r.get("val/fidelity_top1")]
    assert len(vals) == 2 and all(0.0 <= float(v) <= 1.0 for v in vals)
    assert any(r.get("val/faithfulness_prob_drop_random") for r in rows)
    assert [h["epoch"] for h in metrics.history if "val/fidelity_top1" in h] == [0, 1]
    assert "test/faithfulness_prob_drop" in metrics.history[-1]


def test_gallery_opens_in_headless_chromium(pipeline, tmp_path):
    page = pipeline[5] / "interpretations" / "val-epoch001" / "index.html"
    dom, stderr = dump_dom(page, tmp_path)
    assert "<audio" in dom
    console_errors = [l for l in stderr.splitlines() if "CONSOLE" in l and ("Error" in l or "error" in l)]
    assert not console_errors, console_errors
    assert 'id="errors" data-count="0"' in dom, re.findall(r'<div id="errors"[^>]*>[^<]*', dom)
    durations = re.findall(r'data-duration="([0-9.]+)"', dom)
    n_audio = dom.count("<audio")
    assert len(durations) == n_audio == 4 * NUM_CLASSES, (len(durations), n_audio)
    assert all(float(d) == pytest.approx(1.0, abs=0.01) for d in durations)


def test_gallery_fits_a_1280px_screen(pipeline, tmp_path):
    """Every column of every clip (input, true source, interpretation, residual, relevance) lies within a
    1,280 px window and the page does not scroll sideways; a screenshot of that window is taken."""
    page = pipeline[5] / "interpretations" / "val-epoch001" / "index.html"
    shot = screenshot(page, tmp_path / "gallery.png", tmp_path)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and sf_png_width(shot) == 1280
    found = layout(dump_dom(page, tmp_path)[0])
    assert found["viewport"] == 1280 and found["scroll_width"] <= 1280, found
    assert set(found["columns"]) == {"input", "source", "interpretation", "residual", "relevance"}
    assert all(len(rights) == NUM_CLASSES for rights in found["columns"].values()), found["columns"]
    assert found["max_right"] <= 1280 and all(r <= 1280 for rights in found["columns"].values() for r in rights)


def sf_png_width(path: Path) -> int:
    """Width of a PNG from its IHDR chunk."""
    return int.from_bytes(path.read_bytes()[16:20], "big")


# -- W&B failures never stop training ----------------------------------------------------------------------
def _csv_metrics(logger: SafeWandbLogger) -> list[dict]:
    return list(csv.DictReader((Path(logger.csv.log_dir) / "metrics.csv").open()))


def test_wandb_init_failure_falls_back_to_csv_and_files(tmp_path, monkeypatch):
    import wandb

    def broken_init(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wandb, "init", broken_init)
    logger = SafeWandbLogger(save_dir=str(tmp_path), project="l2i-test", name="broken", offline=True)
    with pytest.warns(RuntimeWarning, match="No space left"):
        trainer, gallery, metrics = _fit(tmp_path, logger, epochs=2, test=False, images=False)
    assert trainer.current_epoch == 2 and not logger.usable
    rows = _csv_metrics(logger)
    assert len([r for r in rows if r.get("val/fidelity_top1")]) == 2
    assert gallery.galleries and all(p.is_file() for p in gallery.galleries)
    h = metrics.history[-1]  # the oracle stand-in: its fidelity is 1 and its components matter more than random ones
    assert h["val/fidelity_top1"] == 1.0 and h["val/faithfulness_prob_drop"] > h["val/faithfulness_prob_drop_random"]


def test_wandb_import_and_log_failures_do_not_stop_training(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    logger = SafeWandbLogger(save_dir=str(tmp_path), project="l2i-test", name="noimport", offline=True)
    with pytest.warns(RuntimeWarning, match="W&B failed"):
        trainer, _, _ = _fit(tmp_path, logger, epochs=1, test=False, images=False)
    assert trainer.current_epoch == 1 and _csv_metrics(logger)
    monkeypatch.setitem(sys.modules, "wandb", wandb)  # the same module object again (no second import)

    logger2 = SafeWandbLogger(save_dir=str(tmp_path / "b"), project="l2i-test", name="logfails", offline=True)
    run = logger2.experiment

    def broken_log(*a, **k):
        raise RuntimeError("wandb service died")

    monkeypatch.setattr(type(run), "log", broken_log)
    try:
        with pytest.warns(RuntimeWarning, match="service died"):
            trainer, _, _ = _fit(tmp_path / "b", logger2, epochs=1, test=False, images=False)
    finally:
        monkeypatch.undo()
        wandb.finish()
    assert trainer.current_epoch == 1 and not logger2.usable
    assert any(r.get("val/fidelity_top1") for r in _csv_metrics(logger2))
