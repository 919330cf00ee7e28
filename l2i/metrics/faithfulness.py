"""Faithfulness of an interpretation (docs/method.md, "Metrics"): does removing what it calls relevant change f?

The chosen components are removed from the input (the interpretation's residual waveform), the classifier
is run again on it, and the drop of its probability (and logit) for the explained class is compared with
removing the same number of random components. A faithful interpreter drops much more than random.

Pure torch; :class:`Faithfulness` is a ``torchmetrics.Metric``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["class_scores", "removal_drop", "Faithfulness"]


def class_scores(logits: Tensor, classes: Tensor, task: str) -> tuple[Tensor, Tensor]:
    """Probability and logit of the explained classes: ``logits (B, C)``, ``classes (B, C')`` (-1 padded) ->
    ``(prob (B, C'), logit (B, C'))`` (softmax for multiclass, sigmoid for multilabel; 0 at padding)."""
    probs = logits.softmax(-1) if task == "multiclass" else logits.sigmoid()
    idx = classes.clamp_min(0)
    valid = (classes >= 0).to(logits.dtype)
    return probs.gather(-1, idx) * valid, logits.gather(-1, idx) * valid


@torch.no_grad()
def removal_drop(
    classify: Callable[[Tensor], Tensor],
    original_logits: Tensor,
    residual: Tensor,
    classes: Tensor,
    task: str,
) -> tuple[Tensor, Tensor]:
    """Drop of the classifier's probability and logit for each explained class when its interpretation is
    removed.

    Args:
        classify: ``waveform (n, N) -> logits (n, C)`` (the frozen classifier, front-end included).
        original_logits: ``(B, C)`` the classifier's logits on the input.
        residual: ``(B, C', N)`` the input without the chosen components (one per explained class).
        classes: ``(B, C')`` explained classes, -1 padded.
        task: ``multiclass`` | ``multilabel``.

    Returns:
        ``(prob_drop (B, C'), logit_drop (B, C'))``: score on the input minus score on the residual.
    """
    B, Cp, N = residual.shape
    removed = classify(residual.reshape(B * Cp, N)).reshape(B, Cp, -1)
    p0, l0 = class_scores(original_logits, classes, task)
    idx = classes.clamp_min(0)[..., None]
    probs = removed.softmax(-1) if task == "multiclass" else removed.sigmoid()
    p1 = probs.gather(-1, idx).squeeze(-1)
    l1 = removed.gather(-1, idx).squeeze(-1)
    valid = (classes >= 0).to(p0.dtype)
    return (p0 - p1) * valid, (l0 - l1) * valid


class Faithfulness(Metric):
    """Mean drop of the class probability/logit when the chosen vs random components are removed.

    ``update(prob_drop (B, C'), valid (B, C'), random_prob_drop (B, C'), logit_drop=None,
    random_logit_drop=None)``; ``compute() -> {"prob_drop", "random_prob_drop", "prob_drop_over_random",
    "logit_drop", "random_logit_drop", "fraction_above_random", "count"}``.
    """

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("prob_drop", "random_prob_drop", "logit_drop", "random_logit_drop", "above", "count"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self,
        prob_drop: Tensor,
        valid: Tensor,
        random_prob_drop: Tensor,
        logit_drop: Tensor | None = None,
        random_logit_drop: Tensor | None = None,
    ) -> None:
        v = valid.bool()
        self.prob_drop += prob_drop[v].double().sum()
        self.random_prob_drop += random_prob_drop[v].double().sum()
        self.above += (prob_drop[v] > random_prob_drop[v]).double().sum()
        if logit_drop is not None:
            self.logit_drop += logit_drop[v].double().sum()
        if random_logit_drop is not None:
            self.random_logit_drop += random_logit_drop[v].double().sum()
        self.count += float(v.sum())

    def compute(self) -> dict[str, Tensor]:
        n = self.count.clamp_min(1)
        out = {
            "prob_drop": self.prob_drop / n,
            "random_prob_drop": self.random_prob_drop / n,
            "logit_drop": self.logit_drop / n,
            "random_logit_drop": self.random_logit_drop / n,
            "fraction_above_random": self.above / n,
            "count": self.count,
        }
        out["prob_drop_over_random"] = out["prob_drop"] - out["random_prob_drop"]
        return {k: v.float() for k, v in out.items()}
