"""The by-design model (stage 2b) in pure torch: the NMF-activation bottleneck trained with the backbone.

Same graph as the post-hoc interpreter — front-end -> backbone -> tapped hidden maps -> Ψ -> activations
``H ≥ 0`` -> Θ, decoder ``W H ≈ log1p|X|`` — but the backbone trains too, and (``mode="bottleneck"``)
**Θ(H) is the model's prediction**. ``mode="joint"`` is the FLINT-style variant: the backbone keeps its own
head, trained on the task, and Θ(H) is trained in the same optimisation to agree with it (fidelity loss; the
backbone's logits are the detached target, while Ψ's gradients still reach the backbone's hidden layers).

Losses (:func:`bydesign_losses`), each a scalar:

* ``task``: cross-entropy (multiclass) or binary cross-entropy with optional per-class positive weights
  (multilabel) of the prediction — Θ(H) in ``bottleneck`` mode, the backbone's head in ``joint`` mode;
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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from l2i.backbones import capture_hidden
from l2i.frontend import AudioFrontEnd
from l2i.interpreter.posthoc import PostHocInterpreter, PostHocOutput, interpreter_losses

__all__ = ["ByDesignModel", "bydesign_losses", "MODES"]

MODES = ("bottleneck", "joint")


def bydesign_losses(out: PostHocOutput, target: Tensor, task: str, mode: str, pos_weight: Tensor | None = None,
                    teacher_logits: Tensor | None = None) -> dict[str, Tensor]:
    """``{"task", "reconstruction", "sparsity"}`` (+ ``"fidelity"`` in joint mode, + ``"distillation"`` when
    ``teacher_logits (B, C)`` are given); see the module docstring.

    ``target``: class indices ``(B,)`` (multiclass) or multi-hot ``(B, C)`` (multilabel).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    losses = interpreter_losses(out, task)
    prediction = out.logits if mode == "bottleneck" else out.classifier_logits
    if task == "multiclass":
        losses["task"] = F.cross_entropy(prediction, target)
    else:
        losses["task"] = F.binary_cross_entropy_with_logits(prediction, target.float(), pos_weight=pos_weight)
    if mode == "bottleneck":
        del losses["fidelity"]  # the bottleneck *is* the prediction: nothing to agree with
    if teacher_logits is not None:
        teacher = teacher_logits.detach()
        if task == "multiclass":
            losses["distillation"] = -(teacher.softmax(-1) * out.logits.log_softmax(-1)).sum(-1).mean()
        else:
            losses["distillation"] = F.binary_cross_entropy_with_logits(out.logits, teacher.sigmoid())
    return losses


class ByDesignModel(PostHocInterpreter):
    """``forward(waveform (B, samples)) -> PostHocOutput`` with gradients through the backbone.

    ``output.logits`` is Θ(H); ``output.classifier_logits`` is the model's prediction: Θ(H) itself in
    ``bottleneck`` mode, the backbone's own head in ``joint`` mode. ``interpret(...)`` explains that
    prediction (same API and shapes as the post-hoc interpreter).

    Args: as :class:`~l2i.interpreter.posthoc.PostHocInterpreter`, plus ``mode`` (``bottleneck`` | ``joint``).
    The backbone is trained (its batch norm follows ``train()``); the front-end stays frozen. In
    ``bottleneck`` mode the backbone's own head is unused and frozen (DDP needs every trainable parameter
    to receive a gradient).
    """

    def __init__(
        self,
        frontend: AudioFrontEnd,
        backbone: nn.Module,
        dictionary: Tensor,
        num_classes: int,
        task: Literal["multiclass", "multilabel"] = "multiclass",
        mode: Literal["bottleneck", "joint"] = "bottleneck",
        layers: Sequence[str] | None = None,
        **kwargs,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        super().__init__(frontend, backbone, dictionary, num_classes, task=task, layers=layers, **kwargs)
        self.mode = mode
        self.backbone.requires_grad_(True)
        if mode == "bottleneck":
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
        if self.mode == "bottleneck":
            out.classifier_logits = out.logits
        return out

    def predict_logmel(self, logmel: Tensor) -> Tensor:
        """The model's prediction from a log-mel batch ``(B, n_mels, T)``: Θ(Ψ(maps)) (bottleneck) or the
        backbone's head (joint). Lets evaluation classify masked spectrograms."""
        head, maps = self.classify_logmel(logmel)
        if self.mode == "joint":
            return head
        return self.theta(self.psi(maps, logmel.shape[-1]))[0]
