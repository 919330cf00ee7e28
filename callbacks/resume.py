"""Exact resume after a kill: random-number states and the position inside the epoch travel in checkpoints.

Lightning restores weights, optimiser, schedulers and loop counters from ``last.ckpt``; what it cannot know
is which clips of the current epoch were already seen (unless the loader is stateful) and the state of the
random generators (dropout, random crops). This callback stores both in every checkpoint it writes and
puts them back after a restore, so ``l2i fit … --ckpt_path last`` continues a killed run exactly where it
stood: same clips in the same order, same dropout masks, same final weights as an uninterrupted run
(single process, ``deterministic: true``; the train sampler must be an :class:`datamodules.sampling.EpochSampler`).
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn

__all__ = ["ExactResume", "rng_state", "set_rng_state"]

_KEY = "l2i_exact_resume"


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (CPU and CUDA) generator states as plain tensors / lists (``weights_only``-safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _train_sampler(trainer: L.Trainer):
    loader = trainer.train_dataloader
    loaders = loader if isinstance(loader, (list, tuple)) else [loader]
    for dl in loaders:
        for candidate in (getattr(dl, "sampler", None), getattr(getattr(dl, "batch_sampler", None), "sampler", None)):
            if candidate is not None and hasattr(candidate, "skip"):
                return candidate, dl.batch_size or getattr(dl.batch_sampler, "batch_size", 1)
    return None, None


class ExactResume(L.Callback):
    """Save RNG states and the in-epoch position with every checkpoint; restore them on resume."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        checkpoint[_KEY] = {"rng": rng_state(), "batches_done": int(progress.processed),
                            "epoch": int(trainer.current_epoch),
                            "epoch_complete": bool(progress.processed >= trainer.num_training_batches)}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._pending = checkpoint.get(_KEY)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # runs after the restore and before the epoch's loader is first iterated (its sampler is lazy)
        state = self._pending
        if not state or state["epoch_complete"]:
            return
        sampler, batch_size = _train_sampler(trainer)
        if sampler is None:
            rank_zero_warn("ExactResume: the train sampler cannot skip (not an EpochSampler); the resumed epoch "
                           "starts again from its first batch")
            return
        sampler.skip(min(state["batches_done"] * batch_size, len(sampler)))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        # first batch after a restore: the generators as they were at the save. Loaders must not draw from the
        # global generators between a save and the next batch: give them their own (DataLoader(generator=…)).
        if self._pending is not None:
            set_rng_state(self._pending["rng"])
            self._pending = None
