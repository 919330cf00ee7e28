"""The interpretation of a decision: container, the one-verb interpreter API, and the math.

Every interpreter of the project (post-hoc L2I, the by-design model, baselines) implements one verb::

    interpret(waveform (B, samples), target=None, threshold=0.2) -> Interpretation

batched and on the device of the model. ``target=None`` explains the classifier's own prediction
(multiclass: the arg-max class; multilabel: every class whose probability is above its class threshold).

The math (docs/method.md, "Interpretation of a decision"), for a clip with NMF-domain spectrum ``V = log1p|X|``
(F x T), dictionary ``W`` (F x K), activations ``H`` (K x T), pooled activations ``z`` (K) and the
bias-free class weights ``theta`` (C x K) of the interpreter's classifier:

1. relevance ``r_ck = z_k theta_ck / max_k (z_k theta_ck)`` (negative values clipped to 0; a class with no
   positive evidence gets all-zero relevance, never NaN);
2. chosen components ``S_c = {k : r_ck > tau}`` (``tau = threshold``);
3. share of the chosen components in every time-frequency bin: ``M_c = (W_S H_S) / (W H + eps)`` in [0, 1];
4. interpretation magnitude ``expm1(M_c * V)`` (the chosen components' part of V, back from log1p), i.e. the
   soft mask on the magnitude ``mask_c = expm1(M_c * V) / |X|`` in [0, 1];
5. interpretation waveform = iSTFT(``mask_c * |X|``, input phase); residual waveform = iSTFT(``(1 - mask_c)
   * |X|``, input phase), so interpretation + residual = the input up to the STFT round trip.

No Python loop over components: for every (clip, class) the chosen components are *gathered* (at most
``max_chosen`` of them, the largest number chosen in the batch) and multiplied in one batched einsum; the
loop the authors' code runs over ~10 chosen components is cheaper than weighting all K, and the gather keeps
that advantage while batching clips and classes.

Pure torch; no Lightning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "Interpretation",
    "Interpreter",
    "relevance_scores",
    "select_classes",
    "choose_components",
    "random_components",
    "component_share",
    "magnitude_mask",
    "sharpen_share",
    "synthesize",
    "build_interpretation",
]

#: floor of the decoder output W H in the share (keeps silent bins at share 0, never NaN)
EPS = 1e-8


@dataclass
class Interpretation:
    """Interpretations of a batch of clips, per explained class, on the model's device.

    Shapes (``B`` clips, ``C`` classes of the task, ``C'`` explained classes per clip, ``K`` components,
    ``F`` frequency bins, ``T`` STFT frames, ``N`` samples):

    Attributes:
        classes: ``(B, C')`` int64, the explained class indices; ``-1`` pads clips with fewer classes
            (multilabel). Every other per-class field follows this order; padded slots hold zeros.
        relevance: ``(B, C, K)`` relevance of every component for **every** class, divided by its maximum
            over components (values in [0, 1]; a class with no positive evidence is all zeros).
        components: ``(B, C, K)`` bool, the chosen components (``relevance > threshold``) of every class.
        mask: ``(B, C', F, T)`` soft mask on the input magnitude ``|X|`` (values in [0, 1]) of the
            explained classes: the interpretation's magnitude is ``mask * |X|``.
        audio: ``(B, C', N)`` interpretation waveforms (input phase, inverse STFT).
        residual: ``(B, C', N)`` what is left: iSTFT of ``(1 - mask) * |X|``; ``audio + residual`` is the input
            up to the STFT round trip.
        activations: ``(B, K, T)`` the NMF activations ``H`` of the clips (T = NMF frames).
        logits: ``(B, C)`` the interpreter's logits ``Θ(H)``.
        classifier_logits: ``(B, C)`` the explained classifier's logits (``None`` when the interpreter is
            the classifier, e.g. the by-design model).
        threshold: the relevance threshold τ used for ``components``.
        sample_rate: rate of ``audio`` / ``residual`` (Hz).
    """

    classes: Tensor
    relevance: Tensor
    components: Tensor
    mask: Tensor
    audio: Tensor
    residual: Tensor
    activations: Tensor
    logits: Tensor
    classifier_logits: Tensor | None = None
    threshold: float = 0.2
    sample_rate: int | None = None

    def __post_init__(self) -> None:
        B, Cp = self.classes.shape
        if self.relevance.dim() != 3 or self.relevance.shape[0] != B:
            raise ValueError(f"Interpretation.relevance must be (B={B}, C, K), got {tuple(self.relevance.shape)}")
        if self.components.shape != self.relevance.shape:
            raise ValueError(
                f"Interpretation.components {tuple(self.components.shape)} must match relevance {tuple(self.relevance.shape)}"
            )
        for name in ("mask", "audio", "residual"):
            t = getattr(self, name)
            if t.shape[:2] != (B, Cp):
                raise ValueError(f"Interpretation.{name} must start with (B={B}, C'={Cp}), got {tuple(t.shape)}")

    # -- convenience -------------------------------------------------------------------------------------
    @property
    def num_clips(self) -> int:
        return int(self.classes.shape[0])

    @property
    def valid(self) -> Tensor:
        """``(B, C')`` bool: which explained-class slots are real (not ``-1`` padding)."""
        return self.classes >= 0

    def explained(self, field: str) -> Tensor:
        """A per-class ``(B, C, …)`` field (``relevance`` or ``components``) for the explained classes only:
        ``(B, C', …)``, padded slots zero."""
        t = getattr(self, field)
        idx = self.classes.clamp_min(0)
        out = torch.take_along_dim(t, idx.view(*idx.shape, *([1] * (t.dim() - 2))), dim=1)
        return out * self.valid.view(*self.valid.shape, *([1] * (t.dim() - 2))).to(out.dtype)

    @property
    def num_chosen(self) -> Tensor:
        """``(B, C')`` number of chosen components of each explained class (0 for padding)."""
        return self.explained("components").sum(-1)

    def to(self, device: torch.device | str) -> "Interpretation":
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        return Interpretation(**{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in kw.items()})

    def detach(self) -> "Interpretation":
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        return Interpretation(**{k: (v.detach() if torch.is_tensor(v) else v) for k, v in kw.items()})


@runtime_checkable
class Interpreter(Protocol):
    """What every interpreter implements (post-hoc, by-design, baselines)."""

    def interpret(
        self,
        waveform: Tensor,
        target: Tensor | int | Sequence[int] | None = None,
        threshold: float = 0.2,
    ) -> Interpretation:
        """``waveform (B, samples)`` at the model's rate -> :class:`Interpretation`.

        ``target``: ``None`` (the classifier's prediction), an int (same class for every clip), ``(B,)`` class
        indices, ``(B, C')`` class indices padded with -1, or a ``(B, C)`` multi-hot tensor (bool/float).
        ``threshold``: relevance threshold τ for choosing components.
        """
        ...


# -- the math ---------------------------------------------------------------------------------------------


def relevance_scores(pooled: Tensor, class_weights: Tensor) -> Tensor:
    """Relevance of every component for every class.

    Args:
        pooled: ``(B, K)`` pooled activations ``z`` (Θ's pooling of H).
        class_weights: ``(C, K)`` bias-free linear weights θ of Θ.

    Returns:
        ``(B, C, K)``: ``max(z_k θ_ck, 0) / max_k max(z_k θ_ck, 0)``; all zeros for a class whose every
        contribution is ≤ 0 (no NaN).
    """
    if pooled.dim() != 2 or class_weights.dim() != 2 or pooled.shape[1] != class_weights.shape[1]:
        raise ValueError(
            f"relevance: pooled must be (B, K) and class_weights (C, K) with the same K, got "
            f"{tuple(pooled.shape)} and {tuple(class_weights.shape)}"
        )
    r = (pooled[:, None, :] * class_weights[None, :, :]).clamp_min(0)
    peak = r.amax(dim=-1, keepdim=True)
    return torch.where(peak > 0, r / peak.clamp_min(torch.finfo(r.dtype).tiny), torch.zeros_like(r))


def select_classes(
    classifier_logits: Tensor,
    task: Literal["multiclass", "multilabel"],
    target: Tensor | int | Sequence[int] | None = None,
    class_threshold: float | Tensor = 0.5,
) -> Tensor:
    """The classes to explain, ``(B, C')`` int64 padded with -1.

    Args:
        classifier_logits: ``(B, C)``.
        task: ``multiclass`` or ``multilabel``.
        target: ``None`` -> multiclass: ``argmax`` (C' = 1); multilabel: every class whose sigmoid
            probability exceeds ``class_threshold`` (C' = the most classes of any clip, at least 1; a clip
            with none explains its most probable class). Otherwise an int, a ``(B,)`` index tensor, a
            ``(B, C')`` index tensor padded with -1, or a ``(B, C)`` multi-hot tensor (bool or float; only
            if ``C' != C`` is ambiguous, a float/bool tensor of shape (B, C) is read as multi-hot).
        class_threshold: multilabel decision threshold, a float or a ``(C,)`` tensor.
    """
    B, C = classifier_logits.shape
    device = classifier_logits.device
    if target is None:
        if task == "multiclass":
            return classifier_logits.argmax(-1, keepdim=True)
        thr = torch.as_tensor(class_threshold, dtype=classifier_logits.dtype, device=device)
        active = classifier_logits.sigmoid() > thr
        none = ~active.any(-1)
        if bool(none.any()):
            active = active | (none[:, None] & torch.nn.functional.one_hot(classifier_logits.argmax(-1), C).bool())
        return _multi_hot_to_indices(active)
    if isinstance(target, int):
        target = torch.full((B,), int(target), dtype=torch.long, device=device)
    if not torch.is_tensor(target):
        target = torch.as_tensor(list(target), device=device)
    target = target.to(device)
    if target.dim() == 1:
        if target.shape[0] != B:
            raise ValueError(f"target has {target.shape[0]} entries for a batch of {B} clips")
        classes = target.long()[:, None]
    elif target.dim() == 2 and target.shape[0] == B and (target.dtype == torch.bool or target.is_floating_point()):
        if target.shape[1] != C:
            raise ValueError(f"multi-hot target must be (B, C={C}), got {tuple(target.shape)}")
        classes = _multi_hot_to_indices(target > 0.5 if target.is_floating_point() else target)
    elif target.dim() == 2 and target.shape[0] == B:
        classes = target.long()
    else:
        raise ValueError(f"target must be None, an int, (B,) indices, (B, C') indices or (B, C) multi-hot; got {tuple(target.shape)}")
    bad = (classes >= C) | (classes < -1)
    if bool(bad.any()):
        raise ValueError(f"target class index out of range [0, {C}) (or -1 padding): {classes[bad].unique().tolist()}")
    return classes


def _multi_hot_to_indices(active: Tensor) -> Tensor:
    """``(B, C)`` bool -> ``(B, C')`` indices of the True entries, ascending, padded with -1 (C' >= 1)."""
    B, C = active.shape
    n = max(int(active.sum(-1).max()), 1) if B else 1
    ar = torch.arange(C, device=active.device).expand(B, C)
    key = torch.where(active, ar, ar + C)  # True entries first, in class order
    idx = key.sort(-1).values[:, :n]
    return torch.where(idx < C, idx, torch.full_like(idx, -1))


def choose_components(relevance: Tensor, threshold: float, top_k: int | None = None) -> Tensor:
    """``(B, C, K)`` relevance -> ``(B, C, K)`` bool, ``relevance > threshold``.

    ``top_k``: keep at most the ``top_k`` most relevant of those (the authors' interpretation audio: the top 5
    by relevance that also exceed τ); ties at the cut are broken towards the lower component index.
    """
    if not 0 <= float(threshold) < 1:
        raise ValueError(f"relevance threshold must be in [0, 1), got {threshold}")
    chosen = relevance > float(threshold)
    if top_k is None:
        return chosen
    if int(top_k) < 1:
        raise ValueError(f"top_k must be a positive number of components (or None), got {top_k}")
    k = min(int(top_k), relevance.shape[-1])
    # stable descending sort: equal relevances keep component order, so the cut is deterministic
    order = relevance.float().argsort(dim=-1, descending=True, stable=True)
    rank = order.argsort(dim=-1)
    return chosen & (rank < k)


def random_components(chosen: Tensor, generator: torch.Generator | None = None, among: Tensor | None = None) -> Tensor:
    """A random component set with the same number of components per row as ``chosen`` (``(…, K)`` bool).

    The baseline of the ground-truth and faithfulness checks. Drawn on the CPU generator, moved to the
    device of ``chosen``. ``among``: optional ``(…, K)`` bool (broadcastable) of the eligible components (e.g.
    the clip's active ones); the draw takes eligible components first and only tops up with others when a
    row has fewer eligible components than it must choose.
    """
    n = chosen.sum(-1, keepdim=True)
    keys = torch.rand(chosen.shape, generator=generator).to(chosen.device)
    if among is not None:
        keys = keys + (~among.to(chosen.device).expand_as(chosen)).to(keys.dtype)  # eligible keys < 1 <= others
    ranks = keys.argsort(-1).argsort(-1)  # a random permutation rank per component
    return ranks < n


def component_share(
    dictionary: Tensor, activations: Tensor, chosen: Tensor, weights: Tensor | None = None, eps: float = EPS
) -> Tensor:
    """Share of the chosen components in every bin: ``(W_S H_S) / (W H + eps)``.

    Args:
        dictionary: ``W (F, K)``.
        activations: ``H (B, K, T)``.
        chosen: ``(B, C', K)`` bool, the components of each (clip, explained class).
        weights: optional ``(B, C', K)`` weights of the chosen components (e.g. the relevance, for a
            relevance-weighted interpretation); default 1.
        eps: floor of the denominator.

    Returns:
        ``(B, C', F, T)`` in [0, 1] (exactly, when weights ≤ 1).
    The chosen components are gathered (at most ``max(|S|)`` per row), never looped over.
    """
    B, Cp, K = chosen.shape
    F, T = dictionary.shape[0], activations.shape[-1]
    if activations.shape[:2] != (B, K) or dictionary.shape[1] != K:
        raise ValueError(
            f"component_share: W {tuple(dictionary.shape)}, H {tuple(activations.shape)} and chosen "
            f"{tuple(chosen.shape)} disagree on B or K"
        )
    full = torch.einsum("fk,bkt->bft", dictionary, activations)  # W H, (B, F, T)
    m = int(chosen.sum(-1).max()) if chosen.numel() else 0
    if m == 0:
        return full.new_zeros(B, Cp, F, T)
    w = chosen.to(activations.dtype) if weights is None else weights.to(activations.dtype) * chosen
    vals, idx = w.topk(m, dim=-1)  # (B, C', m): the chosen ones (and zeros where fewer are chosen)
    Ws = dictionary.t()[idx]  # (B, C', m, F)
    Hs = torch.take_along_dim(activations[:, None], idx[..., None], dim=2)  # (B, C', m, T)
    part = torch.einsum("bcmf,bcm,bcmt->bcft", Ws, vals, Hs)
    return (part / (full[:, None] + eps)).clamp(0.0, 1.0)


def sharpen_share(share: Tensor, power: float = 1.0) -> Tensor:
    """The share raised to ``power`` against the rest: ``s^p / (s^p + (1 - s)^p)`` (Wiener-style sharpening).

    The two parts are the chosen components (c's, e.g. c's whole block) and everything else the decoder puts in
    the bin (``W H - W_S H_S``: every other component together, not each other class's block on its own), so
    with ``s = W_S H_S / W H`` this is ``(W_S H_S)^p / ((W_S H_S)^p + (W H - W_S H_S)^p)``; ``p = 2`` is the
    ratio of the two power estimates. ``p > 1`` moves a bin towards the part that dominates it (share above 1/2
    towards 1, below towards 0), ``p = 1`` returns ``share`` itself (the same tensor), a bin at share 0 stays 0.

    Args:
        share: ``(B, C', F, T)`` in [0, 1], from :func:`component_share`.
        power: ``p > 0``.

    Returns:
        ``(B, C', F, T)`` in [0, 1].
    """
    p = float(power)
    if not math.isfinite(p) or p <= 0:
        raise ValueError(f"mask_power must be a finite number > 0, got {power!r}")
    if p == 1.0:
        return share
    part, rest = share.pow(p), (1.0 - share).clamp_min(0.0).pow(p)
    return (part / (part + rest)).clamp(0.0, 1.0)  # part + rest >= 2^(1-p) > 0 for share in [0, 1]


def magnitude_mask(share: Tensor, nmf_spectrum: Tensor, magnitude: Tensor, mode: str = "log1p") -> Tensor:
    """The soft mask on the magnitude from the chosen components' share of V.

    Args:
        share: ``(B, C', F, T)`` from :func:`component_share`.
        nmf_spectrum: ``V = log1p|X|`` ``(B, F, T)``.
        magnitude: ``|X|`` ``(B, F, T)``.
        mode: ``log1p`` (docs/method.md: interpretation magnitude ``expm1(share * V)``, so
            ``mask = expm1(share * V) / |X|``), ``share`` (the share itself applied to |X|, a Wiener-like
            mask) or ``magnitude`` (the share taken back to magnitudes: the chosen part ``share * V`` and the
            rest ``(1 - share) * V`` of the log1p spectrum each through ``expm1``, ``mask = expm1(sV) /
            (expm1(sV) + expm1((1 - s)V))``; log1p compresses, so a part that dominates a bin in magnitude gets
            a share of V well below 1, and this mask gives it back its magnitude ratio).

    Returns:
        ``(B, C', F, T)`` in [0, 1].
    """
    if mode == "share":
        return share
    if mode == "magnitude":
        V = nmf_spectrum[:, None]
        part, rest = torch.expm1(share * V), torch.expm1((1 - share) * V)
        total = part + rest
        return torch.where(total > 0, part / total.clamp_min(torch.finfo(total.dtype).tiny), share).clamp(0.0, 1.0)
    if mode != "log1p":
        raise ValueError(f"mask mode must be 'log1p', 'share' or 'magnitude', got {mode!r}")
    mag = magnitude[:, None]
    num = torch.expm1(share * nmf_spectrum[:, None])
    return torch.where(mag > 0, num / mag.clamp_min(torch.finfo(mag.dtype).tiny), torch.zeros_like(num)).clamp(0.0, 1.0)


def synthesize(frontend, mask: Tensor, magnitude: Tensor, phase: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Interpretation and residual waveforms, ``(B, C', N)`` each, by one batched inverse STFT.

    ``frontend`` is an :class:`~l2i.frontend.AudioFrontEnd`; ``mask (B, C', F, T)``, ``magnitude`` and
    ``phase`` ``(B, F, T)``.
    """
    B, Cp, F, T = mask.shape
    mag = magnitude[:, None]
    ph = phase[:, None].expand(B, Cp, F, T).reshape(B * Cp, F, T)
    both_mag = torch.cat([(mask * mag).reshape(B * Cp, F, T), ((1 - mask) * mag).reshape(B * Cp, F, T)])
    wav = frontend.inverse(both_mag, torch.cat([ph, ph]), length=length)  # one iSTFT for all
    audio, residual = wav.split(B * Cp)
    return audio.reshape(B, Cp, -1), residual.reshape(B, Cp, -1)


def build_interpretation(
    *,
    frontend,
    features,
    dictionary: Tensor,
    activations: Tensor,
    pooled: Tensor,
    class_weights: Tensor,
    logits: Tensor,
    classes: Tensor,
    classifier_logits: Tensor | None = None,
    threshold: float = 0.2,
    mask_mode: str = "log1p",
    relevance_weighted: bool = False,
    components: Tensor | None = None,
    top_k: int | None = None,
    eps: float = EPS,
    mask_power: float = 1.0,
) -> Interpretation:
    """Assemble an :class:`Interpretation` from what any NMF-bottleneck interpreter computes.

    Args:
        frontend: the :class:`~l2i.frontend.AudioFrontEnd` (inverse STFT).
        features: the batch's :class:`~l2i.frontend.Features` (``nmf``, ``magnitude``, ``phase``,
            ``waveform``).
        dictionary: ``W (F, K)``; activations: ``H (B, K, T)``; pooled: ``z (B, K)``; class_weights:
            ``θ (C, K)``; logits: ``(B, C)`` interpreter logits; classes: ``(B, C')`` explained classes
            (-1 padded).
        threshold: relevance threshold τ.
        mask_mode: see :func:`magnitude_mask`.
        relevance_weighted: weight the chosen components by their relevance instead of 1.
        components: optional ``(B, C, K)`` bool to use instead of ``relevance > threshold`` (e.g. random
            components of a baseline).
        top_k: at most this many chosen components per class, the most relevant (see :func:`choose_components`).
        eps: floor of ``W H`` in the share (see :func:`component_share`; the authors' code uses 1e-6).
        mask_power: the share sharpened against the rest before the mask (see :func:`sharpen_share`); default
            1: the share as it is.
    """
    relevance = relevance_scores(pooled, class_weights)
    chosen_all = choose_components(relevance, threshold, top_k) if components is None else components.bool()
    valid = classes >= 0
    idx = classes.clamp_min(0)[..., None].expand(*classes.shape, relevance.shape[-1])
    chosen = torch.take_along_dim(chosen_all, idx, dim=1) & valid[..., None]  # (B, C', K)
    weights = torch.take_along_dim(relevance, idx, dim=1) if relevance_weighted else None
    share = sharpen_share(component_share(dictionary, activations, chosen, weights, eps=eps), mask_power)
    mask = magnitude_mask(share, features.nmf, features.magnitude, mask_mode)
    audio, residual = synthesize(frontend, mask, features.magnitude, features.phase, features.waveform.shape[-1])
    pad = (~valid)[..., None]
    return Interpretation(
        classes=classes,
        relevance=relevance,
        components=chosen_all,
        mask=mask,
        audio=audio.masked_fill(pad, 0.0),
        residual=residual.masked_fill(pad, 0.0),
        activations=activations,
        logits=logits,
        classifier_logits=classifier_logits,
        threshold=float(threshold),
        sample_rate=int(frontend.config.sample_rate),
    )
