"""Checkpoints in a fixed place per run, so ``--ckpt_path last`` finds them after a kill.

Lightning's default checkpoint folder depends on the logger's run id (a new one per launch with W&B), so a
restarted run would not find the killed run's ``last.ckpt``. :class:`RunCheckpoint` is Lightning's
``ModelCheckpoint`` whose folder defaults to ``<trainer.default_root_dir>/checkpoints``.
"""

from __future__ import annotations

import os

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

__all__ = ["RunCheckpoint"]


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` with ``dirpath`` defaulting to ``<default_root_dir>/checkpoints`` (same arguments)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
        super().setup(trainer, pl_module, stage)
