"""Ground truth: does the interpretation for class c sound like the true source of c? (docs/method.md, "Metrics")

On mixtures with known sources (the synthetic set; "overlap" mixtures of :mod:`l2i.evaluation.overlap`), with
``s_c`` the sum of the sources labelled c, ``x`` the mixture and ``x̂_c`` the interpretation waveform of c:

* ``si_sdr_interpretation`` = SI-SDR(x̂_c, s_c), ``si_sdr_mixture`` = SI-SDR(x, s_c) (the "do nothing" score),
  ``si_sdri`` = their difference (improvement), ``si_sdr_random`` = SI-SDR of the interpretation built from the
  same number of random components (when the interpreter can take ``components=``), and
  ``frac_interpretation_gt_random``. SI-SDR by ``torchmetrics.functional.audio`` with zero mean, in dB;
  a silent interpretation (energy < 1e-10 · the source's) scores :data:`SILENT_DB` instead of the eps-driven
  ~0 dB torchmetrics would give it.
* ``energy_in_support``: the fraction of the interpretation's spectral energy inside c's time-frequency
  support, the bins where the source dominates the rest of the mixture (ideal binary mask
  ``|S_c| > |X − S_c|``, STFT of the classifier's front-end):
  ``Σ_support (m|X|)² / Σ (m|X|)²`` (0 for a silent interpretation). ``energy_in_support_random`` likewise.

Slots whose class has no source in the clip (e.g. a wrongly predicted class) are skipped; ``count`` says how
many slots were scored. Pure torch + torchmetrics.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio
from torchmetrics.utilities import dim_zero_cat

from l2i.evaluation.common import EPS, safe_mean, safe_median

__all__ = ["GroundTruth", "class_sources", "si_sdr", "support_energy_fraction", "SILENT_DB"]

#: SI-SDR given to a silent interpretation (dB)
SILENT_DB = -50.0


def class_sources(sources: Tensor, source_labels: Tensor, classes: Tensor, source_targets: Tensor | None = None) -> Tensor:
    """The true source of every explained class: ``(B, C', N)``, the sum of the sources labelled with it.

    Args:
        sources: ``(B, S, N)`` source waveforms (zero rows for empty slots).
        source_labels: ``(B, S)`` int labels, -1 = empty slot.
        classes: ``(B, C')`` explained classes, -1 padded (padded slots get silence).
        source_targets: optional ``(B, S, C)`` multi-hot labels of every source (multilabel sources); used
            instead of ``source_labels`` when given.
    """
    if sources.dim() != 3 or source_labels.shape != sources.shape[:2]:
        raise ValueError(
            f"ground truth: batch 'sources' must be (B, S, N) and 'source_labels' (B, S), got "
            f"{tuple(sources.shape)} and {tuple(source_labels.shape)}"
        )
    if source_targets is not None:
        onehot = torch.take_along_dim(source_targets.float(), classes.clamp_min(0)[:, None, :].expand(-1, sources.shape[1], -1), dim=2)
        member = onehot.transpose(1, 2) > 0.5  # (B, C', S)
    else:
        member = source_labels[:, None, :] == classes[:, :, None]  # (B, C', S)
    member = member & (classes[:, :, None] >= 0)
    return torch.einsum("bcs,bsn->bcn", member.to(sources.dtype), sources)


def si_sdr(preds: Tensor, target: Tensor, silent_db: float = SILENT_DB) -> Tensor:
    """SI-SDR (dB, zero mean) of ``preds`` against ``target``, both ``(…, N)``; silent preds -> ``silent_db``."""
    val = scale_invariant_signal_distortion_ratio(preds.float(), target.float(), zero_mean=True)
    p = preds.float() - preds.float().mean(-1, keepdim=True)
    t = target.float() - target.float().mean(-1, keepdim=True)
    silent = p.pow(2).sum(-1) <= 1e-10 * t.pow(2).sum(-1).clamp_min(EPS)
    val = torch.where(silent | ~torch.isfinite(val), torch.full_like(val, silent_db), val)
    return val


def support_energy_fraction(interpretation_magnitude: Tensor, source_magnitude: Tensor, rest_magnitude: Tensor) -> Tensor:
    """Fraction of the interpretation's energy inside the source's support (``|S| > |rest|``).

    All ``(…, F, T)``; returns ``(…)`` in [0, 1] (0 for a silent interpretation).
    """
    support = source_magnitude > rest_magnitude
    e = interpretation_magnitude.float().pow(2)
    total = e.sum((-2, -1))
    inside = (e * support).sum((-2, -1))
    return torch.where(total > 0, inside / total.clamp_min(EPS), torch.zeros_like(total))


class GroundTruth(Metric):
    """SI-SDR of interpretations against the true sources, and their energy inside the sources' support.

    ``update(si_sdr_interpretation (M,), si_sdr_mixture (M,), energy_in_support (M,), si_sdr_random=None,
    energy_in_support_random=None)`` with one entry per scored slot, or :meth:`update_from_batch`.
    ``compute() -> dict`` (keys in the module docstring).
    """

    full_state_update = False
    _NAMES = ("interp", "mixture", "energy", "random", "energy_random")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in self._NAMES:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        si_sdr_interpretation: Tensor,
        si_sdr_mixture: Tensor,
        energy_in_support: Tensor,
        si_sdr_random: Tensor | None = None,
        energy_in_support_random: Tensor | None = None,
    ) -> None:
        n = si_sdr_interpretation.numel()
        for name, t in (("si_sdr_mixture", si_sdr_mixture), ("energy_in_support", energy_in_support),
                        ("si_sdr_random", si_sdr_random), ("energy_in_support_random", energy_in_support_random)):
            if t is not None and t.numel() != n:
                raise ValueError(f"GroundTruth.update: {name} has {t.numel()} entries, si_sdr_interpretation {n}")
        self.interp.append(si_sdr_interpretation.detach().float().flatten())
        self.mixture.append(si_sdr_mixture.detach().float().flatten())
        self.energy.append(energy_in_support.detach().float().flatten())
        if si_sdr_random is not None:
            self.random.append(si_sdr_random.detach().float().flatten())
        if energy_in_support_random is not None:
            self.energy_random.append(energy_in_support_random.detach().float().flatten())

    @torch.no_grad()
    def update_from_batch(self, frontend, batch: dict, interpretation, random_interpretation=None) -> Tensor:
        """Score ``interpretation`` (and the random one) against ``batch['sources']``.

        ``frontend``: the :class:`~l2i.frontend.AudioFrontEnd` whose STFT the interpretation's mask lives on.
        ``batch``: ``waveform (B, N)``, ``sources (B, S, N)``, ``source_labels (B, S)``, optional
        ``source_targets (B, S, C)``. Returns the per-slot SI-SDR of the interpretation ``(B, C')``
        (``nan``-free; unscored slots hold :data:`SILENT_DB`) for callers that compare conditions.
        """
        for key in ("waveform", "sources", "source_labels"):
            if key not in batch:
                raise KeyError(f"ground truth needs batch[{key!r}] (mixtures with known sources)")
        device = interpretation.audio.device
        x = batch["waveform"].to(device).float()
        classes = interpretation.classes
        targets = batch.get("source_targets")
        src = class_sources(batch["sources"].to(device).float(), batch["source_labels"].to(device), classes,
                            None if targets is None else targets.to(device))
        N = min(src.shape[-1], interpretation.audio.shape[-1], x.shape[-1])
        src, x, audio = src[..., :N], x[..., :N], interpretation.audio[..., :N]
        scored = (classes >= 0) & (src.pow(2).sum(-1) > 0)
        mix = x[:, None, :].expand_as(src)
        sdr = si_sdr(audio, src)
        sdr_mix = si_sdr(mix, src)
        B, Cp = classes.shape
        spec_src = frontend.stft(src.reshape(B * Cp, N)).abs()
        spec_rest = frontend.stft((mix - src).reshape(B * Cp, N)).abs()
        spec_src = spec_src.reshape(B, Cp, *spec_src.shape[-2:])
        spec_rest = spec_rest.reshape(B, Cp, *spec_rest.shape[-2:])
        mag = frontend.stft(x).abs()[:, None]
        T = min(mag.shape[-1], interpretation.mask.shape[-1], spec_src.shape[-1])
        if interpretation.mask.shape[-2] != mag.shape[-2]:
            raise ValueError(
                f"Interpretation.mask has {interpretation.mask.shape[-2]} frequency bins, the front-end "
                f"{mag.shape[-2]}: score with the interpreter's own front-end"
            )
        energy = support_energy_fraction(interpretation.mask[..., :T] * mag[..., :T], spec_src[..., :T], spec_rest[..., :T])
        rnd = erand = None
        if random_interpretation is not None:
            rnd = si_sdr(random_interpretation.audio[..., :N], src)[scored]
            erand = support_energy_fraction(random_interpretation.mask[..., :T] * mag[..., :T], spec_src[..., :T], spec_rest[..., :T])[scored]
        self.update(sdr[scored], sdr_mix[scored], energy[scored], rnd, erand)
        return torch.where(scored, sdr, torch.full_like(sdr, SILENT_DB))

    @staticmethod
    def _cat(state) -> Tensor:
        if isinstance(state, Tensor):
            return state.flatten()
        return dim_zero_cat(state) if len(state) else torch.zeros(0)

    def compute(self) -> dict[str, float]:
        interp, mix, energy = self._cat(self.interp), self._cat(self.mixture), self._cat(self.energy)
        out = {
            "count": float(interp.numel()),
            "si_sdr_interpretation_mean": safe_mean(interp),
            "si_sdr_interpretation_median": safe_median(interp),
            "si_sdr_mixture_mean": safe_mean(mix),
            "si_sdri_mean": safe_mean(interp - mix),
            "energy_in_support_mean": safe_mean(energy),
        }
        rnd = self._cat(self.random)
        if rnd.numel() and rnd.numel() == interp.numel():
            out["si_sdr_random_mean"] = safe_mean(rnd)
            out["si_sdr_random_median"] = safe_median(rnd)
            out["frac_interpretation_gt_random"] = safe_mean((interp > rnd).float())
        er = self._cat(self.energy_random)
        if er.numel() and er.numel() == interp.numel():
            out["energy_in_support_random_mean"] = safe_mean(er)
        return out
