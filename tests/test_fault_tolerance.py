"""Fault tolerance: a run killed with SIGKILL resumes from last.ckpt and ends where an uninterrupted run
ends; crafted pickles are refused; non-finite losses stop the run naming the stage and step."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from callbacks.guards import DivergenceError, NaNGuard, NonFiniteLossError
from datamodules import SyntheticDataModule
from datamodules.sampling import EpochSampler
from experiments.cli import read_config
from l2i.checkpoints import CheckpointError, UnsafeCheckpointError, safe_load
from lightning_modules import ClassifierModule

ROOT = Path(__file__).resolve().parents[1]


def _tiny_config(tmp_path: Path) -> list[str]:
    """The demo classifier config made tiny: 96 clips / batch 16 = 6 steps per epoch, 2 epochs; last.ckpt
    every 4 steps and at epoch ends."""
    config = read_config(ROOT / "experiments/synthetic/classifier.yaml")  # its data / front-end files read in
    config["trainer"].update(max_epochs=2, logger=False, enable_progress_bar=False, accelerator="cpu", deterministic=True)
    for cb in config["trainer"]["callbacks"]:
        if "last_every_n_train_steps" in cb.get("init_args", {}):
            cb["init_args"]["last_every_n_train_steps"] = 4
    config["data"]["init_args"].update(num_train=96, num_val=32, num_test=32, duration_s=1.0, batch_size=16)
    config["model"]["init_args"]["backbone_kwargs"] = {"channels": [4, 8, 8, 8]}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return ["--config", str(path)]


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import lightning as L
    from experiments.cli import lightning_cli

    class KillAt(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == int(os.environ["KILL_AT_STEP"]):
                os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, as a node failure

    cli = lightning_cli(sys.argv[1:], run=False)
    cli.trainer.callbacks.append(KillAt())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    """
)


