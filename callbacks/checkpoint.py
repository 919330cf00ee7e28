"""Checkpoints in a fixed place per run: ``best.ckpt`` by a metric, ``last.ckpt`` every N steps and at each
epoch end, and ``--ckpt_path last`` that finds the killed run's newest readable ``last*.ckpt``.

Lightning's default checkpoint folder depends on the logger's run id (a new one per launch with W&B), so a
restarted run would not find the killed run's ``last.ckpt``; and one ``ModelCheckpoint`` cannot both keep
the best model by a validation metric and write ``last.ckpt`` every N steps (two callbacks would write
``last.ckpt`` and ``last-v1.ckpt``). :class:`RunCheckpoint` is Lightning's ``ModelCheckpoint`` with both.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from l2i.storage import check_writable

__all__ = ["RunCheckpoint", "find_last_checkpoint"]

_LAST = re.compile(r"^last(-v?\d+)?\.ckpt$")


def find_last_checkpoint(dirpath: str | os.PathLike) -> str | None:
    """The newest ``last*.ckpt`` in ``dirpath`` that loads (safe loader), or ``None``.

    A newer file that does not load (truncated by a kill or a full disk, or refused) is skipped with a
    warning naming it, so the good ``last.ckpt`` beside it is used."""
    from l2i.checkpoints import CheckpointError, safe_load

    folder = Path(dirpath)
    if not folder.is_dir():
        return None
    candidates = sorted((p for p in folder.iterdir() if _LAST.match(p.name) and p.is_file()),
                        key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for path in candidates:
        try:
            safe_load(path, what="last checkpoint")
        except CheckpointError as exc:
            warnings.warn(f"skipping {exc} — resuming from the next newest last*.ckpt", RuntimeWarning, stacklevel=2)
            continue
        return str(path)
    return None


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` (same arguments) plus:

    * ``dirpath`` defaults to ``<trainer.default_root_dir>/checkpoints`` (stable across restarts and loggers,
      so ``--ckpt_path last`` finds the killed run's file, with W&B's new run id too);
    * ``--ckpt_path last`` resumes from the newest ``last*.ckpt`` there that loads
      (:func:`find_last_checkpoint`);
    * ``last_every_n_train_steps``: also refresh ``last.ckpt`` every N optimiser steps (``save_last`` must be
      on); these saves never stop the epoch-end ones: ``best.ckpt`` follows ``monitor`` at every epoch end and
      ``last.ckpt`` is refreshed at every epoch end, whatever N;
    * the checkpoint folder is checked at setup: not writable, or with less free space than two checkpoints
      need, fails before any training with the path named.
    """

    def __init__(self, *args: Any, last_every_n_train_steps: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if last_every_n_train_steps is not None and last_every_n_train_steps < 1:
            raise ValueError(f"last_every_n_train_steps must be >= 1, got {last_every_n_train_steps}")
        if last_every_n_train_steps and not self.save_last:
            raise ValueError("last_every_n_train_steps needs save_last: true")
        self.last_every_n_train_steps = last_every_n_train_steps
        self._interval_step_saved: int | None = None

    def run_dirpath(self, trainer: L.Trainer) -> str:
        """The checkpoint folder: ``dirpath`` or ``<trainer.default_root_dir>/checkpoints``."""
        return self.dirpath if self.dirpath is not None else os.path.join(trainer.default_root_dir, "checkpoints")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.dirpath = self.run_dirpath(trainer)
        super().setup(trainer, pl_module, stage)
        if stage == "fit" and trainer.is_global_zero:
            check_writable(self.dirpath, _checkpoint_bytes(pl_module) * 2, what="checkpoint folder",
                           hint="choose another trainer.default_root_dir")

    def _find_last_checkpoints(self, trainer: L.Trainer) -> set[str]:
        # Lightning resolves ``ckpt_path="last"`` before ``setup``: look where this callback writes, not in
        # the logger's (new) run folder
        found = find_last_checkpoint(self.run_dirpath(trainer))
        return {os.path.normpath(found)} if found else set()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        n = self.last_every_n_train_steps
        step = trainer.global_step
        if n and step % n == 0 and self._interval_step_saved != step and not self._should_skip_saving_checkpoint(trainer):
            # the interval save must not count as "saved at this step" for Lightning, or the epoch-end save of
            # best.ckpt (and last.ckpt) at the same step would be skipped
            claimed = self._last_global_step_saved
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            self._last_global_step_saved = claimed
            self._interval_step_saved = step

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _refresh_last(self, trainer: L.Trainer) -> None:
        """``last.ckpt`` at this step unless it was just written (Lightning writes it only with a top-k save; after
        Lightning's own save of this step it sets ``_last_global_step_saved``, so there is no second write)."""
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def _checkpoint_bytes(pl_module: L.LightningModule) -> int:
    """Rough size of one checkpoint: weights and buffers, plus two optimiser moments per parameter (Adam)."""
    weights = sum(t.numel() * t.element_size() for t in pl_module.state_dict().values())
    params = sum(p.numel() * p.element_size() for p in pl_module.parameters() if p.requires_grad)
    return int(weights + 2 * params + (1 << 20))
