"""Numerical guards: a non-finite loss stops the run with a message naming the stage and step, after saving
the last finite state (the weights, optimiser and batch-norm statistics as they were before that step); a
finite loss that has grown by orders of magnitude (divergence) stops the run too."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import lightning as L
import torch

__all__ = ["NonFiniteLossError", "DivergenceError", "NaNGuard"]


#: a weight above this magnitude means an update exploded (float32 products of two such values overflow)
EXTREME_WEIGHT = 1e15


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class DivergenceError(RuntimeError):
    """The training loss grew by orders of magnitude over the first steps' loss."""


def _finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors if torch.is_tensor(t) and t.is_floating_point())


class NaNGuard(L.Callback):
    """Checks every training loss before the backward pass.

    On a NaN / inf loss it saves a rescue checkpoint (``nonfinite-step<N>.ckpt`` in ``dirpath`` or the
    trainer's ``default_root_dir``) and raises :class:`NonFiniteLossError` naming the stage (the
    LightningModule's class), epoch, batch and global step. The rescue holds the last finite state: the
    parameters and optimiser before the offending step, and the module's buffers (batch-norm running
    statistics, which the offending forward pass already updated) as they were at the start of that step.

    Divergence: the reference is the smallest of the first ``divergence_patience`` losses (an untrained
    model's scale); a run whose loss stays above ``divergence_factor`` × that reference for
    ``divergence_patience`` consecutive steps stops with :class:`DivergenceError` (``divergence_factor: null``
    turns this off).
    """

    def __init__(self, dirpath: str | None = None, divergence_factor: float | None = 1e4, divergence_patience: int = 3):
        if divergence_factor is not None and divergence_factor <= 1:
            raise ValueError(f"divergence_factor must be > 1 (or null to disable), got {divergence_factor}")
        if divergence_patience < 1:
            raise ValueError(f"divergence_patience must be >= 1, got {divergence_patience}")
        self.dirpath = dirpath
        self.divergence_factor = divergence_factor
        self.divergence_patience = int(divergence_patience)
        self._buffers: dict[str, torch.Tensor] = {}
        self._first: list[float] = []
        self._above = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        # buffers are small (normalisation statistics, filterbanks): a copy per step costs next to nothing
        with torch.no_grad():
            bufs = {name: b for name, b in pl_module.named_buffers() if b.is_floating_point()}
            if _finite(bufs.values()):
                for name, b in bufs.items():
                    kept = self._buffers.get(name)
                    if kept is None or kept.shape != b.shape or kept.device != b.device:
                        self._buffers[name] = b.detach().clone()
                    else:
                        kept.copy_(b)

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        value = float(loss.detach().float().sum()) if loss.numel() > 1 else float(loss.detach().float())
        if not bool(torch.isfinite(loss.detach()).all()):
            self._stop_nonfinite(trainer, pl_module, value)
        self._check_divergence(trainer, pl_module, value)

    def _where(self, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[str, int, int, int]:
        stage = getattr(pl_module, "stage_name", type(pl_module).__name__)
        batch = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return stage, trainer.global_step, trainer.current_epoch, batch

    def _stop_nonfinite(self, trainer: L.Trainer, pl_module: L.LightningModule, value: float) -> None:
        stage, step, epoch, batch = self._where(trainer, pl_module)
        path = Path(self.dirpath or trainer.default_root_dir) / f"nonfinite-step{step}.ckpt"
        with torch.no_grad():
            current = dict(pl_module.named_buffers())
            for name, kept in self._buffers.items():
                if name in current and current[name].shape == kept.shape:
                    current[name].copy_(kept)  # the run stops here: the live buffers need not be kept
        if _finite(pl_module.state_dict().values()):
            path.parent.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(path)
            saved = f"the last finite state (before this step) is saved in {path}"
            largest = max((float(p.detach().abs().max()) for p in pl_module.parameters() if p.numel()), default=0.0)
            if largest > EXTREME_WEIGHT:
                saved += (f", but its weights are already extreme (max |w| = {largest:.3g}: an earlier update exploded), "
                          "so it will not predict well; restart from an earlier checkpoint with a lower learning rate")
        else:
            saved = ("the weights were already non-finite before this step, so no rescue checkpoint was written; "
                     "resume from an earlier checkpoint (--ckpt_path last)")
        raise NonFiniteLossError(
            f"{stage}: training loss is {value} at global step {step} (epoch {epoch}, batch index {batch}); "
            f"{saved}. Look for silent or extreme inputs, a too high learning rate, or mixed precision overflow."
        )

    def _check_divergence(self, trainer: L.Trainer, pl_module: L.LightningModule, value: float) -> None:
        if self.divergence_factor is None:
            return
        if len(self._first) < self.divergence_patience:
            self._first.append(abs(value))
            if len(self._first) == 1:
                return
        reference = min(self._first)  # the smallest of the first losses: an explosion within them cannot hide
        if reference > 0 and abs(value) > self.divergence_factor * reference:
            self._above += 1
        else:
            self._above = 0
        if self._above >= self.divergence_patience:
            stage, step, epoch, batch = self._where(trainer, pl_module)
            raise DivergenceError(
                f"{stage}: training diverges: the loss is {value:.3g} at global step {step} (epoch {epoch}, batch index "
                f"{batch}), above {self.divergence_factor:g} x the first steps' loss ({reference:.3g}) for "
                f"{self._above} steps in a row. Lower the learning rate (model.init_args.lr) and start again; "
                "NaNGuard's divergence_factor: null turns this check off."
            )

    def state_dict(self) -> dict[str, Any]:
        return {"first_losses": list(self._first)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._first = [float(v) for v in state_dict.get("first_losses", [])]