def _run(args: list[str], cwd: Path, env: dict | None = None, script: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(script)] if script else [sys.executable, "-m", "experiments.cli"]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", **(env or {})}
    return subprocess.run(cmd + (["fit"] if not script else []) + args, cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=600)


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return safe_load(ckpt)["state_dict"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_from_last_matches_uninterrupted(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    TINY = _tiny_config(tmp_path)
    done = _run(TINY + ["--trainer.default_root_dir", str(straight)], cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]

    script = tmp_path / "kill_run.py"
    script.write_text(KILLER)
    # step 10 is batch 4 of epoch 2; the last checkpoint before it is step 8 (mid-epoch)
    dead = _run(TINY + ["--trainer.default_root_dir", str(killed)], cwd=ROOT, env={"KILL_AT_STEP": "10"}, script=script)
    assert dead.returncode == -signal.SIGKILL, dead.stderr[-3000:]
    last = killed / "checkpoints" / "last.ckpt"
    assert safe_load(last)["global_step"] == 8

    resumed = _run(TINY + ["--trainer.default_root_dir", str(killed), "--ckpt_path", "last"], cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restoring states from the checkpoint path at" in resumed.stderr and "last.ckpt" in resumed.stderr
    assert "defaulting to `False`" not in resumed.stderr  # resumed with weights_only=True
    a, b = _weights(straight / "checkpoints" / "last.ckpt"), _weights(killed / "checkpoints" / "last.ckpt")
    assert safe_load(killed / "checkpoints" / "last.ckpt")["global_step"] == 12
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6, rtol=0), f"{key} differs after resume"


def test_epoch_sampler_order_depends_on_seed_and_epoch_only_and_skips():
    s = EpochSampler(10, shuffle=True, seed=3)
    s.set_epoch(1)
    first = list(s)
    assert sorted(first) == list(range(10))
    assert list(s) == first  # same epoch, same order
    s.set_epoch(2)
    assert list(s) != first
    s.set_epoch(1)
    s.skip(4)
    assert list(s) == first[4:]
    assert list(s) == first  # the skip is one-shot
    assert list(EpochSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


def test_crafted_pickle_checkpoint_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": Payload()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.ckpt: refused.*weights_only"):
        safe_load(path)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.ckpt"):
        ClassifierModule.load_frozen(str(path))
    from experiments.cli import main

    with pytest.raises(UnsafeCheckpointError, match=r"evil\.ckpt: refused"):  # resuming from it: refused before fit
        main(["fit", *_tiny_config(tmp_path), "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", str(path)])
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint" * 4)
    with pytest.raises(CheckpointError, match=r"junk\.ckpt: not a readable torch file"):
        safe_load(junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        safe_load(tmp_path / "missing.ckpt")


def test_nan_loss_stops_naming_stage_and_step_and_the_rescue_checkpoint_predicts(tmp_path):
    """The offending step's forward pass (an infinite input) already poisoned the batch-norm running
    statistics; the rescue checkpoint must hold the last finite state, and the model loaded from it predicts."""

    class Exploding(ClassifierModule):
        def training_step(self, batch, batch_idx):
            if self.global_step == 2:
                batch = {**batch, "waveform": batch["waveform"] * float("inf")}
            return super().training_step(batch, batch_idx)

    model = Exploding(backbone_kwargs={"channels": [4, 4, 4, 4]}, frontend={"n_mels": 16}, num_classes=3)
    dm = SyntheticDataModule(num_classes=3, num_train=64, num_val=8, num_test=8, batch_size=8, duration_s=1.0)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0, default_root_dir=tmp_path,
                        callbacks=[NaNGuard()])
    with pytest.raises(NonFiniteLossError, match=r"Exploding: training loss is nan at global step 2 \(epoch 0, batch index 2\).*last finite state"):
        trainer.fit(model, datamodule=dm)
    saved = tmp_path / "nonfinite-step2.ckpt"
    state = safe_load(saved)["state_dict"]
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    assert bad == []
    assert any(k.endswith("running_var") for k in state)
    rescued = ClassifierModule.load_frozen(str(saved))
    logits = rescued(torch.randn(4, 16000) * 0.1)
    assert logits.shape == (4, 3) and torch.isfinite(logits).all()


def test_a_diverging_finite_loss_stops_the_run_with_a_message(tmp_path):
    class Diverging(ClassifierModule):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            # finite, so only a divergence check sees it; from step 1, as lr 1e3 does it (inside the first steps)
            return loss * 1e6 if self.global_step >= 1 else loss

    model = Diverging(backbone_kwargs={"channels": [4, 4, 4, 4]}, frontend={"n_mels": 16}, num_classes=3)
    dm = SyntheticDataModule(num_classes=3, num_train=96, num_val=8, num_test=8, batch_size=8, duration_s=1.0)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0, default_root_dir=tmp_path,
                        callbacks=[NaNGuard()])
    with pytest.raises(DivergenceError, match=r"Diverging: training diverges: .* at global step 3 .*for 3 steps in a row"):
        trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 3  # stopped at once, not after the epoch


def test_silent_and_extreme_gain_batches_give_finite_losses():
    model = ClassifierModule(backbone_kwargs={"channels": [4, 4, 4, 4]}, frontend={"n_mels": 16}, num_classes=3)
    model.train()
    target = torch.tensor([0, 1, 2, 0])
    for waveform in (torch.zeros(4, 16000), torch.randn(4, 16000) * 1e4, torch.full((4, 16000), 1e-30)):
        loss = model.loss(model(waveform), target)
        assert torch.isfinite(loss), waveform.abs().max()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_silent_and_extreme_gain_clips_give_finite_interpretations():
    """Post-hoc and by-design interpretations of silence, near-silence and huge gains: no NaN / inf anywhere."""
    from l2i.dictionary import DictionaryArtifact
    from l2i.frontend import FrontEndConfig
    from l2i.interpreter.posthoc import PostHocInterpreter
    from lightning_modules import ByDesignModule

    frontend = {"n_mels": 16, "n_fft": 256, "hop_length": 128}
    classifier = ClassifierModule(backbone_kwargs={"channels": [4, 4, 4, 4]}, frontend=frontend, num_classes=3).eval()
    W = torch.rand(129, 12)
    posthoc = PostHocInterpreter(classifier.frontend, classifier.backbone, W, num_classes=3, hidden=16, attention_dim=16)
    art = DictionaryArtifact(W=W, frontend=FrontEndConfig(**frontend).spectral_params(), meta={})
    bydesign = ByDesignModule(dictionary=art, backbone_kwargs={"channels": [4, 4, 4, 4]}, frontend=frontend,
                              num_classes=3, hidden=16, attention_dim=16).eval()
    clips = torch.stack([torch.zeros(16000), torch.full((16000,), 1e-30), torch.randn(16000) * 1e4])
    for interpreter in (posthoc, bydesign):
        interp = interpreter.interpret(clips, threshold=0.0)
        for name in ("relevance", "mask", "audio", "residual", "activations", "logits"):
            value = getattr(interp, name)
            assert torch.isfinite(value).all(), f"{type(interpreter).__name__}.{name} is not finite"


def _default_logger_config(tmp_path: Path, interval: int = 4) -> list[str]:
    """The tiny config with the logger the CLI uses by default (SafeWandbLogger, offline) under tmp_path."""
    config = yaml.safe_load(Path(_tiny_config(tmp_path)[1]).read_text())
    del config["trainer"]["logger"]
    config["trainer"]["max_epochs"] = 1
    for cb in config["trainer"]["callbacks"]:
        if "last_every_n_train_steps" in cb.get("init_args", {}):
            cb["init_args"]["last_every_n_train_steps"] = interval
    path = tmp_path / "tiny_default_logger.yaml"
    path.write_text(yaml.safe_dump(config))
    return ["--config", str(path), "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")]


