"""Shared helpers of the evaluation suite: the classifier on waveforms / magnitudes, probabilities, the
per-slot gathers every metric uses. Pure torch; no Lightning.

A *classifier* here is anything callable as ``classifier(waveform (B, N)) -> logits (B, C)`` (e.g.
:class:`~lightning_modules.ClassifierModule`). When it also has ``frontend`` (an
:class:`~l2i.frontend.AudioFrontEnd`) and ``backbone`` (``logmel -> logits``), masked *spectrograms* can be
classified directly (``backbone(frontend.logmel_from_magnitude(m * |X|))``), as L-MAC evaluates its masks.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch import Tensor

__all__ = [
    "EPS",
    "probabilities",
    "classify_waveform",
    "classify_magnitude",
    "can_classify_magnitude",
    "gather_classes",
    "supports_components",
    "safe_mean",
    "safe_median",
]

#: floor of every denominator of the suite (never NaN)
EPS = 1e-8


def probabilities(logits: Tensor, task: str) -> Tensor:
    """``(…, C)`` logits -> probabilities: softmax over classes (multiclass) or sigmoid (multilabel)."""
    if task == "multiclass":
        return logits.float().softmax(-1)
    if task == "multilabel":
        return logits.float().sigmoid()
    raise ValueError(f"task must be multiclass|multilabel, got {task!r}")


@torch.no_grad()
def classify_waveform(classifier: Callable[[Tensor], Tensor], waveform: Tensor, chunk: int = 64) -> Tensor:
    """``waveform (…, N)`` -> logits ``(…, C)``; leading axes are flattened into batches of ``chunk``."""
    lead = waveform.shape[:-1]
    flat = waveform.reshape(-1, waveform.shape[-1])
    outs = [classifier(flat[i : i + chunk]) for i in range(0, flat.shape[0], chunk)]
    logits = torch.cat(outs) if outs else flat.new_zeros(0, 0)
    return logits.reshape(*lead, logits.shape[-1])


def can_classify_magnitude(classifier) -> bool:
    fe = getattr(classifier, "frontend", None)
    return fe is not None and hasattr(fe, "logmel_from_magnitude") and callable(getattr(classifier, "backbone", None))


@torch.no_grad()
def classify_magnitude(classifier, magnitude: Tensor, chunk: int = 64) -> Tensor:
    """``magnitude |X| (…, F, T)`` -> logits ``(…, C)`` through the classifier's own log-mel and backbone."""
    if not can_classify_magnitude(classifier):
        raise TypeError(
            f"{type(classifier).__name__} has no `frontend.logmel_from_magnitude` + `backbone`; "
            "classify masked spectrograms through their waveforms instead (mask_domain='waveform')"
        )
    lead = magnitude.shape[:-2]
    flat = magnitude.reshape(-1, *magnitude.shape[-2:])
    outs = []
    for i in range(0, flat.shape[0], chunk):
        outs.append(classifier.backbone(classifier.frontend.logmel_from_magnitude(flat[i : i + chunk])))
    logits = torch.cat(outs)
    return logits.reshape(*lead, logits.shape[-1])


def gather_classes(values: Tensor, classes: Tensor) -> Tensor:
    """``values (B, C)`` or ``(B, C', C)`` and ``classes (B, C')`` (-1 padded) -> ``(B, C')``: the value of each
    slot's class (padding slots read class 0; mask them with ``classes >= 0``)."""
    idx = classes.clamp_min(0).long()
    if values.dim() == 2:
        return torch.take_along_dim(values, idx, dim=1)
    if values.dim() == 3:
        return torch.take_along_dim(values, idx[..., None], dim=2)[..., 0]
    raise ValueError(f"values must be (B, C) or (B, C', C), got {tuple(values.shape)}")


def supports_components(interpreter) -> bool:
    """Whether ``interpreter.interpret`` takes ``components=`` (needed for random-component baselines)."""
    try:
        params = inspect.signature(interpreter.interpret).parameters
    except (TypeError, ValueError, AttributeError):
        return False
    return "components" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def safe_mean(x: Tensor) -> float:
    """Mean of a 1-D tensor, 0.0 when empty (never NaN)."""
    return float(x.float().mean()) if x.numel() else 0.0


def safe_median(x: Tensor) -> float:
    """Median (lower of the two middle values, as torch) of a 1-D tensor, 0.0 when empty."""
    return float(x.float().median()) if x.numel() else 0.0
