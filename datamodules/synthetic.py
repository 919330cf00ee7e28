"""The embedded default data set: synthetic mixtures generated on the fly, with known sources."""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.sampling import EpochSampler, SplitLoaders, resolve_pin_memory
from l2i.synthetic import CLASS_NAMES, SyntheticConfig, generate_clip

__all__ = ["SyntheticDataset", "SyntheticDataModule"]


class SyntheticDataset(Dataset):
    """Items are dicts: ``waveform (samples,)``, ``target`` (int64 class index, or float32 multi-hot
    ``(C,)``), ``sources (S, samples)``, ``source_labels (S,)`` (-1 = empty slot), ``background
    (samples,)``, ``sample_rate``, ``id``. Item ``i`` depends only on ``(seed, split, i)``."""

    def __init__(self, config: SyntheticConfig, split: str, size: int, seed: int):
        self.config, self.split, self.size, self.seed = config, split, int(size), int(seed)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(f"synthetic {self.split} split has {self.size} items, asked for {index}")
        clip = generate_clip(self.config, self.seed, self.split, index)
        if self.config.mode == "multiclass":
            target = torch.tensor(clip.labels[0], dtype=torch.int64)
        else:
            target = torch.zeros(self.config.num_classes, dtype=torch.float32)
            target[clip.labels] = 1.0
        return {
            "waveform": torch.from_numpy(clip.mixture),
            "target": target,
            "sources": torch.from_numpy(clip.sources),
            "source_labels": torch.from_numpy(clip.source_labels),
            "background": torch.from_numpy(clip.background),
            "sample_rate": self.config.sample_rate,
            "id": f"synthetic-{self.seed}-{self.split}-{index:06d}",
        }


class SyntheticDataModule(SplitLoaders, L.LightningDataModule):
    """Synthetic sound events (8 classes) generated from a seed; see :mod:`l2i.synthetic`.

    Batches: ``waveform (B, samples)``, ``target`` (``(B,)`` int64 or ``(B, C)`` multi-hot),
    ``sources (B, S, samples)``, ``source_labels (B, S)``, ``background (B, samples)``,
    ``sample_rate (B,)``, ``id`` list of str.
    """

    name = "synthetic"

    def __init__(
        self,
        mode: Literal["multiclass", "multilabel"] = "multiclass",
        num_classes: int = 8,
        num_train: int = 2000,
        num_val: int = 300,
        num_test: int = 500,
        sample_rate: int = 16000,
        duration_s: float = 2.0,
        distractor_prob: float = 0.5,
        max_events: int = 2,
        max_labels: int = 3,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool | Literal["auto"] = "auto",
        persistent_workers: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.config = SyntheticConfig(
            mode=mode,
            sample_rate=sample_rate,
            duration_s=duration_s,
            num_classes=num_classes,
            max_events=max_events,
            max_labels=max_labels,
            distractor_prob=distractor_prob,
        )
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        for split, size in self.sizes.items():
            if size < 0:
                raise ValueError(f"num_{split} must be >= 0, got {size}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"data.init_args.batch_size must be a positive integer, got {batch_size!r}")
        self.seed = seed
        self.batch_size = batch_size
        self.loader_kwargs = dict(
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers and num_workers > 0,
        )

    # the contract every DataModule of the project exposes
    @property
    def task(self) -> str:
        return self.config.mode

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(CLASS_NAMES[: self.config.num_classes])

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def dataset(self, split: str, size: int | None = None) -> SyntheticDataset:
        """The dataset of a split (``train``/``val``/``test``, or ``nmf`` for dictionary learning)."""
        if size is None:
            size = self.sizes.get(split, self.sizes["train"])
        return SyntheticDataset(self.config, split, size, self.seed)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        # the order depends on (seed, epoch) only and the loader has its own generator, so a resumed run sees
        # the same batches as an uninterrupted one (callbacks.resume.ExactResume)
        dataset = self.dataset(split)
        if split == "train" and len(dataset) == 0:
            raise ValueError("synthetic: split 'train' has no clips (data.init_args.num_train is 0); nothing to train on")
        return DataLoader(dataset, batch_size=self.batch_size, sampler=EpochSampler(len(dataset), shuffle, self.seed),
                          generator=torch.Generator().manual_seed(self.seed),
                          **{**self.loader_kwargs, "pin_memory": resolve_pin_memory(self.loader_kwargs["pin_memory"], self.trainer)})
