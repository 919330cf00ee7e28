"""The by-design model (stage 2b) in pure torch: the NMF-activation bottleneck trained with the backbone.

Same graph as the post-hoc interpreter — front-end -> backbone -> tapped hidden maps -> Ψ -> activations
``H ≥ 0`` -> Θ, decoder ``W H ≈ log1p|X|`` — but the backbone trains too, and (``variant="bottleneck"``)
**Θ(H) is the model's prediction**. ``variant="joint"`` is the FLINT-style variant: the backbone keeps its own
head, trained on the task, and Θ(H) is trained in the same optimisation to agree with it (fidelity loss; the
backbone's logits are the detached target, while Ψ's gradients still reach the backbone's hidden layers).

Losses (:func:`~l2i.interpreter.losses.bydesign_losses`, re-exported here), each a scalar:

* ``task``: cross-entropy (multiclass) or binary cross-entropy with optional per-class positive weights
  (multilabel) of the prediction — Θ(H) in the ``bottleneck`` variant, the backbone's head in ``joint``;
* ``fidelity`` (``joint`` only): as in the post-hoc interpreter, Θ(H) against the backbone's output;
* ``reconstruction``: mean squared error of ``W H`` against ``V = log1p|X|``;
* ``sparsity``: mean ``|H|``;
* ``distillation`` (when the black box's logits are given, ``teacher_logits``): Θ(H) against a frozen copy of
  the classifier the model started from, as the post-hoc fidelity (softmax cross-entropy / sigmoid BCE). Not in
  docs/method.md: it keeps the bottleneck's prediction close to the black box's while the labels train it.

No Lightning here.
"""

from __future__ import annotations

from typing import Literal, Sequence

from torch import Tensor, nn

from l2i.backbones import capture_hidden
from l2i.frontend import AudioFrontEnd
from l2i.interpreter.losses import VARIANTS, bydesign_losses
from l2i.interpreter.posthoc import PostHocInterpreter, PostHocOutput

__all__ = ["ByDesignModel", "bydesign_losses", "VARIANTS"]


class ByDesignModel(PostHocInterpreter):
    """``forward(waveform (B, samples)) -> PostHocOutput`` with gradients through the backbone.

    ``output.logits`` is Θ(H); ``output.classifier_logits`` is the model's prediction: Θ(H) itself in
    the ``bottleneck`` variant, the backbone's own head in ``joint``. ``interpret(...)`` explains that
    prediction (same API and shapes as the post-hoc interpreter).

    Args: as :class:`~l2i.interpreter.posthoc.PostHocInterpreter`, plus ``variant`` (``bottleneck`` | ``joint``;
    the name the LightningModule and its configs use).
    The backbone is trained (its batch norm follows ``train()``); the front-end stays frozen. In
    the ``bottleneck`` variant the backbone's own head is unused and frozen (DDP needs every trainable parameter
    to receive a gradient).
    """

    def __init__(
        self,
        frontend: AudioFrontEnd,
        backbone: nn.Module,
        dictionary: Tensor,
        num_classes: int,
        task: Literal["multiclass", "multilabel"] = "multiclass",
        variant: Literal["bottleneck", "joint"] = "bottleneck",
        layers: Sequence[str] | None = None,
        **kwargs,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        super().__init__(frontend, backbone, dictionary, num_classes, task=task, layers=layers, **kwargs)
        self.variant = variant
        self.backbone.requires_grad_(True)
        if variant == "bottleneck":
            modules = dict(self.backbone.named_modules())
            for name in getattr(self.backbone, "head_names", ()):
                modules[name].requires_grad_(False)

    def train(self, mode: bool = True) -> "ByDesignModel":
        nn.Module.train(self, mode)  # the backbone trains (batch norm moves); only the front-end is fixed
        self.frontend.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def classify_logmel(self, logmel: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``logmel (B, n_mels, T)`` -> the backbone's head logits ``(B, C)`` and its tapped maps (with grad)."""
        with capture_hidden(self.backbone, self.layers) as maps:
            logits = self.backbone(logmel)
        return logits, dict(maps)

    def forward(self, waveform: Tensor, sample_rate: int | None = None) -> PostHocOutput:
        out = super().forward(waveform, sample_rate)
        if self.variant == "bottleneck":
            out.classifier_logits = out.logits
        return out

    def predict_logmel(self, logmel: Tensor) -> Tensor:
        """The model's prediction from a log-mel batch ``(B, n_mels, T)``: Θ(Ψ(maps)) (bottleneck) or the
        backbone's head (joint). Lets evaluation classify masked spectrograms."""
        head, maps = self.classify_logmel(logmel)
        if self.variant == "joint":
            return head
        return self.theta(self.psi(maps, logmel.shape[-1]))[0]
