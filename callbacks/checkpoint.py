"""Checkpoints in a fixed place per run, ``last.ckpt`` every N steps and at each epoch end.

Lightning's default checkpoint folder depends on the logger's run id (a new one per launch with W&B), so a
restarted run would not find the killed run's ``last.ckpt``; and one ``ModelCheckpoint`` cannot both keep
the best model by a validation metric and write ``last.ckpt`` every N steps (two callbacks would write
``last.ckpt`` and ``last-v1.ckpt``). :class:`RunCheckpoint` is Lightning's ``ModelCheckpoint`` with both.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

__all__ = ["RunCheckpoint"]


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` (same arguments) plus:

    * ``dirpath`` defaults to ``<trainer.default_root_dir>/checkpoints`` (stable across restarts, so
      ``--ckpt_path last`` finds the killed run's file);
    * ``last_every_n_train_steps``: also refresh ``last.ckpt`` every N optimiser steps (``save_last`` must be
      on), on top of the epoch-end saves; the best checkpoints still follow ``monitor``;
    * ``last.ckpt`` is refreshed at every epoch end, also when the monitored value did not improve (Lightning
      2.6 writes it only in a step where a best checkpoint was written, which leaves ``last.ckpt`` - the file
      ``--ckpt_path last`` resumes from - at the last improving epoch).
    """

    def __init__(self, *args: Any, last_every_n_train_steps: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if last_every_n_train_steps is not None and last_every_n_train_steps < 1:
            raise ValueError(f"last_every_n_train_steps must be >= 1, got {last_every_n_train_steps}")
        if last_every_n_train_steps and not self.save_last:
            raise ValueError("last_every_n_train_steps needs save_last: true")
        self.last_every_n_train_steps = last_every_n_train_steps

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
        super().setup(trainer, pl_module, stage)

    def _refresh_last(self, trainer: L.Trainer) -> None:
        # after Lightning's own save of this step (if any): it sets _last_global_step_saved, so no second write
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        n = self.last_every_n_train_steps
        if n and trainer.global_step % n == 0 and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
