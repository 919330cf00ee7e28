"""The end-of-run summary (callbacks.summary) and the epoch-end ``last.ckpt`` of RunCheckpoint."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from callbacks.checkpoint import RunCheckpoint
from callbacks.summary import RunSummary, latest_wandb_run, print_summary


class _Worsening(BoringModel):
    """Its validation score gets worse every epoch (0, 1, 2, …): the best checkpoint stays at epoch 0."""

    def validation_step(self, batch, batch_idx):
        out = super().validation_step(batch, batch_idx)
        self.log("val/score", float(self.current_epoch))
        return out


def test_last_checkpoint_is_the_last_epoch_when_the_monitor_stops_improving(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths are shown relative to the working directory
    ckpt = RunCheckpoint(monitor="val/score", mode="min", filename="best", save_last=True)
    summary = RunSummary()
    trainer = L.Trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=1, callbacks=[ckpt, summary],
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(tmp_path), accelerator="cpu")
    trainer.fit(_Worsening())
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert (best["epoch"], best["global_step"]) == (0, 2)
    assert (last["epoch"], last["global_step"]) == (2, 6)  # Lightning 2.6 alone leaves it at (0, 2)
    text = capsys.readouterr().out
    assert summary.texts == [text.strip()]
    lines = text.strip().splitlines()
    assert lines[0] == "[l2i fit] summary"
    assert lines[1] == "  best checkpoint : checkpoints/best.ckpt (val/score = 0 at epoch 0, step 2)"
    assert lines[2] == "  last checkpoint : checkpoints/last.ckpt (epoch 2, step 6)"
    assert len(lines) == 3  # no logger: nothing else to say


class _Failing(BoringModel):
    def training_step(self, batch, batch_idx):
        if self.global_step == 3:
            raise RuntimeError("boom")
        return super().training_step(batch, batch_idx)


def test_a_run_stopped_by_an_error_says_where_it_stopped_and_what_it_left(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = RunCheckpoint(monitor=None, save_last=True)
    trainer = L.Trainer(max_epochs=5, limit_train_batches=2, limit_val_batches=0, callbacks=[ckpt, RunSummary()],
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(tmp_path), accelerator="cpu")
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(_Failing())
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "[l2i fit] summary"
    assert lines[1] == "  stopped         : RuntimeError at epoch 1, step 3"
    assert lines[2] == "  last checkpoint : checkpoints/last.ckpt (epoch 0, step 2)"
    assert torch.load("checkpoints/last.ckpt", weights_only=True)["global_step"] == 2


def test_print_summary_lists_existing_files_and_the_wandb_sync_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"x")
    run = tmp_path / "out" / "wandb" / "offline-run-20260101_000000-abc"
    run.mkdir(parents=True)
    assert latest_wandb_run(tmp_path / "out") == run  # no latest-run link: the newest run folder
    (tmp_path / "out" / "wandb" / "latest-run").symlink_to(run.name)
    assert latest_wandb_run(tmp_path / "out") == run.resolve()
    assert latest_wandb_run(tmp_path / "nowhere") is None
    text = print_summary("nmf", {"dictionary": tmp_path / "out" / "d.pt", "figures": [tmp_path / "out" / "a.png",
                                 tmp_path / "out" / "b.png"], "nothing": [tmp_path / "out" / "b.png"], "skipped": None},
                         metrics={"b": torch.tensor(0.5), "a": 1.0}, wandb_run_dir=run)
    assert capsys.readouterr().out.strip() == text
    assert text.splitlines() == [
        "[l2i nmf] summary",
        "  dictionary  : out/d.pt",
        "  figures     : out/a.png",
        "  metrics     : a = 1, b = 0.5",
        "  W&B run     : out/wandb/offline-run-20260101_000000-abc",
        "  upload with : wandb sync out/wandb/offline-run-20260101_000000-abc",
    ]