def test_resume_last_with_the_default_wandb_logger_restores_and_keeps_the_checkpoint_hparams(tmp_path, caplog):
    """``l2i fit … --ckpt_path last`` as the README says, with the default (W&B) logger: the new run id must
    not hide the killed run's last.ckpt; the run continues (no retraining, no best-v1/last-v1), and a
    changed architecture on the command line is named in a warning (the checkpoint's wins)."""
    from experiments.cli import DEFAULT_LOGGER, main

    assert DEFAULT_LOGGER["class_path"].endswith("SafeWandbLogger")
    run = tmp_path / "run"
    args = _default_logger_config(tmp_path) + ["--trainer.default_root_dir", str(run)]
    main(["fit", *args])
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert safe_load(ckpts / "last.ckpt")["global_step"] == 6
    caplog.clear()
    with pytest.warns(UserWarning, match=r"checkpoint's hyper-parameters win.*channels: \[4, 4, 4, 4\] -> \[4, 8, 8, 8\]"):
        main(["fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last",
              "--model.init_args.backbone_kwargs", "{channels: [4, 4, 4, 4]}"])
    assert f"Restored all states from the checkpoint at {ckpts / 'last.ckpt'}" in caplog.text
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]  # refreshed in place
    last = safe_load(ckpts / "last.ckpt")
    assert last["global_step"] == 12 and last["epoch"] == 1
    assert last["state_dict"]["backbone.fc.weight"].shape[1] == 8  # trained on with the checkpoint's channels


def _run_checkpoint_fit(tmp_path: Path, interval: int, epochs: int = 2, lr: float = 3e-3, **ckpt_kwargs):
    from callbacks.checkpoint import RunCheckpoint

    model = ClassifierModule(backbone_kwargs={"channels": [4, 4, 4, 4]}, frontend={"n_mels": 16}, num_classes=3, lr=lr)
    dm = SyntheticDataModule(num_classes=3, num_train=48, num_val=8, num_test=8, batch_size=8, duration_s=1.0)
    ckpt = RunCheckpoint(monitor="val/accuracy", mode="max", filename="best", save_last=True,
                         last_every_n_train_steps=interval, **ckpt_kwargs)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[ckpt], num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    return trainer, ckpt


def test_best_ckpt_is_written_when_the_epoch_length_is_a_multiple_of_the_last_interval(tmp_path):
    _, ckpt = _run_checkpoint_fit(tmp_path, interval=3)  # 6 steps per epoch: the interval save hits every epoch end
    best = tmp_path / "checkpoints" / "best.ckpt"
    assert best.is_file() and ckpt.best_model_path == str(best)
    assert safe_load(best)["global_step"] in (6, 12)
    assert safe_load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 12


