"""The losses of the interpreters and their epoch schedule, in pure torch (no Lightning).

* :func:`interpreter_losses`: the post-hoc interpreter's three losses of docs/method.md (fidelity,
  reconstruction, sparsity) and the optional L1 on Θ's class weights (``theta_sparsity``);
* :func:`bydesign_losses`: the by-design model's (the task loss, and fidelity in the ``joint`` variant);
* :class:`LossSchedule`: their weights by epoch (``loss_weights`` of the LightningModules), the default
  :data:`AUTHORS_ESC50_SCHEDULE`. The weighted sum is formed by the LightningModules, which log each λ.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

import torch.nn.functional as F
from torch import Tensor

__all__ = ["AUTHORS_ESC50_SCHEDULE", "LOSS_NAMES", "OPTIONAL_LOSSES", "BLOCK_GATES", "LossSchedule", "interpreter_losses",
           "gated_block_loss", "VARIANTS",
           "bydesign_losses", "ForwardOutput"]


class ForwardOutput(Protocol):
    """What the losses read of a forward pass (:class:`~l2i.interpreter.posthoc.PostHocOutput`): ``features``
    (its ``nmf``, ``V = log1p|X|`` ``(B, F, T)``), ``classifier_logits (B, C)``, ``activations H (B, K, T)``,
    ``logits`` Θ(H) ``(B, C)``, ``reconstruction W H (B, F, T)``."""

    features: Any
    classifier_logits: Tensor
    activations: Tensor
    logits: Tensor
    reconstruction: Tensor


#: λ per loss as ``{loss: {first epoch: weight}}``, the project's default: the authors' ESC-50 weights
#: (reconstruction 5.0, fidelity 0.5 then 1.0 from epoch 20, sparsity 0.4) after one reconstruction-only epoch 0
#: (their code has no such epoch: see :data:`~l2i.interpreter.protocol.AUTHORS_PROTOCOL_SCHEDULE`, the
#: ``authors`` protocol).
AUTHORS_ESC50_SCHEDULE: dict[str, dict[int, float]] = {
    "reconstruction": {0: 5.0},
    "fidelity": {1: 0.5, 20: 1.0},
    "sparsity": {1: 0.4},
}
LOSS_NAMES = ("fidelity", "reconstruction", "sparsity", "theta_sparsity", "block_gate", "distillation")
#: losses beyond docs/method.md: weighted (and in :meth:`LossSchedule.weights`) only when a schedule names them
#: (``distillation`` exists for the by-design model only, :func:`bydesign_losses`)
OPTIONAL_LOSSES = ("theta_sparsity", "block_gate", "distillation")
#: how :func:`gated_block_loss` weighs a class's block from the classifier's probability p_c: ``soft`` (1 - p_c)
#: or ``hard`` (1 where p_c <= the gate threshold, else 0)
BLOCK_GATES = ("soft", "hard")


class LossSchedule:
    """Loss weights by epoch: ``{loss: {first_epoch: weight, …}}``; before a loss's first key its weight is 0.

    ``weights(epoch) -> {"fidelity": λ_fid, "reconstruction": λ_rec, "sparsity": λ_spa}``. Keys may be
    strings of integers (YAML); a bare number means "this weight from epoch 0". ``names``: the losses a schedule
    may name (default the interpreters' :data:`LOSS_NAMES`; L-MAC's decoder gives its own, see
    :data:`~l2i.baselines.lmac.LMAC_DEFAULT_WEIGHTS`); ``optional``: those weighted only when named.
    """

    def __init__(self, schedule: Mapping[str, Mapping[int, float] | float] | None = None,
                 names: Sequence[str] = LOSS_NAMES, optional: Sequence[str] = OPTIONAL_LOSSES):
        schedule = AUTHORS_ESC50_SCHEDULE if schedule is None else schedule
        self.names, self.optional = tuple(names), tuple(optional)
        unknown = set(schedule) - set(self.names)
        if unknown:
            raise ValueError(f"loss_weights: unknown loss(es) {sorted(unknown)}; known: {list(self.names)}")
        self.schedule: dict[str, list[tuple[int, float]]] = {}
        for name in self.names:
            spec = schedule.get(name, {})
            if isinstance(spec, (int, float)):
                spec = {0: float(spec)}
            steps = []
            for epoch, weight in spec.items():
                try:
                    e, w = int(epoch), float(weight)
                except (TypeError, ValueError) as err:
                    raise ValueError(f"loss_weights.{name}: entries must be epoch: weight, got {epoch!r}: {weight!r}") from err
                if e < 0 or not w >= 0 or w != w or w == float("inf"):
                    raise ValueError(f"loss_weights.{name}: epoch must be >= 0 and weight finite >= 0, got {epoch}: {weight}")
                steps.append((e, w))
            self.schedule[name] = sorted(steps)

    def weights(self, epoch: int) -> dict[str, float]:
        """``{loss: λ}`` at ``epoch`` for the three losses of docs/method.md, and for an optional loss (e.g.
        ``theta_sparsity``) only when the schedule names it; a loss without a weight counts 0."""
        out = {}
        for name, steps in self.schedule.items():
            if name in self.optional and not steps:
                continue
            w = 0.0
            for e, value in steps:
                if epoch >= e:
                    w = value
            out[name] = w
        return out

    def to_dict(self) -> dict[str, dict[int, float]]:
        return {name: dict(steps) for name, steps in self.schedule.items() if steps}


def interpreter_losses(
    out: ForwardOutput, task: str, class_weights: Tensor | None = None, evidence: Tensor | None = None
) -> dict[str, Tensor]:
    """The three losses of docs/method.md, each a scalar, and an optional fourth on Θ.

    * ``fidelity``: multiclass — cross-entropy between softmax(Θ(H)) and softmax(f(x)) (f detached);
      multilabel — binary cross-entropy between sigmoid(Θ(H)) and sigmoid(f(x));
    * ``reconstruction``: mean squared error between ``W H`` and ``V = log1p|X|``;
    * ``sparsity``: mean of ``|H|`` (over the rows of ``evidence``, a ``(K,)`` bool, when given: the
      components that may carry class evidence; the noise components that reconstruct the background are
      then free, see :class:`~l2i.interpreter.theta.Theta`);
    * ``theta_sparsity`` (when ``class_weights`` θ ``(C, K)`` is given): mean of ``|θ|``, an L1 penalty on Θ's
      (centred) class weights. Not in docs/method.md: it makes each class rest on few components, so the relevance
      ``z_k θ_ck`` of the components that merely co-occur with a class (a distractor, the background) falls to
      about 0 and the chosen set is the class's own. On the synthetic default (max pooling, the weight from
      epoch 0, class blocks learnt on the clips) it takes the interpretation's SI-SDR against the true target
      from below the mixture's (the paper's settings) to above it at the same fidelity; the measured figures
      are the README's (section "Headline figures"). Not named in the
      schedule (the default) it is not weighted: the authors' method.
    """
    target = out.classifier_logits.detach()
    if task == "multiclass":
        fidelity = -(target.softmax(-1) * out.logits.log_softmax(-1)).sum(-1).mean()
    elif task == "multilabel":
        fidelity = F.binary_cross_entropy_with_logits(out.logits, target.sigmoid())
    else:
        raise ValueError(f"task must be multiclass|multilabel, got {task!r}")
    losses = {
        "fidelity": fidelity,
        "reconstruction": F.mse_loss(out.reconstruction, out.features.nmf),
        "sparsity": (out.activations if evidence is None else out.activations[:, evidence]).abs().mean(),
    }
    if class_weights is not None:
        losses["theta_sparsity"] = class_weights.abs().mean()
    return losses



def gated_block_loss(activations: Tensor, blocks: Tensor, classifier_logits: Tensor, gate: str = "hard",
                     threshold: float = 0.2) -> Tensor:
    """The classifier-gated block loss, a scalar: the activations of class c's block penalised in proportion to
    how far the frozen classifier is from detecting c.

    ``activations H (B, K, T)``, ``blocks (C, K)`` bool (class c's components; a component of no class, noise or
    shared, is never penalised), ``classifier_logits (B, C)`` (multilabel, detached here). Per clip and class the
    gate is ``g_bc = 1 - sigmoid(f(x))_c`` (``soft``) or ``g_bc = [sigmoid(f(x))_c <= threshold]`` (``hard``); the
    loss is the mean over ``(B, K, T)`` of ``g_b,c(k) · |H_bkt|``. Beside the reconstruction loss it makes Ψ
    explain the clip with the blocks of the classes the classifier detects, so Ψ's own activations carry the
    separation that :meth:`PostHocInterpreter.refine_activations` computes with ``refine_gate="classifier"``.
    Not in docs/method.md.
    """
    if gate not in BLOCK_GATES:
        raise ValueError(f"block_gate must be one of {', '.join(BLOCK_GATES)}, got {gate!r}")
    if blocks.dim() != 2 or blocks.shape != (classifier_logits.shape[-1], activations.shape[1]):
        raise ValueError(f"gated_block_loss: blocks must be (C={classifier_logits.shape[-1]}, K={activations.shape[1]}), "
                         f"got {tuple(blocks.shape)}")
    p = classifier_logits.detach().sigmoid()
    g = 1.0 - p if gate == "soft" else (p <= float(threshold)).to(activations.dtype)
    weight = g @ blocks.to(activations.dtype)  # (B, K): a component belongs to at most one class
    return (weight[..., None] * activations.abs()).mean()


#: the by-design model's variants: Θ(H) is the prediction (``bottleneck``) or agrees with the backbone's head (``joint``)
VARIANTS = ("bottleneck", "joint")


def bydesign_losses(out: ForwardOutput, target: Tensor, task: str, variant: str, pos_weight: Tensor | None = None,
                    teacher_logits: Tensor | None = None) -> dict[str, Tensor]:
    """The by-design model's losses: ``{"task", "reconstruction", "sparsity"}`` (+ ``"fidelity"`` in the ``joint``
    variant, + ``"distillation"`` when ``teacher_logits (B, C)`` are given), each a scalar (see
    :mod:`l2i.interpreter.bydesign`):

    * ``task``: cross-entropy (multiclass) or binary cross-entropy with optional per-class ``pos_weight``
      (multilabel) of the prediction — Θ(H) in the ``bottleneck`` variant, the backbone's head in ``joint``;
    * ``fidelity`` (``joint`` only), ``reconstruction``, ``sparsity``: as :func:`interpreter_losses`;
    * ``distillation``: Θ(H) against a frozen copy of the black box the model started from (its detached
      ``teacher_logits``), as the post-hoc fidelity (softmax cross-entropy / sigmoid BCE). Not in docs/method.md.

    ``target``: class indices ``(B,)`` (multiclass) or multi-hot ``(B, C)`` (multilabel).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    losses = interpreter_losses(out, task)
    prediction = out.logits if variant == "bottleneck" else out.classifier_logits
    if task == "multiclass":
        losses["task"] = F.cross_entropy(prediction, target)
    else:
        losses["task"] = F.binary_cross_entropy_with_logits(prediction, target.float(), pos_weight=pos_weight)
    if variant == "bottleneck":
        del losses["fidelity"]  # the bottleneck *is* the prediction: nothing to agree with
    if teacher_logits is not None:
        teacher = teacher_logits.detach()
        if task == "multiclass":
            losses["distillation"] = -(teacher.softmax(-1) * out.logits.log_softmax(-1)).sum(-1).mean()
        else:
            losses["distillation"] = F.binary_cross_entropy_with_logits(out.logits, teacher.sigmoid())
    return losses
