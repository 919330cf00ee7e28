"""Music-tagging metrics (MagnaTagATune / MTG-Jamendo): macro ROC-AUC and macro PR-AUC, and chunk averaging.

:class:`TaggingMetrics` is a thin ``torchmetrics.MetricCollection`` over ``MultilabelAUROC`` and
``MultilabelAveragePrecision`` (``average="macro"``, exact - ``thresholds=None``); both share one state
(compute groups), and match scikit-learn's ``roc_auc_score`` / ``average_precision_score`` with
``average="macro"``.

:func:`average_chunks` averages chunk-level outputs per clip before the metric sees them (the usual
test-time protocol: a clip's prediction is the mean over all its chunks).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MultilabelAUROC, MultilabelAveragePrecision

__all__ = ["TaggingMetrics", "average_chunks"]


class TaggingMetrics(MetricCollection):
    """``update(preds (B, C) scores or probabilities, target (B, C) {0,1} int)``; ``compute()`` ->
    ``{f"{prefix}roc_auc", f"{prefix}pr_auc"}`` (0-d tensors, macro over the C tags)."""

    def __init__(self, num_labels: int, prefix: str = "", **kwargs):
        super().__init__(
            {
                "roc_auc": MultilabelAUROC(num_labels=num_labels, average="macro", thresholds=None, **kwargs),
                "pr_auc": MultilabelAveragePrecision(num_labels=num_labels, average="macro", thresholds=None, **kwargs),
            },
            prefix=prefix or None,
            compute_groups=[["roc_auc", "pr_auc"]],
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        super().update(preds, target.long())


def average_chunks(
    outputs: torch.Tensor, clip_ids: torch.Tensor | Sequence[str] | Sequence[int]
) -> tuple[torch.Tensor, list]:
    """Mean of chunk outputs per clip.

    ``outputs``: ``(N_chunks, C)`` (logits or probabilities - averaged as given); ``clip_ids``: ``(N_chunks,)``
    int tensor (e.g. the batch's ``clip_index``) or a sequence of ids (e.g. the batch's ``id``).
    Returns ``(clip_outputs (N_clips, C), ids)`` with clips in order of first appearance.
    """
    if outputs.dim() != 2:
        raise ValueError(f"outputs must be (N_chunks, C), got {tuple(outputs.shape)}")
    ids = clip_ids.tolist() if isinstance(clip_ids, torch.Tensor) else list(clip_ids)
    if len(ids) != outputs.shape[0]:
        raise ValueError(f"{len(ids)} clip ids for {outputs.shape[0]} chunk outputs")
    order: dict = {}
    index = torch.tensor([order.setdefault(k, len(order)) for k in ids], dtype=torch.long, device=outputs.device)
    sums = outputs.new_zeros(len(order), outputs.shape[1]).index_add_(0, index, outputs)
    counts = torch.bincount(index, minlength=len(order)).to(outputs.dtype).unsqueeze(1)
    return sums / counts, list(order)
