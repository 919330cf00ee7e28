"""The interpreter's pure-torch parts (no Lightning): Ψ (activations from the classifier's hidden maps), Θ
(pooling + bias-free linear on the activations), the post-hoc interpreter and the interpretation math.

``interpret(waveform (B, samples), target=None, threshold=0.2) -> Interpretation`` is the one verb every
interpreter implements (see :mod:`l2i.interpreter.interpretation`).
"""

from l2i.interpreter.interpretation import (
    Interpretation,
    Interpreter,
    build_interpretation,
    choose_components,
    component_share,
    magnitude_mask,
    random_components,
    relevance_scores,
    select_classes,
    synthesize,
)

__all__ = [
    "Interpretation",
    "Interpreter",
    "build_interpretation",
    "choose_components",
    "component_share",
    "magnitude_mask",
    "random_components",
    "relevance_scores",
    "select_classes",
    "synthesize",
]
