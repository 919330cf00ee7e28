"""Music-tagging metrics (MagnaTagATune / MTG-Jamendo): macro ROC-AUC and macro PR-AUC, and chunk averaging.

:class:`TaggingMetrics` is a thin ``torchmetrics.MetricCollection`` over ``MultilabelAUROC`` and
``MultilabelAveragePrecision`` (``average="macro"``, exact - ``thresholds=None``); both share one state
(compute groups), and match scikit-learn's ``roc_auc_score`` / ``average_precision_score`` with
``average="macro"``.

:func:`average_chunks` averages chunk-level outputs per clip before the metric sees them (the usual
test-time protocol: a clip's prediction is the mean over all its chunks); :class:`ClipTaggingMetrics` does
the same inside one ``Metric`` fed batch by batch with the batches' ``clip_index`` (chunks of one clip may
arrive in different batches, or on different processes under DDP).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MultilabelAUROC, MultilabelAveragePrecision
from torchmetrics.functional.classification import multilabel_auroc, multilabel_average_precision
from torchmetrics.utilities import dim_zero_cat

__all__ = ["TaggingMetrics", "ClipTaggingMetrics", "average_chunks"]


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


class ClipTaggingMetrics(Metric):
    """Macro ROC-AUC and PR-AUC of clip-level predictions = the mean of each clip's chunk predictions.

    ``update(preds (B, C), target (B, C) {0,1}, clip_index (B,) int)`` with chunk rows (e.g. a test batch of
    :class:`datamodules.magnatagatune.MagnaTagATuneDataModule`); ``compute()`` averages ``preds`` per
    ``clip_index`` over everything seen (all batches, all processes), then returns ``{f"{prefix}roc_auc",
    f"{prefix}pr_auc"}`` (0-d tensors, macro over the C tags, exact - as scikit-learn's). Chunks of one clip
    must carry the same target (checked).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_labels: int, prefix: str = "", **kwargs):
        super().__init__(**kwargs)
        self.num_labels, self.prefix = int(num_labels), prefix
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")
        self.add_state("clip_index", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor, clip_index: torch.Tensor) -> None:
        if preds.dim() != 2 or preds.shape != target.shape or preds.shape[1] != self.num_labels:
            raise ValueError(f"preds and target must be (B, {self.num_labels}), got {tuple(preds.shape)} and {tuple(target.shape)}")
        if clip_index.shape != (preds.shape[0],):
            raise ValueError(f"clip_index must be ({preds.shape[0]},), got {tuple(clip_index.shape)}")
        self.preds.append(preds.detach().float())
        self.target.append(target.detach().long())
        self.clip_index.append(clip_index.detach().long())

    def compute(self) -> dict[str, torch.Tensor]:
        preds, target, clips = dim_zero_cat(self.preds), dim_zero_cat(self.target), dim_zero_cat(self.clip_index)
        clip_preds, ids = average_chunks(preds, clips)
        index = {k: i for i, k in enumerate(ids)}
        rows = torch.tensor([index[k] for k in clips.tolist()], device=preds.device)
        clip_target = torch.zeros(len(ids), self.num_labels, dtype=torch.long, device=preds.device)
        clip_target[rows] = target
        if not torch.equal(clip_target[rows], target):
            raise ValueError("chunks of one clip carry different targets")
        kw = dict(num_labels=self.num_labels, average="macro", thresholds=None)
        return {f"{self.prefix}roc_auc": multilabel_auroc(clip_preds, clip_target, **kw),
                f"{self.prefix}pr_auc": multilabel_average_precision(clip_preds, clip_target, **kw)}
