"""Baseline interpreters behind the project's one verb, for the benchmark (pure torch + Captum, no Lightning).

``interpret(waveform (B, N), target=None, threshold=0.2) -> Interpretation`` — listenable: a mask on the STFT
magnitude with the input phase, inverse STFT.

* attributions on the log-mel input through Captum, mapped to a linear-frequency mask
  (:mod:`l2i.baselines.attribution`): ``saliency``, ``integrated_gradients``, ``gradcam``, ``occlusion``;
* the L-MAC-style mask decoder (:mod:`l2i.baselines.lmac`; trained by ``lightning_modules.LMACModule``): ``lmac``;
* component sets on the post-hoc interpreter's dictionary and activations (:mod:`l2i.baselines.components`):
  ``random_components``, ``all_components``, ``oracle_components`` (chosen with the true sources);
* the oracle ideal ratio mask computed from the true sources (:mod:`l2i.baselines.oracle`): ``ideal_ratio_mask``.

Component-free baselines carry ``relevance`` / ``components`` of shape ``(B, C, 0)`` (see
:mod:`l2i.baselines.common`). :func:`build_baseline` makes one by name.
"""

from __future__ import annotations

from l2i.baselines.attribution import (
    AttributionInterpreter,
    GradCAMInterpreter,
    IntegratedGradientsInterpreter,
    OcclusionInterpreter,
    SaliencyInterpreter,
)
from l2i.baselines.common import attribution_mask, mask_interpretation, mel_to_linear, mel_to_linear_matrix
from l2i.baselines.components import AllComponents, OracleComponents, RandomComponents, oracle_components, posthoc_net
from l2i.baselines.lmac import LMACDecoder, LMACInterpreter
from l2i.baselines.oracle import IdealRatioMask

__all__ = [
    "AttributionInterpreter",
    "SaliencyInterpreter",
    "IntegratedGradientsInterpreter",
    "GradCAMInterpreter",
    "OcclusionInterpreter",
    "LMACDecoder",
    "LMACInterpreter",
    "RandomComponents",
    "AllComponents",
    "OracleComponents",
    "IdealRatioMask",
    "oracle_components",
    "posthoc_net",
    "attribution_mask",
    "mask_interpretation",
    "mel_to_linear",
    "mel_to_linear_matrix",
    "ATTRIBUTIONS",
    "SOURCE_ORACLES",
    "COMPONENT_BASELINES",
    "build_baseline",
]

#: Captum attribution baselines by name
ATTRIBUTIONS = {
    "saliency": SaliencyInterpreter,
    "integrated_gradients": IntegratedGradientsInterpreter,
    "gradcam": GradCAMInterpreter,
    "occlusion": OcclusionInterpreter,
}
#: baselines on the classifier's STFT that need the clips' true sources, by name
SOURCE_ORACLES = {"ideal_ratio_mask": IdealRatioMask}
#: baselines on the post-hoc interpreter's components by name
COMPONENT_BASELINES = {
    "random_components": RandomComponents,
    "all_components": AllComponents,
    "oracle_components": OracleComponents,
}


def build_baseline(name: str, *, classifier=None, posthoc=None, **kwargs):
    """A baseline interpreter by name.

    Args:
        name: a key of :data:`ATTRIBUTIONS` or :data:`SOURCE_ORACLES` (needs ``classifier``: anything with ``frontend``, ``backbone``,
            ``task``, ``num_classes``, e.g. ``ClassifierModule``) or of :data:`COMPONENT_BASELINES` (needs
            ``posthoc``: the post-hoc model).
        kwargs: the baseline's own arguments (e.g. ``n_steps``, ``patch``, ``layer``, ``mask``, ``seed``).
    """
    if name in ATTRIBUTIONS or name in SOURCE_ORACLES:
        if classifier is None:
            raise ValueError(f"baseline {name!r} needs the classifier (frontend + backbone)")
        return {**ATTRIBUTIONS, **SOURCE_ORACLES}[name](classifier.frontend, classifier.backbone, classifier.task,
                                  getattr(classifier, "num_classes", None), **kwargs)
    if name in COMPONENT_BASELINES:
        if posthoc is None:
            raise ValueError(f"baseline {name!r} needs the post-hoc interpreter (its dictionary and activations)")
        return COMPONENT_BASELINES[name](posthoc, **kwargs)
    raise ValueError(f"unknown baseline {name!r}; known: {sorted({*ATTRIBUTIONS, *SOURCE_ORACLES, *COMPONENT_BASELINES, 'lmac'})}")
