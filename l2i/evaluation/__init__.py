"""The evaluation suite: one ``torchmetrics.Metric`` per metric family (DDP-safe states), pure torch.

* :class:`~l2i.evaluation.fidelity.Fidelity` — interpreter vs classifier agreement (top-1/top-k; multilabel F1 /
  accuracy with per-class thresholds, :func:`~l2i.evaluation.fidelity.tune_thresholds`);
* :class:`~l2i.evaluation.faithfulness.Faithfulness` — drop of f when the chosen vs random components are removed;
* :class:`~l2i.evaluation.mask.MaskMetrics` — L-MAC's AI, AD, AG, FF, Fid-In, SPS, COMP;
* :class:`~l2i.evaluation.ground_truth.GroundTruth` — the ground-truth report: SI-SDR of the interpretation of
  every class present against its true source, next to the mixture, another present class's interpretation
  (specificity), random / all components and the ideal ratio mask; single- and multi-source clips apart;
* :class:`~l2i.evaluation.noise.NoiseRobustness` — the same under white noise at an SNR;
* :class:`~l2i.evaluation.overlap.OverlapMixtures` — A + λ·B mixtures from any labelled dataset;
* :func:`~l2i.evaluation.suite.evaluate_interpreter` — all of it over a dataloader -> one flat dict.

This package is the project's one evaluator: every figure (fidelity, faithfulness, ground truth) has its one
definition here, and the Lightning modules, callbacks and experiments only call it.
"""

from l2i.evaluation.faithfulness import Faithfulness, removal_drops
from l2i.evaluation.fidelity import Fidelity, tune_thresholds
from l2i.evaluation.ground_truth import (
    GroundTruth,
    class_sources,
    ideal_ratio_mask,
    other_class_slots,
    present_classes,
    random_active_components,
    si_sdr,
    support_energy_fraction,
)
from l2i.evaluation.mask import MaskMetrics, complexity, sparseness
from l2i.evaluation.noise import NoiseRobustness, add_white_noise
from l2i.evaluation.overlap import OverlapMixtures
from l2i.evaluation.suite import (
    DESCRIPTIONS,
    evaluate_interpreter,
    ground_truth_markdown,
    results_markdown,
    tune_interpreter_thresholds,
)

__all__ = [
    "Fidelity",
    "tune_thresholds",
    "Faithfulness",
    "removal_drops",
    "MaskMetrics",
    "sparseness",
    "complexity",
    "GroundTruth",
    "class_sources",
    "si_sdr",
    "support_energy_fraction",
    "present_classes",
    "other_class_slots",
    "ideal_ratio_mask",
    "random_active_components",
    "NoiseRobustness",
    "add_white_noise",
    "OverlapMixtures",
    "evaluate_interpreter",
    "tune_interpreter_thresholds",
    "results_markdown",
    "ground_truth_markdown",
    "DESCRIPTIONS",
]
