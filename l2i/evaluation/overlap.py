""""Overlap" mixtures (the paper's overlap experiment): clip A + λ · clip B of another class, from any labelled
data set of the project, with both parts kept as known sources for the ground-truth metrics.

:class:`OverlapMixtures` wraps a dataset whose items are dicts with ``waveform (N,)`` and ``target`` (an int
class index, or a ``(C,)`` multi-hot tensor) — every DataModule's ``dataset(split)`` / the datasets behind its
loaders. Item ``i``:

* A = ``dataset[i % len(dataset)]``; B = a clip drawn with ``numpy.random.default_rng([seed, i])`` among the clips
  of **another class** (multiclass: a different label; multilabel: no label in common), by rejection (at most
  ``max_tries`` draws, then the error names the clip);
* B is cropped / zero-padded to A's length; ``waveform = A + λ·B``;
* ``target`` = A's target (the interpretation for A's class should sound like A);
* ``sources (2, N) = [A, λ·B]``, ``source_labels (2,)`` = the clips' class indices (multilabel: the first active
  label), ``source_targets (2, C)`` (multilabel only) = their multi-hot labels;
* ``sample_rate``, ``id = "overlap-<idA>+<idB>"``, ``weight = λ``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["OverlapMixtures"]


def _as_tensor(x) -> torch.Tensor:
    return x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))


class OverlapMixtures(Dataset):
    """A + λ·B mixtures of clips of different classes (see the module docstring).

    Args:
        dataset: a map-style dataset of dict items (``waveform``, ``target``, optional ``id``, ``sample_rate``).
        weight: λ, the gain of the second clip (the paper mixes at equal level: 1.0).
        size: number of mixtures (default ``len(dataset)``).
        seed: seed of the choice of B.
        max_tries: draws before giving up on finding a clip of another class.
    """

    def __init__(self, dataset: Dataset, weight: float = 1.0, size: int | None = None, seed: int = 0, max_tries: int = 100):
        if len(dataset) < 2:
            raise ValueError(f"OverlapMixtures needs at least 2 clips, the dataset has {len(dataset)}")
        if not weight >= 0:
            raise ValueError(f"OverlapMixtures: weight λ must be >= 0, got {weight}")
        self.dataset, self.weight, self.seed, self.max_tries = dataset, float(weight), int(seed), int(max_tries)
        self.size = len(dataset) if size is None else int(size)

    def __len__(self) -> int:
        return self.size

    @staticmethod
    def _labels(target: torch.Tensor) -> set[int]:
        if target.dim() == 0:
            return {int(target)}
        return {int(i) for i in torch.nonzero(target > 0.5).flatten().tolist()}

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(f"OverlapMixtures has {self.size} items, asked for {index}")
        a = self.dataset[index % len(self.dataset)]
        for key in ("waveform", "target"):
            if key not in a:
                raise KeyError(f"OverlapMixtures: dataset items need {key!r}; item {index} has {sorted(a)}")
        ta = _as_tensor(a["target"])
        la = self._labels(ta)
        rng = np.random.default_rng([self.seed, int(index)])
        b = None
        for _ in range(self.max_tries):
            j = int(rng.integers(len(self.dataset)))
            if j == index % len(self.dataset):
                continue
            cand = self.dataset[j]
            if not (self._labels(_as_tensor(cand["target"])) & la):
                b = cand
                break
        if b is None:
            raise RuntimeError(f"OverlapMixtures: no clip of another class than {sorted(la)} found in {self.max_tries} draws (item {index})")
        xa = _as_tensor(a["waveform"]).float()
        xb = _as_tensor(b["waveform"]).float()
        if xa.dim() != 1 or xb.dim() != 1:
            raise ValueError(f"OverlapMixtures: waveforms must be mono (samples,), got {tuple(xa.shape)} and {tuple(xb.shape)}")
        if a.get("sample_rate") is not None and b.get("sample_rate") is not None and int(a["sample_rate"]) != int(b["sample_rate"]):
            raise ValueError(f"OverlapMixtures: clips at different rates ({a['sample_rate']} and {b['sample_rate']} Hz)")
        n = xa.shape[0]
        xb = xb[:n] if xb.shape[0] >= n else torch.nn.functional.pad(xb, (0, n - xb.shape[0]))
        part_b = self.weight * xb
        tb = _as_tensor(b["target"])
        item = {
            "waveform": xa + part_b,
            "target": ta,
            "sources": torch.stack([xa, part_b]),
            "source_labels": torch.tensor([min(la), min(self._labels(tb))], dtype=torch.int64),
            "sample_rate": a.get("sample_rate", b.get("sample_rate")),
            "id": f"overlap-{a.get('id', index)}+{b.get('id', j)}",
            "weight": self.weight,
        }
        if ta.dim() == 1:
            item["source_targets"] = torch.stack([ta.float(), tb.float()])
        return item