def test_last_ckpt_is_refreshed_at_every_epoch_end(tmp_path):
    # a learning rate too small to change the validation accuracy: epoch 2 is no improvement, so Lightning
    # alone would leave last.ckpt at the interval save of step 10
    _run_checkpoint_fit(tmp_path, interval=5, lr=1e-12)
    assert safe_load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 12


def test_resume_last_skips_a_truncated_newest_file_naming_it(tmp_path):
    from callbacks.checkpoint import RunCheckpoint, find_last_checkpoint

    _run_checkpoint_fit(tmp_path, interval=5, epochs=1)
    folder = tmp_path / "checkpoints"
    good = folder / "last.ckpt"
    partial = folder / "last-v1.ckpt"  # what a full disk or a kill during the write leaves
    partial.write_bytes(good.read_bytes()[:3000])
    os.utime(partial, ns=(good.stat().st_mtime_ns + 10**9,) * 2)
    with pytest.warns(RuntimeWarning, match=r"skipping last checkpoint .*last-v1\.ckpt: not a readable torch file"):
        assert find_last_checkpoint(folder) == str(good)
    # what Lightning asks the callback for ``ckpt_path="last"`` (before setup, so only default_root_dir is known)
    trainer = types.SimpleNamespace(default_root_dir=str(tmp_path))
    with pytest.warns(RuntimeWarning, match="last-v1"):
        assert RunCheckpoint(save_last=True)._find_last_checkpoints(trainer) == {str(good)}


def test_an_unwritable_or_full_checkpoint_folder_fails_before_training(tmp_path, monkeypatch):
    import shutil as _shutil

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OSError, match=r"checkpoint folder .*a_file/run/checkpoints is not writable"):
        _run_checkpoint_fit(blocker / "run", interval=5, epochs=1)
    usage = _shutil.disk_usage(tmp_path)
    monkeypatch.setattr("l2i.storage.shutil.disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(OSError, match=r"checkpoint folder .*full/checkpoints has 0\.0 MB free, but about .* MB are needed"):
        _run_checkpoint_fit(tmp_path / "full", interval=5, epochs=1)
    assert not list((tmp_path / "full" / "checkpoints").glob("*.ckpt"))


def test_wandb_mode_online_is_honoured_and_offline_stays_the_default(monkeypatch, tmp_path):
    from callbacks.safe_logging import SafeWandbLogger
    from experiments.cli import DEFAULT_LOGGER

    kwargs = {**DEFAULT_LOGGER["init_args"], "save_dir": str(tmp_path)}
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert SafeWandbLogger(**kwargs)._offline is True
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert SafeWandbLogger(**kwargs)._offline is True
    monkeypatch.setenv("WANDB_MODE", "online")
    assert SafeWandbLogger(**kwargs)._offline is False
    assert SafeWandbLogger(**{**kwargs, "offline": True})._offline is True  # an explicit setting wins


def test_an_empty_training_split_or_batch_size_0_is_an_error_naming_it(tmp_path):
    from experiments.cli import main

    with pytest.raises(ValueError, match=r"data\.init_args\.batch_size must be a positive integer, got 0"):
        SyntheticDataModule(batch_size=0)
    with pytest.raises(ValueError, match=r"split 'train' has no clips \(data\.init_args\.num_train is 0\)"):
        main(["fit", *_tiny_config(tmp_path), "--trainer.default_root_dir", str(tmp_path / "run"),
              "--data.init_args.num_train", "0"])


def test_every_shipped_config_that_checkpoints_writes_under_its_default_root_dir():
    """Lightning's ModelCheckpoint with a logger writes to ./<save_dir>/<project>/<run id>/checkpoints, not
    under trainer.default_root_dir; every shipped config uses RunCheckpoint instead."""
    found = 0
    for path in sorted((ROOT / "experiments").rglob("*.yaml")):
        config = read_config(path)  # the callback lists a recipe names read in
        if not isinstance(config, dict):
            continue  # a shared list of callbacks (experiments/callbacks/), counted where a recipe names it
        for cb in (config.get("trainer") or {}).get("callbacks") or []:
            if "Checkpoint" in cb.get("class_path", ""):
                found += 1
                assert cb["class_path"] == "callbacks.checkpoint.RunCheckpoint", path
    assert found >= 15
