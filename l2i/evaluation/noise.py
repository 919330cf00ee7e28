"""Noise robustness (the paper's noise experiment; docs/method.md, "Metrics").

White Gaussian noise is added to each test clip at a given SNR (per clip:
``noise = n · sqrt(P_x / (P_n · 10^(SNR/10)))`` with ``P`` the mean power), and the interpreter explains the
noisy clip **for the classes it explained on the clean clip**. Reported (over clips / explained slots):

* ``fidelity_clean``, ``fidelity_noisy``, ``fidelity_change`` (noisy − clean): top-1 agreement of Θ(H) with f
  (multiclass) or exact-match of the thresholded labels (multilabel), each on its own input;
* ``relevance_chosen_clean`` / ``relevance_chosen_noisy``: mean relevance, over the components chosen on the
  clean clip, on the clean and on the noisy clip; ``relevance_change`` = noisy − clean;
  ``chosen_kept`` = fraction of the clean choice still chosen on the noisy clip, ``chosen_jaccard`` = mean
  Jaccard index |S_clean ∩ S_noisy| / |S_clean ∪ S_noisy| (1 when both are empty);
* ``si_sdr_clean`` / ``si_sdr_noisy`` / ``si_sdr_change`` (when sources are known): SI-SDR against the
  **clean** true source of the clean-clip and of the noisy-clip interpretation.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from l2i.evaluation.common import EPS

__all__ = ["add_white_noise", "NoiseRobustness"]


def add_white_noise(waveform: Tensor, snr_db: float, generator: torch.Generator | None = None) -> Tensor:
    """``waveform (B, N)`` + white Gaussian noise at ``snr_db`` per clip (a silent clip gets noise of power 1e-8 · 10^(−SNR/10)).

    The noise is drawn on the CPU generator (reproducible), then moved to the waveform's device.
    """
    x = waveform.float()
    noise = torch.randn(x.shape, generator=generator).to(x.device)
    p_x = x.pow(2).mean(-1, keepdim=True).clamp_min(EPS)
    p_n = noise.pow(2).mean(-1, keepdim=True).clamp_min(EPS)
    scale = torch.sqrt(p_x / (p_n * 10 ** (float(snr_db) / 10)))
    return (x + scale * noise).to(waveform.dtype)


class NoiseRobustness(Metric):
    """Change of fidelity, of the relevance of the originally chosen components and of ground-truth scores.

    ``update(clean_agree (B,), noisy_agree (B,), clean_relevance (B, C', K), noisy_relevance (B, C', K),
    clean_chosen (B, C', K), noisy_chosen (B, C', K), valid (B, C'), si_sdr_clean=None (M,), si_sdr_noisy=None (M,))``;
    or :meth:`update_from_interpretations`. ``compute() -> dict`` (keys in the module docstring).
    """

    full_state_update = False
    _SUMS = ("clips", "agree_clean", "agree_noisy", "rel_clean", "rel_noisy", "n_chosen", "kept", "jaccard", "slots",
             "sdr_clean", "sdr_noisy", "sdr_count")

    def __init__(self, snr_db: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        self.snr_db = float(snr_db)
        for name in self._SUMS:
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self,
        clean_agree: Tensor,
        noisy_agree: Tensor,
        clean_relevance: Tensor,
        noisy_relevance: Tensor,
        clean_chosen: Tensor,
        noisy_chosen: Tensor,
        valid: Tensor,
        si_sdr_clean: Tensor | None = None,
        si_sdr_noisy: Tensor | None = None,
    ) -> None:
        shape = clean_relevance.shape
        for name, t in (("noisy_relevance", noisy_relevance), ("clean_chosen", clean_chosen), ("noisy_chosen", noisy_chosen)):
            if t.shape != shape:
                raise ValueError(f"NoiseRobustness.update: {name} {tuple(t.shape)} must match clean_relevance {tuple(shape)}")
        if valid.shape != shape[:2] or clean_agree.shape != noisy_agree.shape:
            raise ValueError(f"NoiseRobustness.update: valid must be {tuple(shape[:2])} and the agreements of equal shape")
        dev = self.clips.device  # states stay where the metric lives, whatever device the inputs are on
        cc = clean_chosen.bool() & valid[..., None]
        nc = noisy_chosen.bool() & valid[..., None]
        union = (cc | nc).double().sum(-1)
        inter = (cc & nc).double().sum(-1)
        jac = torch.where(union > 0, inter / union.clamp_min(1.0), torch.ones_like(union))
        sums = {
            "clips": float(clean_agree.numel()),
            "agree_clean": clean_agree.double().sum(),
            "agree_noisy": noisy_agree.double().sum(),
            "rel_clean": (clean_relevance.double() * cc).sum(),
            "rel_noisy": (noisy_relevance.double() * cc).sum(),
            "n_chosen": cc.double().sum(),
            "kept": (cc & nc).double().sum(),
            "jaccard": jac[valid].sum(),
            "slots": valid.double().sum(),
        }
        for name, value in sums.items():
            setattr(self, name, getattr(self, name) + torch.as_tensor(value, dtype=torch.float64).to(dev))
        if (si_sdr_clean is None) != (si_sdr_noisy is None):
            raise ValueError("NoiseRobustness.update: give both si_sdr_clean and si_sdr_noisy, or neither")
        if si_sdr_clean is not None:
            if si_sdr_clean.numel() != si_sdr_noisy.numel():
                raise ValueError("NoiseRobustness.update: si_sdr_clean and si_sdr_noisy need the same number of entries")
            self.sdr_clean += si_sdr_clean.double().sum().to(dev)
            self.sdr_noisy += si_sdr_noisy.double().sum().to(dev)
            self.sdr_count += float(si_sdr_clean.numel())

    @staticmethod
    def agreement(interpretation, task: str, classifier_logits: Tensor | None = None, thresholds: float | Tensor = 0.5) -> Tensor:
        """Per-clip agreement of Θ(H) with f: top-1 (multiclass) or exact match of labels (multilabel), ``(B,)`` bool."""
        ref = interpretation.classifier_logits if classifier_logits is None else classifier_logits
        if ref is None:
            raise ValueError("NoiseRobustness: the interpretation carries no classifier_logits; pass classifier_logits")
        if task == "multiclass":
            return interpretation.logits.argmax(-1) == ref.argmax(-1)
        thr = torch.as_tensor(thresholds, dtype=torch.float32, device=ref.device)
        return ((interpretation.logits.float().sigmoid() > thr) == (ref.float().sigmoid() > thr)).all(-1)

    def update_from_interpretations(
        self, clean, noisy, task: str, si_sdr_clean: Tensor | None = None, si_sdr_noisy: Tensor | None = None,
        clean_classifier_logits: Tensor | None = None, noisy_classifier_logits: Tensor | None = None,
    ) -> None:
        """``clean`` and ``noisy`` :class:`~l2i.interpreter.interpretation.Interpretation` s of the same classes."""
        if not torch.equal(clean.classes, noisy.classes):
            raise ValueError("NoiseRobustness: explain the noisy clips for the clean clips' classes (target=clean.classes)")
        self.update(
            self.agreement(clean, task, clean_classifier_logits),
            self.agreement(noisy, task, noisy_classifier_logits),
            clean.explained("relevance"),
            noisy.explained("relevance"),
            clean.explained("components"),
            noisy.explained("components"),
            clean.valid,
            si_sdr_clean,
            si_sdr_noisy,
        )

    def compute(self) -> dict[str, float]:
        def div(a, b) -> float:
            return float(a) / float(b) if float(b) > 0 else 0.0

        out = {
            "snr_db": self.snr_db,
            "fidelity_clean": div(self.agree_clean, self.clips),
            "fidelity_noisy": div(self.agree_noisy, self.clips),
            "relevance_chosen_clean": div(self.rel_clean, self.n_chosen),
            "relevance_chosen_noisy": div(self.rel_noisy, self.n_chosen),
            "chosen_kept": div(self.kept, self.n_chosen),
            "chosen_jaccard": div(self.jaccard, self.slots),
        }
        out["fidelity_change"] = out["fidelity_noisy"] - out["fidelity_clean"]
        out["relevance_change"] = out["relevance_chosen_noisy"] - out["relevance_chosen_clean"]
        if float(self.sdr_count) > 0:
            out["si_sdr_clean"] = div(self.sdr_clean, self.sdr_count)
            out["si_sdr_noisy"] = div(self.sdr_noisy, self.sdr_count)
            out["si_sdr_change"] = out["si_sdr_noisy"] - out["si_sdr_clean"]
        return out
