"""Component baselines on the post-hoc interpreter's dictionary W and activations H (same masks, same synthesis
as L2I; only the chosen set differs):

* :class:`RandomComponents` — the null model: as many components as L2I chooses for the (clip, class), drawn
  at random (seeded generator, reproducible);
* :class:`AllComponents` — every component: the mask is 1 wherever W H > 0, so the "interpretation" is the
  input (up to the STFT round trip) — the trivial upper bound of energy;
* :class:`OracleComponents` — chosen **with the ground truth**: component k is kept for class c when the
  majority (``min_share``) of its share of the mixture, ``V ⊙ w_k h_kᵀ / (W H)``, lies in the bins where
  the true source of c dominates the rest of the mixture (ideal binary mask ``|S_c| > |X − S_c|``) — the
  ceiling any component-selecting interpreter can reach with this dictionary and these activations.

All take the post-hoc model (a :class:`~l2i.interpreter.posthoc.PostHocInterpreter`, or a module holding one as
``.interpreter`` / ``.model``: ``PostHocInterpreterModule``, ``ByDesignModule``). ``relevance`` is the post-hoc
relevance of the same clips (what L2I would have said); ``components`` is the baseline's set; ``logits`` are
Θ(H) (so fidelity equals L2I's).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from l2i.baselines.common import SourcesObserver
from l2i.evaluation.ground_truth import class_sources
from l2i.interpreter.interpretation import EPS, Interpretation, build_interpretation, random_components, select_classes

__all__ = ["RandomComponents", "AllComponents", "OracleComponents", "posthoc_net", "oracle_components"]


def posthoc_net(model) -> nn.Module:
    """The :class:`~l2i.interpreter.posthoc.PostHocInterpreter` inside ``model`` (itself, ``.interpreter`` or ``.model``)."""
    for obj in (model, getattr(model, "interpreter", None), getattr(model, "model", None)):
        if obj is not None and hasattr(obj, "theta") and hasattr(obj, "dictionary") and hasattr(obj, "psi"):
            return obj
    raise TypeError(f"{type(model).__name__} holds no post-hoc interpreter (Ψ, Θ, dictionary)")


class _ComponentBaseline(nn.Module):
    name = "components"

    def __init__(self, posthoc, class_threshold: float | None = None):
        super().__init__()
        self.net = posthoc_net(posthoc)
        hp = getattr(posthoc, "hparams", None)
        default = hp.get("class_threshold", 0.5) if hasattr(hp, "get") else 0.5
        self.class_threshold = default if class_threshold is None else class_threshold
        self.task = self.net.task
        self.num_classes = self.net.num_classes
        self.settings: dict = {}

    @property
    def frontend(self):
        return self.net.frontend

    def _build(self, out, classes: Tensor, components: Tensor, threshold: float) -> Interpretation:
        net = self.net
        return build_interpretation(
            frontend=net.frontend, features=out.features, dictionary=net.dictionary, activations=out.activations,
            pooled=out.pooled, class_weights=net.theta.class_weights, logits=out.logits, classes=classes,
            classifier_logits=out.classifier_logits, threshold=threshold, components=components,
        )

    def _forward(self, waveform: Tensor, target, sample_rate, class_threshold):
        self.net.eval()
        out = self.net(waveform, sample_rate)
        thr = self.class_threshold if class_threshold is None else class_threshold
        classes = select_classes(out.classifier_logits, self.task, target, thr)
        return out, classes


class RandomComponents(_ComponentBaseline):
    """As many random components per (clip, class) as the post-hoc interpreter chooses at τ.

    Args:
        posthoc: the post-hoc model (see the module docstring).
        seed: seed of the generator (CPU); the n-th call always draws the same sets.
        among: ``all`` (the null model: any of the K components) or ``active`` (only the clip's active
            components, pooled activation > 0). Most components are silent in a given clip, so ``all`` mostly
            draws silent ones and gives an almost empty mask — which mask-size scores (SPS, COMP) rank as
            "sparse"; ``active`` is the harder null model those scores can be read against.
    """

    name = "random_components"

    def __init__(self, posthoc, seed: int = 0, class_threshold: float | None = None, among: str = "all"):
        super().__init__(posthoc, class_threshold)
        if among not in ("all", "active"):
            raise ValueError(f"random components: among must be 'all' or 'active', got {among!r}")
        self.seed = int(seed)
        self.among = among
        self.generator = torch.Generator().manual_seed(self.seed)
        self.settings = {"seed": self.seed, "among": among}

    @torch.no_grad()
    def interpret(self, waveform: Tensor, target: Tensor | int | Sequence[int] | None = None, threshold: float = 0.2, *,
                  sample_rate: int | None = None, class_threshold: float | Tensor | None = None) -> Interpretation:
        """``waveform (B, N)`` -> :class:`Interpretation` with random components (count matched to L2I's)."""
        out, classes = self._forward(waveform, target, sample_rate, class_threshold)
        chosen = self._build(out, classes, None, threshold).components  # L2I's sets at τ, (B, C, K)
        eligible = (out.pooled > 0)[:, None, :] if self.among == "active" else None
        return self._build(out, classes, random_components(chosen, self.generator, eligible), threshold)


class AllComponents(_ComponentBaseline):
    """Every component chosen, for every class (interpretation = the input)."""

    name = "all_components"

    @torch.no_grad()
    def interpret(self, waveform: Tensor, target: Tensor | int | Sequence[int] | None = None, threshold: float = 0.2, *,
                  sample_rate: int | None = None, class_threshold: float | Tensor | None = None) -> Interpretation:
        out, classes = self._forward(waveform, target, sample_rate, class_threshold)
        B, K = out.activations.shape[:2]
        return self._build(out, classes, torch.ones(B, self.num_classes, K, dtype=torch.bool, device=out.activations.device), threshold)


def oracle_components(
    dictionary: Tensor, activations: Tensor, nmf_spectrum: Tensor, source_magnitude: Tensor, rest_magnitude: Tensor,
    min_share: float = 0.5,
) -> Tensor:
    """Components whose share of the mixture lies mostly in the true source's support.

    Args:
        dictionary: ``W (F, K)``; activations: ``H (B, K, T)``; nmf_spectrum: ``V (B, F, T)``.
        source_magnitude, rest_magnitude: ``(B, C', F, T)`` STFT magnitudes of each explained class's source
            and of the rest of the mixture.
        min_share: fraction of the component's share that must lie in the support ``|S| > |rest|``.

    Returns:
        ``(B, C', K)`` bool. No ``(B, K, F, T)`` tensor is formed: the sums are contracted in one einsum each.
    """
    support = (source_magnitude > rest_magnitude).to(activations.dtype)  # (B, C', F, T)
    full = torch.einsum("fk,bkt->bft", dictionary, activations)
    ratio = nmf_spectrum / (full + EPS)  # V / (W H), (B, F, T)
    total = torch.einsum("fk,bft,bkt->bk", dictionary, ratio, activations)  # Σ_ft V_k
    inside = torch.einsum("fk,bcft,bft,bkt->bck", dictionary, support, ratio, activations)
    share = torch.where(total[:, None] > 0, inside / total[:, None].clamp_min(EPS), torch.zeros_like(inside))
    return (share > float(min_share)) & (total[:, None] > 0)


class OracleComponents(SourcesObserver, _ComponentBaseline):
    """Components chosen with the true sources (see :func:`oracle_components`).

    The sources come as keyword arguments (``sources (B, S, N)``, ``source_labels (B, S)``, optional
    ``source_targets (B, S, C)``) or from the last batch given to :meth:`observe` whose waveform is the one
    interpreted (so the evaluation suite, which passes only waveforms, can use it: wrap its loader with
    :meth:`observing`). Classes without a source in the clip get no component (a silent interpretation).
    """

    name = "oracle_components"

    def __init__(self, posthoc, min_share: float = 0.5, class_threshold: float | None = None):
        super().__init__(posthoc, class_threshold)
        if not 0 <= float(min_share) < 1:
            raise ValueError(f"oracle: min_share must be in [0, 1), got {min_share}")
        self.min_share = float(min_share)
        self.settings = {"min_share": self.min_share}

    @torch.no_grad()
    def interpret(self, waveform: Tensor, target: Tensor | int | Sequence[int] | None = None, threshold: float = 0.2, *,
                  sample_rate: int | None = None, class_threshold: float | Tensor | None = None,
                  sources: Tensor | None = None, source_labels: Tensor | None = None,
                  source_targets: Tensor | None = None) -> Interpretation:
        """``waveform (B, N)`` -> :class:`Interpretation` whose components are chosen with the true sources."""
        sources, source_labels, source_targets = self._sources_for(waveform, sources, source_labels, source_targets)
        out, classes = self._forward(waveform, target, sample_rate, class_threshold)
        device = out.activations.device
        x = out.features.waveform.float()
        src = class_sources(sources.to(device).float(), source_labels.to(device), classes,
                            None if source_targets is None else source_targets.to(device))
        N = min(src.shape[-1], x.shape[-1])
        src = torch.nn.functional.pad(src[..., :N], (0, x.shape[-1] - N))
        B, Cp = classes.shape
        fe = self.net.frontend
        spec_src = fe.stft(src.reshape(B * Cp, -1)).abs().reshape(B, Cp, *out.features.magnitude.shape[-2:])
        spec_rest = fe.stft((x[:, None] - src).reshape(B * Cp, -1)).abs().reshape_as(spec_src)
        chosen = oracle_components(self.net.dictionary, out.activations, out.features.nmf, spec_src, spec_rest, self.min_share)
        chosen = chosen & (classes >= 0)[..., None]
        K = out.activations.shape[1]
        comp = torch.zeros(B, self.num_classes, K, device=device)
        idx = classes.clamp_min(0)[..., None].expand(B, Cp, K)
        comp.scatter_reduce_(1, idx, chosen.float(), reduce="amax")  # padded slots are all False: no effect
        return self._build(out, classes, comp > 0, threshold)
