"""The oracle ideal ratio mask as an interpreter: the ceiling any mask on the mixture's STFT can reach.

:class:`IdealRatioMask` explains class c with ``|S_c| / (Σ_s |S_s| + |R|)`` on the mixture's STFT magnitude,
inverted with the mixture's phase (:func:`l2i.evaluation.ground_truth.ideal_ratio_mask`, the same definition
the ground-truth report's ``oracle`` estimate uses). It needs the clips' true sources (keyword arguments, or
:meth:`~l2i.baselines.common.SourcesObserver.observing` a loader), so it runs only on data with known sources.
Its ``logits`` are the explained classifier's (fidelity 1 by construction); ``relevance`` / ``components`` are
empty, as for every component-free baseline (:mod:`l2i.baselines.common`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from l2i.baselines.common import ClassifierBaseline, SourcesObserver, mask_interpretation
from l2i.evaluation.ground_truth import ideal_ratio_mask
from l2i.interpreter.interpretation import Interpretation, select_classes

__all__ = ["IdealRatioMask"]


class IdealRatioMask(SourcesObserver, ClassifierBaseline):
    """The ideal ratio mask of each explained class (see the module docstring).

    Args:
        frontend, backbone: the explained classifier's (its STFT carries the mask; its prediction picks the
            classes when ``target`` is None).
        task: multiclass | multilabel; num_classes: C (default: read from the backbone).
        class_threshold: multilabel decision threshold of "the classifier's prediction".
    """

    name = "ideal_ratio_mask"

    def __init__(self, frontend: nn.Module, backbone: nn.Module, task: str, num_classes: int | None = None,
                 class_threshold: float = 0.5):
        super().__init__()
        self._init_classifier(frontend, backbone, task, num_classes)
        self.class_threshold = class_threshold
        self.settings: dict = {}

    @torch.no_grad()
    def interpret(self, waveform: Tensor, target: Tensor | int | Sequence[int] | None = None, threshold: float = 0.2, *,
                  sample_rate: int | None = None, class_threshold: float | Tensor | None = None,
                  sources: Tensor | None = None, source_labels: Tensor | None = None,
                  source_targets: Tensor | None = None) -> Interpretation:
        """``waveform (B, N)`` -> :class:`Interpretation` whose mask is the ideal ratio mask of each class
        (a class without a source in the clip gets an all-zero mask: a silent interpretation)."""
        sources, source_labels, source_targets = self._sources_for(waveform, sources, source_labels, source_targets)
        self.eval()
        features = self.frontend(waveform, sample_rate)
        logits = self.backbone(features.logmel)
        thr = self.class_threshold if class_threshold is None else class_threshold
        classes = select_classes(logits, self.task, target, thr)
        device = features.magnitude.device
        x = features.waveform.float()
        src = sources.to(device).float()
        N = min(src.shape[-1], x.shape[-1])
        src = torch.nn.functional.pad(src[..., :N], (0, x.shape[-1] - N))
        mask = ideal_ratio_mask(self.frontend, x, src, source_labels.to(device), classes,
                                None if source_targets is None else source_targets.to(device))
        T = features.magnitude.shape[-1]
        mask = torch.nn.functional.pad(mask[..., :T], (0, max(0, T - mask.shape[-1])))
        return mask_interpretation(self.frontend, features, mask, classes, logits, self.num_classes, float(threshold))
