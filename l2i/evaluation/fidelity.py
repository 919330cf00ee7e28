"""Fidelity: how often the interpreter Θ(H) agrees with the classifier f (docs/method.md, "Metrics").

* multiclass: ``top1 = mean 1[argmax Θ(H) = argmax f(x)]`` and ``top{k} = mean 1[argmax f(x) ∈ top-k of Θ(H)]``;
* multilabel: labels ``ŷ_Θ = σ(Θ(H)) > t_Θ`` (per-class thresholds ``t_Θ``: from the config, or tuned on a
  validation set with :func:`tune_thresholds`) against ``ŷ_f = σ(f(x)) > t_f`` (the classifier's decision
  thresholds, default 0.5), over every (clip, class) pair:
  ``f1`` (micro) ``= 2TP / (2TP + FP + FN)``, ``macro_f1`` = mean over classes of the per-class F1,
  ``accuracy = (TP + TN) / (clips · classes)`` and ``exact_match`` = fraction of clips whose label sets agree.
  A class (or the whole set) without any positive on either side counts as perfect agreement (F1 = 1).

All values are fractions in [0, 1]. Pure torch + torchmetrics. This is the project's one definition of
fidelity: the Lightning modules log it through :func:`fidelity_metrics` (``<stage>/fidelity``: multiclass top-1,
multilabel accuracy; ``fidelity_top3``; ``fidelity_f1``), the callbacks and the evaluation suite through
:class:`Fidelity`. Where the modules' former torchmetrics ``Accuracy`` / ``F1Score`` disagreed with it, this one
holds: a multilabel F1 with no positive on either side is 1 (perfect agreement), not 0; the interpreter's
multilabel decision threshold is the classifier's ``class_threshold`` (it was 0.5 in the modules).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection

__all__ = ["Fidelity", "FidelityScore", "fidelity_metrics", "tune_thresholds", "as_thresholds"]


def as_thresholds(value: float | Sequence[float] | Tensor | None, num_classes: int, name: str, default: float = 0.5) -> Tensor:
    """A float / sequence / tensor of per-class thresholds -> ``(C,)`` float tensor (checked)."""
    if value is None:
        value = default
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.expand(num_classes).clone()
    if t.numel() != num_classes:
        raise ValueError(f"{name}: expected 1 or num_classes={num_classes} thresholds, got {t.numel()}")
    if not bool(((t >= 0) & (t <= 1)).all()):
        raise ValueError(f"{name}: thresholds must lie in [0, 1], got {t.tolist()}")
    return t


class Fidelity(Metric):
    """Agreement of the interpreter's prediction with the classifier's.

    Args:
        task: ``multiclass`` | ``multilabel``.
        num_classes: C.
        top_k: extra k of the multiclass top-k agreement (``top1`` is always computed).
        thresholds: multilabel interpreter thresholds ``t_Θ`` (float or ``(C,)``; default 0.5).
        classifier_thresholds: multilabel classifier thresholds ``t_f`` (float or ``(C,)``; default 0.5).

    ``update(interpreter_logits (B, C), classifier_logits (B, C))``; ``compute() -> dict`` of floats (see the
    module docstring for the definitions and keys).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(
        self,
        task: str,
        num_classes: int,
        top_k: Sequence[int] | int = (3,),
        thresholds: float | Sequence[float] | Tensor | None = None,
        classifier_thresholds: float | Sequence[float] | Tensor | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if task not in ("multiclass", "multilabel"):
            raise ValueError(f"Fidelity: task must be multiclass|multilabel, got {task!r}")
        self.task, self.num_classes = task, int(num_classes)
        ks = [top_k] if isinstance(top_k, int) else list(top_k)
        self.top_k = sorted({int(k) for k in ks if 1 < int(k) <= self.num_classes})
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        if task == "multiclass":
            self.add_state("correct", torch.zeros(1 + len(self.top_k)), dist_reduce_fx="sum")
        else:
            # settings, not learnt state: kept out of the state dict (checkpoints of the modules stay as they were)
            self.register_buffer("thresholds", as_thresholds(thresholds, self.num_classes, "Fidelity.thresholds"), persistent=False)
            self.register_buffer(
                "classifier_thresholds",
                as_thresholds(classifier_thresholds, self.num_classes, "Fidelity.classifier_thresholds"),
                persistent=False,
            )
            for name in ("tp", "fp", "fn", "tn"):
                self.add_state(name, torch.zeros(self.num_classes), dist_reduce_fx="sum")
            self.add_state("exact", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, interpreter_logits: Tensor, classifier_logits: Tensor) -> None:
        if interpreter_logits.shape != classifier_logits.shape or interpreter_logits.dim() != 2:
            raise ValueError(
                f"Fidelity.update: interpreter_logits {tuple(interpreter_logits.shape)} and classifier_logits "
                f"{tuple(classifier_logits.shape)} must both be (B, C={self.num_classes})"
            )
        if interpreter_logits.shape[1] != self.num_classes:
            raise ValueError(f"Fidelity.update: logits have {interpreter_logits.shape[1]} classes, expected {self.num_classes}")
        B = interpreter_logits.shape[0]
        self.total += float(B)
        if self.task == "multiclass":
            ref = classifier_logits.argmax(-1)
            # ties among Θ's scores go against the classifier's class: an interpreter whose logits collapsed to a
            # constant scores 0, not the share of clips f puts in the class where an argmax of equal values lands
            scores = interpreter_logits.float()
            tie = 1e-6 * scores.abs().amax(-1, keepdim=True).clamp_min(1.0)
            scores = scores - tie * torch.nn.functional.one_hot(ref, self.num_classes).to(scores)
            hits = [(scores.argmax(-1) == ref).sum()]
            for k in self.top_k:
                topk = scores.topk(k, dim=-1).indices
                hits.append((topk == ref[:, None]).any(-1).sum())
            self.correct += torch.stack(hits).to(self.correct)
            return
        pred = interpreter_logits.float().sigmoid() > self.thresholds.to(interpreter_logits.device)
        ref = classifier_logits.float().sigmoid() > self.classifier_thresholds.to(classifier_logits.device)
        self.tp += (pred & ref).sum(0).to(self.tp)
        self.fp += (pred & ~ref).sum(0).to(self.fp)
        self.fn += (~pred & ref).sum(0).to(self.fn)
        self.tn += (~pred & ~ref).sum(0).to(self.tn)
        self.exact += (pred == ref).all(-1).sum().to(self.exact)

    def compute(self) -> dict[str, Tensor]:
        n = self.total.clamp_min(1.0)
        if self.task == "multiclass":
            out = {"top1": self.correct[0] / n}
            for i, k in enumerate(self.top_k):
                out[f"top{k}"] = self.correct[1 + i] / n
            return out
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        denom = 2 * tp.sum() + fp.sum() + fn.sum()
        f1 = torch.where(denom > 0, 2 * tp.sum() / denom.clamp_min(1.0), torch.ones_like(denom))
        per = 2 * tp + fp + fn
        per_f1 = torch.where(per > 0, 2 * tp / per.clamp_min(1.0), torch.ones_like(per))
        return {
            "f1": f1,
            "macro_f1": per_f1.mean(),
            "accuracy": (tp + tn).sum() / (n * self.num_classes),
            "exact_match": self.exact / n,
        }


class FidelityScore(Fidelity):
    """One figure of :class:`Fidelity` (``key``: ``top1``, ``top<k>``, ``f1``, ``macro_f1``, ``accuracy``,
    ``exact_match``) as a scalar metric, so Lightning logs it like any torchmetrics metric (``self.log``)."""

    def __init__(self, key: str, task: str, num_classes: int, **kwargs):
        super().__init__(task, num_classes, **kwargs)
        self.key = key

    def compute(self) -> Tensor:
        values = super().compute()
        if self.key not in values:
            raise KeyError(f"FidelityScore: {self.key!r} is not a {self.task} fidelity figure; known: {sorted(values)}")
        return values[self.key]


def fidelity_metrics(task: str, num_classes: int, class_threshold: float = 0.5) -> MetricCollection:
    """The fidelity figures the Lightning modules log (``update(interpreter_logits (B, C), classifier_logits (B, C))``).

    multiclass: ``fidelity`` (top-1: argmax Θ(H) == argmax f(x)) and ``fidelity_top3`` (f's class among the
    interpreter's min(3, C) best); multilabel: ``fidelity`` (accuracy of the interpreter's thresholded labels
    against the classifier's, over every clip and class) and ``fidelity_f1`` (micro F1 of the same), both sides
    thresholded at ``class_threshold``.
    """
    if task == "multiclass":
        k = min(3, int(num_classes))
        metrics = {"fidelity": FidelityScore("top1", task, num_classes, top_k=(k,))}
        if k > 1:
            metrics["fidelity_top3"] = FidelityScore(f"top{k}", task, num_classes, top_k=(k,))
        return MetricCollection(metrics)
    kw = dict(thresholds=class_threshold, classifier_thresholds=class_threshold)
    return MetricCollection({"fidelity": FidelityScore("accuracy", task, num_classes, **kw),
                             "fidelity_f1": FidelityScore("f1", task, num_classes, **kw)})


@torch.no_grad()
def tune_thresholds(
    interpreter_probabilities: Tensor,
    classifier_labels: Tensor,
    grid: Tensor | Sequence[float] | None = None,
) -> Tensor:
    """Per-class thresholds of the interpreter that maximise its F1 against the classifier's labels.

    Args:
        interpreter_probabilities: ``(N, C)`` σ(Θ(H)) on a validation set.
        classifier_labels: ``(N, C)`` bool/0-1, the classifier's thresholded predictions on the same clips.
        grid: candidate thresholds (default 0.05, 0.10, …, 0.95).

    Returns:
        ``(C,)`` thresholds; a class never predicted by the classifier keeps the grid point closest to 0.5 among
        the best (ties are broken towards 0.5, so the result is deterministic).
    """
    p = interpreter_probabilities.float()
    y = classifier_labels.bool()
    if p.shape != y.shape or p.dim() != 2:
        raise ValueError(
            f"tune_thresholds: interpreter_probabilities {tuple(p.shape)} and classifier_labels {tuple(y.shape)} must both be (N, C)"
        )
    g = torch.arange(0.05, 0.951, 0.05) if grid is None else torch.as_tensor(grid, dtype=torch.float32).flatten()
    g = g.to(p.device)
    pred = p[None] > g[:, None, None]  # (G, N, C)
    tp = (pred & y).sum(1).float()
    fp = (pred & ~y).sum(1).float()
    fn = (~pred & y).sum(1).float()
    denom = 2 * tp + fp + fn
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1.0), torch.ones_like(denom))  # (G, C)
    score = f1 - 1e-6 * (g[:, None] - 0.5).abs()  # ties -> closest to 0.5
    return g[score.argmax(0)]
