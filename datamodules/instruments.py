"""Real instrument recordings with known stems (see :mod:`l2i.instruments`), rendered once and cached on disk."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.sampling import EpochSampler, SplitLoaders
from l2i.instruments import InstrumentConfig, config_digest, default_cache_dir, generate_clip, soundfont_path

__all__ = ["InstrumentDataset", "InstrumentDataModule", "render_split"]


def render_split(config: InstrumentConfig, seed: int, split: str, size: int, cache_dir: str | Path | None = None,
                 progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The stems ``(size, max_labels, N)`` float16 and their labels ``(size, max_labels)`` int64 of a split.

    Read from ``cache_dir/instruments/<digest>-<split>-<n>.{stems,labels}.npy`` with ``n >= size`` when there
    (memory-mapped, the first ``size`` clips: clip i does not depend on n),
    else rendered clip by clip (:func:`l2i.instruments.generate_clip`) and written there (temporary file, then
    ``os.replace``: a reader never sees half a file). ``<digest>`` keys the configuration, the seed, the
    SoundFont and the renderer's version. ``cache_dir=None``: :func:`l2i.instruments.default_cache_dir`.
    """
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = folder / "instruments"
    stem = f"{config_digest(config, seed)}-{split}-{int(size)}"
    stems_path, labels_path = folder / f"{stem}.stems.npy", folder / f"{stem}.labels.npy"
    # clip i depends only on (seed, split, i): any cached render of at least `size` clips holds them
    candidates = [stems_path] + sorted(folder.glob(f"{config_digest(config, seed)}-{split}-*.stems.npy")) if folder.is_dir() else []
    for path in candidates:
        lpath = path.with_name(path.name.replace(".stems.npy", ".labels.npy"))
        if not (path.is_file() and lpath.is_file()):
            continue
        stems, labels = np.load(path, mmap_mode="r"), np.load(lpath)
        if stems.shape[0] >= int(size) and stems.shape[1:] == (config.max_labels, config.num_samples) \
                and labels.shape == stems.shape[:2]:
            return stems[: int(size)], labels[: int(size)]
    folder.mkdir(parents=True, exist_ok=True)
    soundfont = soundfont_path().read_bytes()
    stems = np.zeros((int(size), config.max_labels, config.num_samples), dtype=np.float16)
    labels = np.full((int(size), config.max_labels), -1, dtype=np.int64)
    indices = range(int(size))
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc=f"rendering instruments/{split}")
    start = time.perf_counter()
    for i in indices:
        clip = generate_clip(config, seed, split, i, soundfont)
        stems[i] = clip.sources
        labels[i] = clip.source_labels
    for path, array in ((stems_path, stems), (labels_path, labels)):
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npy")
        np.save(tmp, array)
        os.replace(tmp, path)
    (folder / f"{stem}.json").write_text(json.dumps({
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()},
        "seed": int(seed), "split": split, "size": int(size), "render_seconds": round(time.perf_counter() - start, 2),
    }, indent=1))
    return np.load(stems_path, mmap_mode="r"), labels


class InstrumentDataset(Dataset):
    """Items: ``waveform (N,)`` (the sum of the stems), ``target`` float32 multi-hot ``(C,)``, ``sources (S, N)``
    (stems, zero rows for empty slots), ``source_labels (S,)`` (-1 = empty), ``sample_rate``, ``id``."""

    def __init__(self, stems: np.ndarray, labels: np.ndarray, num_classes: int, sample_rate: int, split: str, seed: int):
        self.stems, self.labels = stems, labels
        self.num_classes, self.sample_rate, self.split, self.seed = int(num_classes), int(sample_rate), split, int(seed)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def num_sources(self, index: int) -> int:
        """Instruments in clip ``index`` (no audio read)."""
        return int((self.labels[index] >= 0).sum())

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"instruments {self.split} split has {len(self)} items, asked for {index}")
        sources = torch.from_numpy(np.asarray(self.stems[index], dtype=np.float32))
        source_labels = torch.from_numpy(np.array(self.labels[index], dtype=np.int64))
        target = torch.zeros(self.num_classes, dtype=torch.float32)
        target[source_labels[source_labels >= 0]] = 1.0
        return {
            "waveform": sources.sum(0),
            "target": target,
            "sources": sources,
            "source_labels": source_labels,
            "sample_rate": self.sample_rate,
            "id": f"instruments-{self.seed}-{self.split}-{index:06d}",
        }


class InstrumentDataModule(SplitLoaders, L.LightningDataModule):
    """Sampled acoustic instruments (multilabel, 1-3 per clip, stems known); see :mod:`l2i.instruments`.

    Batches: ``waveform (B, N)``, ``target (B, C)`` multi-hot, ``sources (B, S, N)``, ``source_labels (B, S)``,
    ``sample_rate (B,)``, ``id`` list of str. Clip ``i`` of a split depends only on ``(seed, split, i)``;
    each split is rendered once and cached under ``cache_dir`` (default ``$L2I_CACHE_DIR`` or
    ``~/.cache/l2i``), so a second run reads it back.
    """

    name = "instruments"

    def __init__(
        self,
        num_classes: int = 8,
        min_labels: int = 1,
        max_labels: int = 3,
        num_train: int = 600,
        num_val: int = 120,
        num_test: int = 120,
        sample_rate: int = 16000,
        duration_s: float = 2.0,
        gain_db: tuple[float, float] = (-9.0, 0.0),
        instruments: list[str] | None = None,
        seed: int = 0,
        batch_size: int = 32,
        cache_dir: str | None = None,
        progress: bool = False,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.config = InstrumentConfig(sample_rate=sample_rate, duration_s=duration_s, num_classes=num_classes,
                                       min_labels=min_labels, max_labels=max_labels, gain_db=tuple(gain_db),
                                       instruments=tuple(instruments) if instruments else None)
        self.sizes = {"train": int(num_train), "val": int(num_val), "test": int(num_test)}
        for split, size in self.sizes.items():
            if size < 0:
                raise ValueError(f"num_{split} must be >= 0, got {size}")
        self.seed, self.batch_size, self.cache_dir, self.progress = int(seed), int(batch_size), cache_dir, bool(progress)
        self.loader_kwargs = dict(num_workers=num_workers, pin_memory=pin_memory,
                                  persistent_workers=persistent_workers and num_workers > 0)
        self._datasets: dict[tuple[str, int], InstrumentDataset] = {}

    @property
    def task(self) -> str:
        return "multilabel"

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.config.class_names

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def dataset(self, split: str, size: int | None = None) -> InstrumentDataset:
        """The dataset of a split (``train``/``val``/``test``, or ``nmf``), rendered or read from the cache."""
        if size is None:
            size = self.sizes.get(split, self.sizes["train"])
        key = (split, int(size))
        if key not in self._datasets:
            stems, labels = render_split(self.config, self.seed, split, int(size), self.cache_dir, self.progress)
            self._datasets[key] = InstrumentDataset(stems, labels, self.num_classes, self.sample_rate, split, self.seed)
        return self._datasets[key]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.dataset(split)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=EpochSampler(len(dataset), shuffle, self.seed),
                          generator=torch.Generator().manual_seed(self.seed), **self.loader_kwargs)
