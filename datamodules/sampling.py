"""A training sampler whose order depends only on ``(seed, epoch)`` and that can resume mid-epoch.

Lightning calls ``set_epoch`` on the train sampler at every epoch start; :class:`callbacks.resume.ExactResume`
calls :meth:`EpochSampler.skip` after restoring a checkpoint saved mid-epoch, so the resumed run sees the
same clips in the same order as an uninterrupted one. Under DDP Lightning wraps it in a distributed sampler
(which shards and reshuffles per epoch); exact mid-epoch resume is a single-process guarantee.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

__all__ = ["EpochSampler", "SplitLoaders", "resolve_pin_memory"]


class EpochSampler(Sampler[int]):
    """Indices ``0 … num_items-1``, shuffled by a generator seeded with ``(seed, epoch)`` when ``shuffle``.

    Args:
        num_items: dataset length.
        shuffle: random order per epoch (else the natural order).
        seed: base seed; epoch ``e`` uses ``seed * 1_000_003 + e``.
    """

    def __init__(self, num_items: int, shuffle: bool = True, seed: int = 0):
        if num_items < 0:
            raise ValueError(f"num_items must be >= 0, got {num_items}")
        self.num_items, self.shuffle, self.seed = int(num_items), bool(shuffle), int(seed)
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skip(self, num_indices: int) -> None:
        """Start the next iteration ``num_indices`` into the epoch's order (one-shot: later epochs start at 0)."""
        if not 0 <= num_indices <= self.num_items:
            raise ValueError(f"cannot skip {num_indices} of {self.num_items} items")
        self._skip = int(num_indices)

    def order(self) -> torch.Tensor:
        """The whole epoch's order, ``(num_items,)`` int64."""
        if not self.shuffle:
            return torch.arange(self.num_items)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.num_items, generator=g)

    def __iter__(self) -> Iterator[int]:
        start, self._skip = self._skip, 0
        yield from self.order()[start:].tolist()

    def __len__(self) -> int:
        return self.num_items


def resolve_pin_memory(pin_memory, trainer=None) -> bool:
    """The DataLoader's ``pin_memory`` for a DataModule setting ``True`` / ``False`` / ``"auto"``.

    ``"auto"``: pin when the batches go to a CUDA device - the trainer's root device when a trainer is
    attached, else whether CUDA is available. ``True`` on a machine without any accelerator is ``False``
    (PyTorch could not pin there and would warn on every loader)."""
    import torch

    if pin_memory == "auto":
        device = getattr(trainer, "strategy", None) and getattr(trainer.strategy, "root_device", None)
        if device is not None:
            return device.type == "cuda"
        return torch.cuda.is_available()
    if isinstance(pin_memory, str):
        raise ValueError(f"pin_memory must be true, false or 'auto', got {pin_memory!r}")
    pin = bool(pin_memory)
    if pin:
        acc = getattr(torch, "accelerator", None)
        available = acc.is_available() if acc is not None and hasattr(acc, "is_available") else torch.cuda.is_available()
        pin = bool(available)
    return pin


class SplitLoaders:
    """The four Lightning loader hooks of a DataModule from one ``_loader(split, shuffle)``: train is shuffled
    (by an :class:`EpochSampler`), val / test / predict are not; predict reads the test split."""

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
