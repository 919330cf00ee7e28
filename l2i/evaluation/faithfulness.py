"""Faithfulness by component removal (docs/method.md, "Metrics").

For a clip x and an explained class c, remove the interpretation's chosen components from the input: the
residual spectrum ``(1 - mask) ⊙ |X|`` with the input phase -> waveform (``Interpretation.residual``) ->
the classifier's front-end -> the classifier. The drops

* ``logit_drop = f(x)_c − f(x_residual)_c``
* ``prob_drop  = P_c(x) − P_c(x_residual)`` (P = softmax for multiclass, sigmoid for multilabel)

are compared with the same drops when the **same number of random components** is removed instead (the
interpreter's ``interpret(..., components=random)``; see :func:`l2i.interpreter.interpretation.random_components`).
A faithful interpreter drops much more than random. Reported (over every explained (clip, class) slot):
``{relevant,random}_{logit,prob}_drop_{mean,median}``, ``frac_{logit,prob}_relevant_gt_random`` (fraction of
slots where removing the relevant components drops more than removing random ones, strictly) and ``count``.
Without a random baseline the random keys are absent.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from l2i.evaluation.common import classify_waveform, gather_classes, probabilities, safe_mean, safe_median

__all__ = ["Faithfulness", "removal_drops"]


@torch.no_grad()
def removal_drops(
    original_logits: Tensor, removed_logits: Tensor, classes: Tensor, task: str
) -> tuple[Tensor, Tensor]:
    """Per-slot drops of the explained class's logit and probability.

    Args:
        original_logits: ``(B, C)`` f(x).
        removed_logits: ``(B, C', C)`` f(residual of each explained class).
        classes: ``(B, C')`` explained classes, -1 padded.
        task: multiclass | multilabel (softmax | sigmoid probabilities).

    Returns:
        ``(logit_drop, prob_drop)``, each ``(M,)`` over the valid slots (row-major order).
    """
    B, Cp = classes.shape
    if removed_logits.dim() != 3 or removed_logits.shape[:2] != (B, Cp) or original_logits.shape != (B, removed_logits.shape[2]):
        raise ValueError(
            f"removal_drops: original_logits {tuple(original_logits.shape)} must be (B, C), removed_logits "
            f"{tuple(removed_logits.shape)} (B, C', C) and classes {tuple(classes.shape)} (B, C')"
        )
    valid = classes >= 0
    orig = original_logits[:, None, :].expand_as(removed_logits)
    logit_drop = gather_classes(orig, classes) - gather_classes(removed_logits, classes)
    prob_drop = gather_classes(probabilities(orig, task), classes) - gather_classes(probabilities(removed_logits, task), classes)
    return logit_drop[valid].float(), prob_drop[valid].float()


class Faithfulness(Metric):
    """Drops of f's logit / probability of the explained class when the chosen (vs random) components are removed.

    ``update(relevant_logit_drop (M,), relevant_prob_drop (M,), random_logit_drop=None, random_prob_drop=None)``
    with one entry per explained (clip, class) slot (:func:`removal_drops`); or :meth:`update_from_logits`.
    ``compute() -> dict`` (keys in the module docstring). Per-slot values are kept (``cat`` states) so medians
    are exact under DDP.
    """

    full_state_update = False

    def __init__(self, task: str = "multiclass", **kwargs):
        super().__init__(**kwargs)
        if task not in ("multiclass", "multilabel"):
            raise ValueError(f"Faithfulness: task must be multiclass|multilabel, got {task!r}")
        self.task = task
        for name in ("relevant_logit", "relevant_prob", "random_logit", "random_prob"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        relevant_logit_drop: Tensor,
        relevant_prob_drop: Tensor,
        random_logit_drop: Tensor | None = None,
        random_prob_drop: Tensor | None = None,
    ) -> None:
        n = relevant_logit_drop.numel()
        if relevant_prob_drop.numel() != n:
            raise ValueError(f"Faithfulness.update: relevant_prob_drop has {relevant_prob_drop.numel()} entries, relevant_logit_drop {n}")
        if (random_logit_drop is None) != (random_prob_drop is None):
            raise ValueError("Faithfulness.update: give both random_logit_drop and random_prob_drop, or neither")
        if random_logit_drop is not None and (random_logit_drop.numel() != n or random_prob_drop.numel() != n):
            raise ValueError(
                f"Faithfulness.update: random drops need {n} entries (one per relevant drop), got "
                f"{random_logit_drop.numel()} and {random_prob_drop.numel()}"
            )
        self.relevant_logit.append(relevant_logit_drop.detach().float().flatten())
        self.relevant_prob.append(relevant_prob_drop.detach().float().flatten())
        if random_logit_drop is not None:
            self.random_logit.append(random_logit_drop.detach().float().flatten())
            self.random_prob.append(random_prob_drop.detach().float().flatten())

    @torch.no_grad()
    def update_from_logits(
        self, original_logits: Tensor, removed_logits: Tensor, classes: Tensor, random_logits: Tensor | None = None
    ) -> None:
        """``original (B, C)``, ``removed (B, C', C)``, ``classes (B, C')``, optional ``random (B, C', C)``."""
        rl, rp = removal_drops(original_logits, removed_logits, classes, self.task)
        if random_logits is None:
            self.update(rl, rp)
        else:
            ql, qp = removal_drops(original_logits, random_logits, classes, self.task)
            self.update(rl, rp, ql, qp)

    @torch.no_grad()
    def update_from_interpretations(self, classifier, waveform: Tensor, interpretation, random_interpretation=None) -> None:
        """Classify ``waveform (B, N)`` and the residuals of ``interpretation`` (and of the random one)."""
        original = classify_waveform(classifier, waveform)
        removed = classify_waveform(classifier, interpretation.residual)
        rand = None if random_interpretation is None else classify_waveform(classifier, random_interpretation.residual)
        self.update_from_logits(original, removed, interpretation.classes, rand)

    @staticmethod
    def _cat(state) -> Tensor:
        if isinstance(state, Tensor):
            return state.flatten()
        return dim_zero_cat(state) if len(state) else torch.zeros(0)

    def compute(self) -> dict[str, float]:
        rl, rp = self._cat(self.relevant_logit), self._cat(self.relevant_prob)
        out = {
            "count": float(rl.numel()),
            "relevant_logit_drop_mean": safe_mean(rl),
            "relevant_logit_drop_median": safe_median(rl),
            "relevant_prob_drop_mean": safe_mean(rp),
            "relevant_prob_drop_median": safe_median(rp),
        }
        ql, qp = self._cat(self.random_logit), self._cat(self.random_prob)
        if ql.numel() and ql.numel() == rl.numel():
            out.update(
                {
                    "random_logit_drop_mean": safe_mean(ql),
                    "random_logit_drop_median": safe_median(ql),
                    "random_prob_drop_mean": safe_mean(qp),
                    "random_prob_drop_median": safe_median(qp),
                    "frac_logit_relevant_gt_random": safe_mean((rl > ql).float()),
                    "frac_prob_relevant_gt_random": safe_mean((rp > qp).float()),
                }
            )
        return out
