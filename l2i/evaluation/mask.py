"""The mask-based metrics of L-MAC (Paissan et al., ICML 2024), so numbers are comparable with its paper.

m is the interpretation's soft mask on the magnitude spectrogram (``Interpretation.mask``, in [0, 1]), X the
input's magnitude, c the explained class, P_c the classifier's probability (softmax for multiclass,
sigmoid for multilabel) and f the classifier. ``m ⊙ X`` is the *masked-in* input, ``(1 − m) ⊙ X`` the
*masked-out* one; both are classified through the classifier's own log-mel and backbone (the mask is applied
to the spectrogram, as L-MAC does; ``mask_domain='waveform'`` classifies the interpretation / residual
waveforms instead, for classifiers without a separable front-end). Averages over explained (clip, class) slots:

* ``AI``   = 100 · mean 1[P_c(m⊙X) > P_c(X)]                             (average increase, %, higher better)
* ``AD``   = 100 · mean max(0, P_c(X) − P_c(m⊙X)) / (P_c(X) + ε)         (average drop, %, lower better)
* ``AG``   = 100 · mean max(0, P_c(m⊙X) − P_c(X)) / (1 − P_c(X) + ε)     (average gain, %, higher better)
* ``FF``   = 100 · mean (P_c(X) − P_c((1 − m)⊙X))                        (faithfulness, %, higher better)
* ``FidIn``= 100 · mean 1[argmax f(m⊙X) = argmax f(X)]                   (input fidelity, %, higher better;
  multilabel: 1[class c's decision P_c > t_c is the same on m⊙X and on X])
* ``SPS`` (sparseness, higher = sparser): the Gini index of the mask, as ``quantus.Sparseness`` (abs, normalise)
  which the L-MAC authors' evaluation calls: a = |m| / max|m| + 1e-7 flattened over the n = F·T bins and
  sorted ascending, ``SPS = Σ_i (2i − n − 1) a_i / (n Σ_i a_i)`` (0 for a uniform mask, → 1 for a single bin).
* ``COMP`` (complexity, lower = simpler): as ``quantus.Complexity``, the entropy (nats) of the mask normalised
  to a distribution, p = |m| / Σ|m|, ``COMP = −Σ p log p`` (0 log 0 = 0; an all-zero mask counts as uniform,
  COMP = log n).

ε = 1e-8. L-MAC's tables print FF and Fid-In as fractions: divide ours by 100 to compare. SPS and COMP are
reported as numbers (not %).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric

from l2i.evaluation.common import EPS, classify_magnitude, classify_waveform, gather_classes, probabilities

__all__ = ["MaskMetrics", "sparseness", "complexity", "masked_logits"]


def sparseness(mask: Tensor) -> Tensor:
    """Gini index of ``mask (M, F, T)`` per slot -> ``(M,)`` (quantus.Sparseness with abs + normalise)."""
    a = mask.detach().abs().flatten(1).double()
    peak = a.amax(-1, keepdim=True)
    a = torch.where(peak > 0, a / peak.clamp_min(1e-300), a) + 1e-7
    a = a.sort(-1).values
    n = a.shape[-1]
    i = torch.arange(1, n + 1, dtype=a.dtype, device=a.device)
    return (((2 * i - n - 1) * a).sum(-1) / (n * a.sum(-1))).float()


def complexity(mask: Tensor) -> Tensor:
    """Entropy (nats) of ``mask (M, F, T)`` normalised to a distribution -> ``(M,)`` (quantus.Complexity)."""
    a = mask.detach().abs().flatten(1).double()
    total = a.sum(-1, keepdim=True)
    n = a.shape[-1]
    p = torch.where(total > 0, a / total.clamp_min(1e-300), torch.full_like(a, 1.0 / n))
    h = -(torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p))).sum(-1)
    return h.float()


@torch.no_grad()
def masked_logits(classifier, magnitude: Tensor, interpretation, mask_domain: str = "magnitude") -> tuple[Tensor, Tensor]:
    """Logits of the masked-in and masked-out inputs, ``(B, C', C)`` each.

    ``magnitude`` is the input's ``|X| (B, F, T)`` (the classifier's front-end of the clips).
    """
    mask = interpretation.mask
    if mask_domain == "waveform":
        return classify_waveform(classifier, interpretation.audio), classify_waveform(classifier, interpretation.residual)
    if mask_domain != "magnitude":
        raise ValueError(f"mask_domain must be 'magnitude' or 'waveform', got {mask_domain!r}")
    if magnitude.shape[-2:] != mask.shape[-2:] or magnitude.shape[0] != mask.shape[0]:
        raise ValueError(
            f"Interpretation.mask {tuple(mask.shape)} does not match the classifier front-end's magnitude "
            f"{tuple(magnitude.shape)} (B, F, T): interpreter and classifier must share STFT settings"
        )
    mag = magnitude[:, None]
    return classify_magnitude(classifier, mask * mag), classify_magnitude(classifier, (1 - mask) * mag)


class MaskMetrics(Metric):
    """L-MAC's AI, AD, AG, FF, FidIn (in %), SPS and COMP (see the module docstring for the exact formulas).

    ``update(original_logits (B, C), masked_in_logits (B, C', C), masked_out_logits (B, C', C), classes (B, C'),
    mask (B, C', F, T))``, or :meth:`update_from_interpretation`. ``compute() -> dict`` with keys
    ``AI, AD, AG, FF, FidIn, SPS, COMP, count``.

    Args:
        task: multiclass | multilabel.
        class_thresholds: multilabel decision thresholds t_c of FidIn (float or (C,), default 0.5).
    """

    full_state_update = False
    KEYS = ("AI", "AD", "AG", "FF", "FidIn", "SPS", "COMP")

    def __init__(self, task: str = "multiclass", class_thresholds: float | Tensor = 0.5, **kwargs):
        super().__init__(**kwargs)
        if task not in ("multiclass", "multilabel"):
            raise ValueError(f"MaskMetrics: task must be multiclass|multilabel, got {task!r}")
        self.task = task
        self.class_thresholds = class_thresholds
        for key in self.KEYS:
            self.add_state(key, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self, original_logits: Tensor, masked_in_logits: Tensor, masked_out_logits: Tensor, classes: Tensor, mask: Tensor
    ) -> None:
        B, Cp = classes.shape
        for name, t in (("masked_in_logits", masked_in_logits), ("masked_out_logits", masked_out_logits)):
            if t.dim() != 3 or t.shape[:2] != (B, Cp) or t.shape[2] != original_logits.shape[-1]:
                raise ValueError(f"MaskMetrics.update: {name} must be (B={B}, C'={Cp}, C={original_logits.shape[-1]}), got {tuple(t.shape)}")
        if mask.shape[:2] != (B, Cp):
            raise ValueError(f"MaskMetrics.update: mask must be (B={B}, C'={Cp}, F, T), got {tuple(mask.shape)}")
        valid = classes >= 0
        orig = original_logits[:, None, :].expand_as(masked_in_logits).float()
        p = gather_classes(probabilities(orig, self.task), classes)[valid]
        p_in = gather_classes(probabilities(masked_in_logits, self.task), classes)[valid]
        p_out = gather_classes(probabilities(masked_out_logits, self.task), classes)[valid]
        if self.task == "multiclass":
            same = (masked_in_logits.argmax(-1) == orig.argmax(-1))[valid]
        else:
            thr = torch.as_tensor(self.class_thresholds, dtype=torch.float32, device=orig.device)
            thr_c = gather_classes(thr.expand(orig.shape[-1])[None].expand(B, -1), classes)[valid] if thr.numel() > 1 else thr
            same = (p_in > thr_c) == (p > thr_c)
        m = mask[valid]
        vals = {
            "AI": (p_in > p).double(),
            "AD": (p - p_in).clamp_min(0).double() / (p.double() + EPS),
            "AG": (p_in - p).clamp_min(0).double() / (1 - p.double() + EPS),
            "FF": (p - p_out).double(),
            "FidIn": same.double(),
            "SPS": sparseness(m).double() if m.numel() else torch.zeros(0, dtype=torch.float64),
            "COMP": complexity(m).double() if m.numel() else torch.zeros(0, dtype=torch.float64),
        }
        for key, v in vals.items():
            setattr(self, key, getattr(self, key) + v.sum().to(getattr(self, key)))
        self.count += float(p.numel())

    @torch.no_grad()
    def update_from_interpretation(self, classifier, waveform: Tensor, interpretation, mask_domain: str = "magnitude") -> None:
        """Classify ``waveform (B, N)`` and its masked-in / masked-out versions, then :meth:`update`."""
        original = classify_waveform(classifier, waveform)
        magnitude = classifier.frontend(waveform).magnitude if mask_domain == "magnitude" else None
        m_in, m_out = masked_logits(classifier, magnitude, interpretation, mask_domain)
        self.update(original, m_in, m_out, interpretation.classes, interpretation.mask)

    def compute(self) -> dict[str, float]:
        n = float(self.count)
        out = {}
        for key in self.KEYS:
            v = float(getattr(self, key)) / n if n > 0 else 0.0
            out[key] = 100.0 * v if key in ("AI", "AD", "AG", "FF", "FidIn") else v
        out["count"] = n
        return out


#: largest possible COMP of a mask with n bins (uniform mask): log n
def max_complexity(n_bins: int) -> float:
    return math.log(n_bins)
