"""Ground-truth scores of listenable interpretations on mixtures with known sources (ours; docs/method.md, "Metrics").

On a mixture whose sources are known (synthetic data, or two real clips mixed as in the paper's "overlap"
experiment), the interpretation for class ``c`` should sound like the sum of the sources of class ``c``:

* ``SI-SDR(interpretation, s_c)`` — the interpretation's score;
* ``SI-SDR(mixture, s_c)`` — what doing nothing scores;
* ``SI-SDR(random-component interpretation, s_c)`` — what the same number of random components scores.

Pure torch; :class:`GroundTruthSISDR` is a ``torchmetrics.Metric`` (sums and counts, DDP-reduced by sum). SI-SDR and
the class's true source are :func:`l2i.evaluation.ground_truth.si_sdr` / ``class_sources``, so the post-hoc
stage's figures and the evaluation suite's / benchmark's are computed alike (a silent interpretation scores
``SILENT_DB`` there, not the ~0 dB an epsilon gives).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

# one SI-SDR and one "true source of a class" for the whole project (the evaluation suite's and the benchmark's)
from l2i.evaluation.ground_truth import class_sources, si_sdr

__all__ = ["si_sdr", "class_references", "GroundTruthSISDR"]


def class_references(sources: Tensor, source_labels: Tensor, classes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The true source of every explained class, and which (clip, class) pairs can be scored.

    Args:
        sources: ``(B, S, N)`` event waveforms (zero rows for empty slots).
        source_labels: ``(B, S)`` class of each source, -1 for empty slots.
        classes: ``(B, C')`` explained classes, -1 padded.

    Returns:
        ``reference (B, C', N)`` (sum of the sources of the class), ``present (B, C')`` (the class has a
        non-silent source in the clip), ``has_other (B, C')`` (another class's event is in the clip too: a
        distractor / overlapping source).
    """
    if sources.dim() != 3 or source_labels.shape != sources.shape[:2] or classes.shape[0] != sources.shape[0]:
        raise ValueError(
            f"class_references: sources (B, S, N), source_labels (B, S), classes (B, C') expected; got "
            f"{tuple(sources.shape)}, {tuple(source_labels.shape)}, {tuple(classes.shape)}"
        )
    labels = source_labels.to(classes.device)
    match = (labels[:, None, :] == classes[:, :, None]) & (classes[:, :, None] >= 0)  # (B, C', S)
    reference = class_sources(sources.to(classes.device), labels, classes)
    present = match.any(-1) & (reference.abs().amax(-1) > 0)
    other = (labels[:, None, :] >= 0) & ~match
    return reference, present, other.any(-1) & (classes >= 0)


class GroundTruthSISDR(Metric):
    """Mean SI-SDR (dB) against the true source of the explained class, of the interpretation, the mixture
    and a random-component interpretation.

    ``update(interpretation (B, C', N), mixture (B, N), reference (B, C', N), valid (B, C') bool,
    random (B, C', N) | None)``; ``compute() -> {"interpretation", "mixture", "random", "over_mixture",
    "over_random", "count"}`` (means in dB over valid pairs; NaN-free: 0 when nothing was scored).
    """

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("interpretation", "mixture", "random", "count", "count_random"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self, interpretation: Tensor, mixture: Tensor, reference: Tensor, valid: Tensor, random: Tensor | None = None
    ) -> None:
        if interpretation.shape != reference.shape:
            raise ValueError(f"interpretation {tuple(interpretation.shape)} and reference {tuple(reference.shape)} differ")
        v = valid.bool()
        if not bool(v.any()):
            return
        mix = mixture[:, None].expand_as(reference)
        self.interpretation += si_sdr(interpretation[v], reference[v]).double().sum()
        self.mixture += si_sdr(mix[v], reference[v]).double().sum()
        self.count += float(v.sum())
        if random is not None:
            self.random += si_sdr(random[v], reference[v]).double().sum()
            self.count_random += float(v.sum())

    def compute(self) -> dict[str, Tensor]:
        n = self.count.clamp_min(1)
        nr = self.count_random.clamp_min(1)
        out = {
            "interpretation": self.interpretation / n,
            "mixture": self.mixture / n,
            "random": self.random / nr,
            "count": self.count,
        }
        out["over_mixture"] = out["interpretation"] - out["mixture"]
        out["over_random"] = out["interpretation"] - out["random"]
        return {k: v.float() for k, v in out.items()}
