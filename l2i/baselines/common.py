"""What every component-free baseline shares: mel -> linear-frequency mapping of a map, attribution -> soft /
thresholded STFT mask, and the :class:`~l2i.interpreter.interpretation.Interpretation` of a mask.

Shapes: ``B`` clips, ``C`` classes, ``C'`` explained classes per clip, ``M`` mel bands, ``F`` STFT bins, ``T``
frames, ``N`` samples. Pure torch; no Lightning.

**Component-free interpretations.** Attribution maps and L-MAC masks have no NMF components, so their
:class:`Interpretation` carries ``relevance`` / ``components`` of shape ``(B, C, 0)`` (K = 0: zeros of no
component), ``activations (B, 0, T)``, and ``logits = classifier_logits`` = the explained classifier's logits
(they explain f directly; fidelity is 1 by construction). ``mask``, ``audio`` and ``residual`` are as for every
interpreter: the soft mask on ``|X|``, and the inverse STFTs of ``mask·|X|`` and ``(1 − mask)·|X|`` with the
input phase.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from l2i.classifier import FrozenClassifier
from l2i.interpreter.interpretation import Interpretation, synthesize

__all__ = [
    "mel_to_linear_matrix",
    "mel_to_linear",
    "attribution_mask",
    "mask_interpretation",
    "ClassifierBaseline",
    "SourcesObserver",
    "MEL_TO_LINEAR",
    "MASK_MODES",
]

MEL_TO_LINEAR = ("transpose", "pinv")
MASK_MODES = ("soft", "threshold")


def mel_to_linear_matrix(mel_fbanks: Tensor, method: Literal["transpose", "pinv"] = "transpose") -> Tensor:
    """The ``(F, M)`` matrix taking a mel-resolution map to linear frequency.

    Args:
        mel_fbanks: the front-end's ``(F, M)`` filterbank (``mel = fbanksᵀ · power``).
        method: ``transpose`` — each linear bin gets the filterbank-weighted *average* of the mel bands covering
            it (rows of ``fbanks`` normalised to sum 1; bins no band covers get 0), so a map in [0, 1] stays in
            [0, 1]; ``pinv`` — the Moore-Penrose pseudo-inverse of ``fbanksᵀ`` (least-squares inverse of the
            mel projection; may be negative, callers clip).
    """
    fb = mel_fbanks.float()
    if fb.dim() != 2:
        raise ValueError(f"mel_fbanks must be (F, n_mels), got {tuple(fb.shape)}")
    if method == "transpose":
        s = fb.sum(-1, keepdim=True)
        return torch.where(s > 0, fb / s.clamp_min(torch.finfo(fb.dtype).tiny), torch.zeros_like(fb))
    if method == "pinv":
        return torch.linalg.pinv(fb.t())
    raise ValueError(f"mel_to_linear must be one of {MEL_TO_LINEAR}, got {method!r}")


def mel_to_linear(maps: Tensor, matrix: Tensor) -> Tensor:
    """``maps (…, M, T)`` -> ``(…, F, T)`` with a matrix from :func:`mel_to_linear_matrix`."""
    if maps.shape[-2] != matrix.shape[1]:
        raise ValueError(f"mel map has {maps.shape[-2]} bands, the mel->linear matrix {matrix.shape[1]}")
    return torch.einsum("fm,...mt->...ft", matrix.to(maps.dtype), maps)


def _peak_normalise(x: Tensor) -> Tensor:
    """Divide every ``(…, M, T)`` map by its maximum (all-zero maps stay zero; never NaN)."""
    peak = x.amax(dim=(-2, -1), keepdim=True)
    return torch.where(peak > 0, x / peak.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(x))


def attribution_mask(
    attribution: Tensor,
    matrix: Tensor,
    mode: Literal["soft", "threshold"] = "soft",
    threshold: float = 0.2,
    sign: Literal["positive", "abs"] = "positive",
) -> Tensor:
    """An attribution map on the log-mel input -> a mask on the linear-frequency STFT magnitude.

    Args:
        attribution: ``(B, C', M, T)`` attribution of each explained class on the log-mel input.
        matrix: ``(F, M)`` from :func:`mel_to_linear_matrix`.
        mode: ``soft`` — the map (positive part, divided by its maximum) mapped to linear frequency, values in
            [0, 1]; ``threshold`` — 1 where that soft mask exceeds ``threshold``, else 0.
        threshold: binarisation threshold of ``threshold`` mode (the interpreter's τ), in [0, 1).
        sign: ``positive`` keeps evidence *for* the class (negative attributions -> 0); ``abs`` keeps magnitudes.

    Returns:
        ``(B, C', F, T)`` in [0, 1], finite.
    """
    if mode not in MASK_MODES:
        raise ValueError(f"mask mode must be one of {MASK_MODES}, got {mode!r}")
    a = torch.nan_to_num(attribution.float(), nan=0.0, posinf=0.0, neginf=0.0)
    a = a.clamp_min(0) if sign == "positive" else a.abs()
    lin = _peak_normalise(mel_to_linear(_peak_normalise(a), matrix).clamp_min(0)).clamp(0.0, 1.0)
    if mode == "threshold":
        if not 0 <= float(threshold) < 1:
            raise ValueError(f"mask threshold must be in [0, 1), got {threshold}")
        lin = (lin > float(threshold)).to(lin.dtype)
    return lin


def mask_interpretation(
    frontend,
    features,
    mask: Tensor,
    classes: Tensor,
    logits: Tensor,
    num_classes: int,
    threshold: float,
    classifier_logits: Tensor | None = None,
) -> Interpretation:
    """The :class:`Interpretation` of a component-free mask (see the module docstring for what it holds).

    Args:
        frontend: the :class:`~l2i.frontend.AudioFrontEnd` (inverse STFT).
        features: the batch's :class:`~l2i.frontend.Features`.
        mask: ``(B, C', F, T)`` in [0, 1]; padded class slots (``classes == -1``) are zeroed here.
        classes: ``(B, C')`` explained classes, -1 padded.
        logits: ``(B, C)`` (the explained classifier's logits).
        num_classes: C.
        threshold: the τ the mask was made with (recorded).
        classifier_logits: ``(B, C)``, default ``logits``.
    """
    B, Cp = classes.shape
    T = features.magnitude.shape[-1]
    if mask.shape != (B, Cp, *features.magnitude.shape[-2:]):
        raise ValueError(f"mask must be (B={B}, C'={Cp}, F, T={T}) like the magnitude, got {tuple(mask.shape)}")
    valid = (classes >= 0)[..., None, None]
    mask = torch.nan_to_num(mask.float(), nan=0.0).clamp(0.0, 1.0) * valid
    audio, residual = synthesize(frontend, mask, features.magnitude, features.phase, features.waveform.shape[-1])
    pad = (classes < 0)[..., None]
    dev = mask.device
    return Interpretation(
        classes=classes,
        relevance=torch.zeros(B, num_classes, 0, device=dev),
        components=torch.zeros(B, num_classes, 0, dtype=torch.bool, device=dev),
        mask=mask,
        audio=audio.masked_fill(pad, 0.0),
        residual=residual.masked_fill(pad, 0.0),
        activations=torch.zeros(B, 0, T, device=dev),
        logits=logits,
        classifier_logits=logits if classifier_logits is None else classifier_logits,
        threshold=float(threshold),
        sample_rate=int(frontend.config.sample_rate),
    )


class ClassifierBaseline(nn.Module):
    """A baseline that explains a classifier f it holds fixed. f is seen through the project's one adapter,
    :class:`l2i.classifier.FrozenClassifier` (``self.classifier``, built with ``freeze=True``: no gradient to its
    weights, always eval). ``frontend``, ``backbone``, ``task`` and ``num_classes`` read f's, as the evaluation
    suite looks for them."""

    classifier: FrozenClassifier

    def _init_classifier(self, frontend: nn.Module, backbone: nn.Module, task: str, num_classes: int | None) -> None:
        self.classifier = FrozenClassifier(frontend, backbone, task, num_classes, freeze=True)
        if self.classifier.num_classes is None:
            raise ValueError("num_classes not given and the backbone has no final nn.Linear to read it from")
        self.register_buffer(
            "_mel_fbanks", frontend.mel_fbanks.detach().clone().float(), persistent=False
        )

    @property
    def frontend(self) -> nn.Module:
        return self.classifier.frontend

    @property
    def backbone(self) -> nn.Module:
        return self.classifier.backbone

    @property
    def task(self) -> str:
        return self.classifier.task

    @property
    def num_classes(self) -> int:
        return self.classifier.num_classes


def check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not 0 <= t < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    return t


class SourcesObserver:
    """For oracle baselines that need the clips' true sources while being called with waveforms only (as the
    evaluation suite calls every interpreter): the sources come as keyword arguments to ``interpret`` or from the
    last batch given to :meth:`observe` whose waveform is the one interpreted (wrap a loader with
    :meth:`observing`)."""

    _observed: dict | None = None

    def observe(self, batch: dict) -> None:
        """Remember ``batch`` (``waveform``, ``sources``, ``source_labels``[, ``source_targets``])."""
        for key in ("waveform", "sources", "source_labels"):
            if key not in batch:
                raise KeyError(f"{type(self).__name__} needs batch[{key!r}] (clips with known sources)")
        self._observed = {k: batch[k] for k in ("waveform", "sources", "source_labels", "source_targets") if k in batch}

    def observing(self, loader):
        """Yield ``loader``'s batches, observing each one first."""
        for batch in loader:
            self.observe(batch)
            yield batch

    def _sources_for(self, waveform: Tensor, sources: Tensor | None, source_labels: Tensor | None,
                     source_targets: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """The given sources, else the observed batch's when its waveform is ``waveform``."""
        if sources is not None and source_labels is not None:
            return sources, source_labels, source_targets
        obs = self._observed
        if obs is not None:
            ref = obs["waveform"].to(waveform.device).float()
            if ref.shape == waveform.shape and torch.equal(ref, waveform.float()):
                return obs["sources"], obs["source_labels"], obs.get("source_targets")
        raise ValueError(
            f"{type(self).__name__} needs the clips' sources: pass sources=/source_labels= to interpret, or observe(batch) "
            "with the batch being interpreted (noisy or altered waveforms have no known sources)"
        )
