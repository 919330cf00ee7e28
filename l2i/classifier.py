"""The classifier f being explained, as every part of the project sees it: one protocol, one adapter.

A :class:`Classifier` maps ``waveform (B, N) -> logits (B, C)`` and exposes its ``frontend`` (the
:class:`~l2i.frontend.AudioFrontEnd` whose log-mel it reads), its ``backbone`` (``logmel (B, n_mels, T) ->
logits (B, C)``, so evaluation can classify masked spectrograms), its ``task`` (``multiclass`` |
``multilabel``), ``num_classes`` and ``class_names``. A trained ``ClassifierModule`` is one; any other model is
seen as one through :class:`FrozenClassifier` (a front-end plus a log-mel predictor) or :func:`classifier_of`.
The baselines (:mod:`l2i.baselines`) hold the f they explain as a ``FrozenClassifier(..., freeze=True)``: no
gradient reaches its weights and it stays in eval mode (batch-norm statistics and dropout never move).
No Lightning here.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

from torch import Tensor, nn

__all__ = ["Classifier", "FrozenClassifier", "LogmelPredictor", "classifier_of"]


@runtime_checkable
class Classifier(Protocol):
    """``waveform (B, N) -> logits (B, C)`` with ``frontend``, ``backbone`` (log-mel -> logits), ``task``,
    ``num_classes`` and ``class_names``."""

    frontend: nn.Module
    backbone: Callable[[Tensor], Tensor]
    task: str
    num_classes: int
    class_names: Sequence[str]

    def __call__(self, waveform: Tensor, sample_rate: int | None = None) -> Tensor: ...


class LogmelPredictor(nn.Module):
    """``logmel (B, n_mels, T) -> logits (B, C)`` of a model that predicts from log-mel input through its
    ``predict_logmel`` (a by-design model: Θ(H) in bottleneck mode, its backbone's head in joint mode)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, logmel: Tensor) -> Tensor:
        return self.model.predict_logmel(logmel)


class FrozenClassifier(nn.Module):
    """A :class:`Classifier` from a front-end and a log-mel predictor: ``forward(waveform, sample_rate=None) =
    backbone(frontend(waveform, sample_rate).logmel)``.

    Args:
        frontend: the model's :class:`~l2i.frontend.AudioFrontEnd`.
        backbone: ``logmel (B, n_mels, T) -> logits (B, C)`` (a classifier's CNN, or :class:`LogmelPredictor`).
        task: ``multiclass`` | ``multilabel``.
        num_classes, class_names: the label space (names default to ``"0" … "C-1"``; ``num_classes`` to the
            length of ``class_names``, else to the width of the backbone's last ``nn.Linear``).
        freeze: hold f fixed: its parameters get no gradient (gradients still flow to the *input*) and
            ``train()`` leaves it in eval mode. Off by default: a by-design model's view of itself keeps training.
    """

    def __init__(self, frontend: nn.Module, backbone: nn.Module, task: str, num_classes: int | None = None,
                 class_names: Sequence[str] | None = None, freeze: bool = False):
        super().__init__()
        if task not in ("multiclass", "multilabel"):
            raise ValueError(f"task must be multiclass|multilabel, got {task!r}")
        self.frontend, self.backbone, self.task = frontend, backbone, task
        if num_classes is None and class_names:
            num_classes = len(class_names)
        if num_classes is None and isinstance(backbone, nn.Module):
            fc = [m for m in backbone.modules() if isinstance(m, nn.Linear)]
            num_classes = fc[-1].out_features if fc else None
        self.num_classes = None if num_classes is None else int(num_classes)
        self.class_names = list(class_names) if class_names else (
            [str(i) for i in range(self.num_classes)] if self.num_classes is not None else [])
        self.frozen = bool(freeze)
        if self.frozen:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True):
        return super().train(mode and not self.frozen)

    def forward(self, waveform: Tensor, sample_rate: int | None = None) -> Tensor:
        return self.backbone(self.frontend(waveform, sample_rate).logmel)

    def classify_magnitude(self, magnitude: Tensor) -> Tensor:
        """``|X| (B, F, T)`` -> logits ``(B, C)`` through f's own log-mel (differentiable in ``|X|``)."""
        return self.backbone(self.frontend.logmel_from_magnitude(magnitude))


def classifier_of(model, what: str | None = None) -> Classifier:
    """The black box f of ``model``: its ``classifier`` when it has one (an ``nn.Module``), else a
    :class:`FrozenClassifier` of its ``frontend`` and ``backbone``. ``ValueError`` naming ``what`` (default: the
    model's class) when it exposes neither."""
    clf = getattr(model, "classifier", None)
    if isinstance(clf, nn.Module):
        return clf
    frontend, backbone = getattr(model, "frontend", None), getattr(model, "backbone", None)
    if frontend is not None and backbone is not None:
        return FrozenClassifier(frontend, backbone, getattr(model, "task", "multiclass"),
                                getattr(model, "num_classes", None), getattr(model, "class_names", None))
    raise ValueError(f"{what or type(model).__name__} exposes no classifier (`classifier`, or `frontend` + `backbone`)")
