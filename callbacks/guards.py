"""Numerical guard: a non-finite loss stops the run with a message naming the stage and step, after saving
the weights as they were before that step."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

__all__ = ["NonFiniteLossError", "NaNGuard"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class NaNGuard(L.Callback):
    """Checks every training loss before the backward pass.

    On a NaN / inf loss it saves a checkpoint (``nonfinite-step<N>.ckpt`` in ``dirpath`` or the trainer's
    ``default_root_dir``; the weights are those before the offending step) and raises
    :class:`NonFiniteLossError` naming the stage (the LightningModule's class), epoch, batch and global step.
    """

    def __init__(self, dirpath: str | None = None):
        self.dirpath = dirpath

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if bool(torch.isfinite(loss.detach()).all()):
            return
        stage = getattr(pl_module, "stage_name", type(pl_module).__name__)
        step, epoch = trainer.global_step, trainer.current_epoch
        batch = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        path = Path(self.dirpath or trainer.default_root_dir) / f"nonfinite-step{step}.ckpt"
        path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(path)
        raise NonFiniteLossError(
            f"{stage}: training loss is {loss.detach().float().item()} at global step {step} (epoch {epoch}, batch index {batch}); "
            f"the weights before this step are saved in {path}. Look for silent or extreme inputs, a too high "
            "learning rate, or mixed precision overflow."
        )
