"""The post-hoc interpreter (L2I, stage 2a) in pure torch: frozen classifier f -> Ψ -> H -> Θ, decoder W H.

:class:`PostHocInterpreter` holds the classifier's front-end and backbone (frozen, always in eval mode: its
batch-norm statistics never move, whatever ``.train()`` is called with), the NMF dictionary ``W (F, K)``
(a buffer, or a parameter kept non-negative and column-normalised by ReLU + normalisation when
``finetune_dictionary``), Ψ and Θ. :func:`interpreter_losses` gives the three losses of docs/method.md;
:class:`LossSchedule` their epoch-dependent weights. No Lightning here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from l2i.backbones import capture_hidden
from l2i.frontend import AudioFrontEnd, Features
from l2i.interpreter.interpretation import EPS, Interpretation, build_interpretation, select_classes
from l2i.interpreter.psi import AuthorsPsi, Psi, map_to_grid, map_to_sequence
from l2i.interpreter.theta import Theta

__all__ = ["PostHocInterpreter", "PostHocOutput", "LossSchedule", "interpreter_losses", "AUTHORS_ESC50_SCHEDULE", "default_layers",
           "gated_block_loss", "BLOCK_GATES",
           "INTERPRET_OPTIONS", "check_interpret_options",
           "merge_interpret_options"]

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
#: (``distillation`` exists for the by-design model only, :func:`~l2i.interpreter.bydesign.bydesign_losses`)
OPTIONAL_LOSSES = ("theta_sparsity", "block_gate", "distillation")
#: how :func:`gated_block_loss` weighs a class's block from the classifier's probability p_c: ``soft`` (1 - p_c)
#: or ``hard`` (1 where p_c <= the gate threshold, else 0)
BLOCK_GATES = ("soft", "hard")


class LossSchedule:
    """Loss weights by epoch: ``{loss: {first_epoch: weight, …}}``; before a loss's first key its weight is 0.

    ``weights(epoch) -> {"fidelity": λ_fid, "reconstruction": λ_rec, "sparsity": λ_spa}``. Keys may be
    strings of integers (YAML); a bare number means "this weight from epoch 0".
    """

    def __init__(self, schedule: Mapping[str, Mapping[int, float] | float] | None = None):
        schedule = AUTHORS_ESC50_SCHEDULE if schedule is None else schedule
        unknown = set(schedule) - set(LOSS_NAMES)
        if unknown:
            raise ValueError(f"loss_weights: unknown loss(es) {sorted(unknown)}; known: {list(LOSS_NAMES)}")
        self.schedule: dict[str, list[tuple[int, float]]] = {}
        for name in LOSS_NAMES:
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
            if name in OPTIONAL_LOSSES and not steps:
                continue
            w = 0.0
            for e, value in steps:
                if epoch >= e:
                    w = value
            out[name] = w
        return out

    def to_dict(self) -> dict[str, dict[int, float]]:
        return {name: dict(steps) for name, steps in self.schedule.items() if steps}


@dataclass
class PostHocOutput:
    """One forward pass: ``features`` (front-end), ``classifier_logits (B, C)``, ``activations H (B, K, T)``,
    ``logits (B, C)`` = Θ(H), ``pooled z (B, K)``, ``reconstruction W H (B, F, T)``."""

    features: Features
    classifier_logits: Tensor
    activations: Tensor
    logits: Tensor
    pooled: Tensor
    reconstruction: Tensor


def interpreter_losses(
    out: PostHocOutput, task: str, class_weights: Tensor | None = None, evidence: Tensor | None = None
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


def default_layers(backbone: nn.Module, maps: Mapping[str, Tensor] | None = None, count: int = 3, skip_last: int = 0) -> list[str]:
    """The last ``count`` tappable layers whose maps keep a time axis (4-D conv maps preferred), as the authors
    tap three convolutional blocks; ``skip_last``: leave out that many of the last ones first (the authors tap
    the three maps *before* the last conv layer: ``skip_last=1``; kept to at least one layer)."""
    names = list(getattr(backbone, "layer_names", ()))
    if maps is not None:
        conv = [n for n in names if n in maps and maps[n].dim() == 4]
        timed = conv or [n for n in names if n in maps and maps[n].dim() == 3]
        names = timed
    if not names:
        raise ValueError(f"{type(backbone).__name__} names no tappable layers (layer_names); give `layers` explicitly")
    skip = min(int(skip_last), len(names) - 1)
    names = names[: len(names) - skip]
    return names[-count:]


#: the interpretation options a trained post-hoc interpreter may carry (``interpret_options``) and their kinds:
#: a tuple lists the allowed values
INTERPRET_OPTIONS: dict[str, Any] = {
    "mask_mode": ("log1p", "share", "magnitude"),
    "relevance_weighted": bool,
    "top_k": int,
    "refine_iters": int,
    "refine_gate": ("interpreter", "classifier"),
    "refine_init": ("interpreter", "uniform"),
    "block_components": bool,
    "class_threshold": float,
}


def check_interpret_options(options: Mapping[str, Any] | None, where: str = "interpret_options",
                            block_evidence: bool | None = None) -> dict[str, Any]:
    """``options`` (keyword arguments of :meth:`PostHocInterpreter.interpret` kept with a trained interpreter)
    checked and normalised: a plain dict; ``None`` -> ``{}`` (the authors' interpretation). A wrong key or value
    raises one ``ValueError`` naming ``where``; ``block_components`` needs ``block_evidence`` (when known)."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(f"{where} must be a mapping of interpretation options, got {type(options).__name__}")
    out: dict[str, Any] = {}
    for key, value in options.items():
        kind = INTERPRET_OPTIONS.get(str(key))
        if kind is None:
            extra = " (the relevance threshold τ is the model's own `threshold`)" if key == "threshold" else ""
            raise ValueError(f"{where}.{key}: unknown interpretation option{extra}; known: {', '.join(INTERPRET_OPTIONS)}")
        if isinstance(kind, tuple):
            if value not in kind:
                raise ValueError(f"{where}.{key} must be one of {', '.join(kind)}, got {value!r}")
        elif kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{where}.{key} must be true or false, got {value!r}")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{where}.{key} must be a non-negative integer, got {value!r}")
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= float(value) <= 1:
                raise ValueError(f"{where}.{key} must be a number in [0, 1], got {value!r}")
            value = float(value)
        out[str(key)] = value
    if out.get("block_components") and block_evidence is False:
        raise ValueError(f"{where}.block_components needs Θ tied to class blocks (block_evidence: true)")
    return out


def merge_interpret_options(options: Mapping[str, Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of one ``interpret`` call: ``kwargs`` over the stored ``options`` (an argument given
    as ``None`` means "the model's own" and leaves a stored option in place)."""
    return {**options, **{k: v for k, v in kwargs.items() if v is not None or k not in options}}


class PostHocInterpreter(nn.Module):
    """``forward(waveform (B, samples)) -> PostHocOutput``; ``interpret(...) -> Interpretation``.

    Args:
        frontend: the classifier's :class:`~l2i.frontend.AudioFrontEnd` (frozen).
        backbone: the classifier's backbone, ``logmel (B, n_mels, T) -> logits (B, C)`` (frozen, eval).
        dictionary: ``W (F, K)``, non-negative; F must equal the front-end's frequency bins.
        num_classes: C.
        task: ``multiclass`` | ``multilabel``.
        layers: backbone modules to tap (default :func:`default_layers`: the last three conv blocks).
        hidden: Ψ width; psi_dropout: dropout in Ψ.
        pooling, attention_dim: Θ's pooling (``attention`` | ``max`` | ``mean``).
        finetune_dictionary: train W too (kept ≥ 0 by a ReLU, columns normalised to unit L2 norm).
        probe_frames: frames of the dummy input used to size Ψ (default: the front-end's clip length, or 128).
        evidence: ``(K,)`` bool, the components that may carry class evidence in Θ and count in the sparsity
            loss (default: all, the authors' method), or ``(C, K)`` per class; see :class:`~l2i.interpreter.theta.Theta`.
        psi_variant: ``project`` (:class:`~l2i.interpreter.psi.Psi`) or ``authors``
            (:class:`~l2i.interpreter.psi.AuthorsPsi`, the authors' architecture).
        skip_last_layers: with ``layers`` unset, tap the three blocks before the last ``skip_last_layers`` ones.
        attention_dropout: dropout on Θ's attention-branch input (see :class:`~l2i.interpreter.theta.Theta`).
        top_k: default cap on the components of an interpretation (``None``: every one with r > τ).
        share_eps: floor of ``W H`` in each component's share (default 1e-8; the authors' 1e-6).
        theta_bias: a per-class offset in Θ's logits, outside the relevance (default off: the authors' Θ).
        block_gate: ``soft`` | ``hard``: :meth:`losses` adds ``block_gate`` (:func:`gated_block_loss`, needs Θ
            tied to class blocks, ``evidence (C, K)``), weighted when the schedule names it; ``None`` (default):
            no such loss, the authors' method. block_gate_threshold: the ``hard`` gate's threshold.
    """

    def __init__(
        self,
        frontend: AudioFrontEnd,
        backbone: nn.Module,
        dictionary: Tensor,
        num_classes: int,
        task: Literal["multiclass", "multilabel"] = "multiclass",
        layers: Sequence[str] | None = None,
        hidden: int = 128,
        psi_dropout: float = 0.0,
        pooling: Literal["attention", "max", "mean"] = "attention",
        attention_dim: int = 256,
        finetune_dictionary: bool = False,
        probe_frames: int | None = None,
        evidence: Sequence[bool] | Tensor | None = None,
        psi_variant: Literal["project", "authors"] = "project",
        skip_last_layers: int = 0,
        attention_dropout: float = 0.0,
        top_k: int | None = None,
        share_eps: float = EPS,
        theta_bias: bool = False,
        block_gate: str | None = None,
        block_gate_threshold: float = 0.2,
    ):
        super().__init__()
        if block_gate is not None and block_gate not in BLOCK_GATES:
            raise ValueError(f"block_gate must be one of {', '.join(BLOCK_GATES)} (or None), got {block_gate!r}")
        if not 0.0 <= float(block_gate_threshold) <= 1.0:
            raise ValueError(f"block_gate_threshold must be in [0, 1], got {block_gate_threshold}")
        self.block_gate, self.block_gate_threshold = block_gate, float(block_gate_threshold)
        if psi_variant not in ("project", "authors"):
            raise ValueError(f"psi_variant must be project|authors, got {psi_variant!r}")
        if top_k is not None and int(top_k) < 1:
            raise ValueError(f"top_k must be a positive number of components (or None), got {top_k}")
        self.top_k = None if top_k is None else int(top_k)
        self.share_eps = float(share_eps)
        if task not in ("multiclass", "multilabel"):
            raise ValueError(f"task must be multiclass|multilabel, got {task!r}")
        W = torch.as_tensor(dictionary).detach().float()
        n_freq = frontend.config.n_freq
        if W.dim() != 2 or W.shape[0] != n_freq:
            raise ValueError(
                f"dictionary W must be (F={n_freq}, K) for the front-end (n_fft={frontend.config.n_fft}), "
                f"got {tuple(W.shape)}"
            )
        if not bool(torch.isfinite(W).all()) or bool((W < 0).any()):
            raise ValueError("dictionary W must be finite and non-negative")
        norms = W.norm(dim=0)
        if bool((norms == 0).any()):
            raise ValueError(f"dictionary W has all-zero column(s) {torch.nonzero(norms == 0).flatten().tolist()}")
        W = W / norms
        self.task = task
        self.num_classes = int(num_classes)
        self.n_components = int(W.shape[1])
        self.finetune_dictionary = bool(finetune_dictionary)
        self.frontend = frontend
        self.backbone = backbone
        self.frontend.requires_grad_(False)
        self.backbone.requires_grad_(False)
        if self.finetune_dictionary:
            self.dictionary_param = nn.Parameter(W.clone())
        else:
            self.register_buffer("dictionary_buffer", W.clone())
        self.conv_map_axes = getattr(backbone, "conv_map_axes", "BCFT")
        # size Ψ from one dummy forward through the frozen backbone
        cfg = frontend.config
        T = probe_frames or (cfg.num_frames() if cfg.num_samples else 128)
        T = max(int(T), int(getattr(backbone, "min_frames", 1)))
        device = next((p.device for p in backbone.parameters()), torch.device("cpu"))
        names = list(layers) if layers else list(getattr(backbone, "layer_names", ()))
        was_training = backbone.training
        backbone.eval()
        with torch.no_grad(), capture_hidden(backbone, names, detach=True) as maps:
            probe_logits = backbone(torch.zeros(2, cfg.n_mels, T, device=device))
        backbone.train(was_training)
        if probe_logits.shape[-1] != self.num_classes:
            raise ValueError(f"the classifier has {probe_logits.shape[-1]} outputs, num_classes is {self.num_classes}")
        self.layers = list(layers) if layers else default_layers(backbone, maps, skip_last=skip_last_layers)
        if psi_variant == "authors":
            missing = [n for n in self.layers if n not in maps]
            if missing:
                raise KeyError(f"layer(s) {missing} produced no output in the probe forward (is it used in forward?)")
            shapes = {n: tuple(map_to_grid(maps[n], self.conv_map_axes, n).shape[1:]) for n in self.layers}
            self.psi = AuthorsPsi(shapes, self.n_components, hidden=hidden, conv_map_axes=self.conv_map_axes)
        else:
            channels = {n: int(map_to_sequence(maps[n], self.conv_map_axes, n).shape[1]) for n in self.layers}
            self.psi = Psi(channels, self.n_components, hidden=hidden, conv_map_axes=self.conv_map_axes, dropout=psi_dropout)
        self.theta = Theta(self.n_components, self.num_classes, pooling=pooling, attention_dim=attention_dim,
                           center=task == "multiclass", evidence=evidence, attention_dropout=attention_dropout,
                           bias=theta_bias)
        if block_gate is not None and self.theta.evidence.dim() != 2:
            raise ValueError("block_gate needs Θ tied to class blocks (block_evidence: true)")
        self.psi.to(device)
        self.theta.to(device)
        self.train(self.training)

    # -- the frozen classifier stays frozen -----------------------------------------------------------
    def train(self, mode: bool = True) -> "PostHocInterpreter":
        """Ψ and Θ follow ``mode``; the classifier's front-end and backbone stay in eval mode (BN frozen)."""
        super().train(mode)
        self.frontend.eval()
        self.backbone.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Ψ, Θ and (when fine-tuned) the dictionary."""
        params = [*self.psi.parameters(), *self.theta.parameters()]
        if self.finetune_dictionary:
            params.append(self.dictionary_param)
        return params

    @property
    def dictionary(self) -> Tensor:
        """W ``(F, K)``, non-negative with unit-norm columns."""
        if self.finetune_dictionary:
            return F.normalize(torch.relu(self.dictionary_param), dim=0, eps=1e-12)
        return self.dictionary_buffer

    # -- forward ---------------------------------------------------------------------------------------
    def classify(self, features: Features) -> tuple[Tensor, dict[str, Tensor]]:
        """The frozen classifier on the batch's log-mel: logits ``(B, C)`` and the tapped maps (no grad)."""
        return self.classify_logmel(features.logmel)

    def classify_logmel(self, logmel: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``logmel (B, n_mels, T)`` -> the frozen classifier's logits ``(B, C)`` and tapped maps (no grad)."""
        with torch.no_grad(), capture_hidden(self.backbone, self.layers, detach=True) as maps:
            logits = self.backbone(logmel)
        return logits, dict(maps)

    def forward(self, waveform: Tensor, sample_rate: int | None = None) -> PostHocOutput:
        with torch.no_grad():
            features = self.frontend(waveform, sample_rate)
        classifier_logits, maps = self.classify(features)
        H = self.psi(maps, features.nmf.shape[-1])
        logits, pooled = self.theta(H)
        reconstruction = torch.einsum("fk,bkt->bft", self.dictionary, H)
        return PostHocOutput(features, classifier_logits, H, logits, pooled, reconstruction)

    def losses(self, out: PostHocOutput) -> dict[str, Tensor]:
        evidence = None if self.theta.all_evidence else self.theta.evidence
        if evidence is not None and evidence.dim() == 2:  # per-class evidence: the components of any class
            evidence = evidence.any(0)
        losses = interpreter_losses(out, self.task, self.theta.class_weights, evidence)
        if self.block_gate is not None:
            losses["block_gate"] = gated_block_loss(out.activations, self.theta.evidence, out.classifier_logits,
                                                    self.block_gate, self.block_gate_threshold)
        return losses

    @torch.no_grad()
    def refine_activations(self, out: PostHocOutput, iters: int, class_threshold: float | Tensor = 0.5,
                           gate: str = "interpreter", init: str = "interpreter") -> Tensor:
        """``H (B, K, T)`` after ``iters`` multiplicative updates on ``V`` (see ``refine_iters`` of
        :meth:`interpret`): ``H ← H ⊙ WᵀV / (WᵀW H + ε)``, which keeps a zero at zero, from Ψ's H (plus a
        floor of 1e-3 of its mean, so a component Ψ left at exactly 0 may still grow) on the allowed components."""
        W, V, H = self.dictionary, out.features.nmf, out.activations
        B, K, _ = H.shape
        allowed = torch.ones(B, K, dtype=torch.bool, device=H.device)
        evidence = self.theta.evidence
        if gate not in ("interpreter", "classifier"):
            raise ValueError(f"refine_gate must be 'interpreter' or 'classifier', got {gate!r}")
        if self.task == "multilabel":
            decision = out.logits if gate == "interpreter" else out.classifier_logits
            present = decision.sigmoid() > torch.as_tensor(class_threshold, dtype=decision.dtype, device=H.device)
            if evidence.dim() == 2:  # per-class blocks: the absent classes' blocks are off, the rest free
                owned = evidence.any(0)
                allowed = ~owned[None, :] | (present.float() @ evidence.float() > 0)
        if init not in ("interpreter", "uniform"):
            raise ValueError(f"refine_init must be 'interpreter' or 'uniform', got {init!r}")
        floor = 1e-3 * H.mean().clamp_min(1e-12)
        start = H + floor if init == "interpreter" else torch.full_like(H, float(H.mean().clamp_min(1e-6)))
        H = start * allowed[..., None].to(H.dtype)
        WtV = torch.einsum("fk,bft->bkt", W, V)
        G = W.t() @ W
        for _ in range(int(iters)):
            H = H * WtV / (torch.einsum("kj,bjt->bkt", G, H) + 1e-9)
        return H

    # -- the one verb ------------------------------------------------------------------------------------
    @torch.no_grad()
    def interpret(
        self,
        waveform: Tensor,
        target: Tensor | int | Sequence[int] | None = None,
        threshold: float = 0.2,
        *,
        sample_rate: int | None = None,
        class_threshold: float | Tensor = 0.5,
        mask_mode: str = "log1p",
        relevance_weighted: bool = False,
        components: Tensor | None = None,
        top_k: int | None = None,
        refine_iters: int = 0,
        refine_gate: str = "interpreter",
        refine_init: str = "interpreter",
        block_components: bool = False,
    ) -> Interpretation:
        """Listenable interpretations of ``waveform (B, samples)``; see :class:`Interpretation` for shapes.

        Args:
            target: ``None`` = the classifier's prediction (multilabel: every class with probability above
                ``class_threshold``); or class indices / multi-hot (see :func:`select_classes`).
            threshold: relevance threshold τ (components with relevance > τ are chosen).
            sample_rate: rate of ``waveform`` when it differs from the front-end's (resampled).
            mask_mode, relevance_weighted: see :func:`build_interpretation`.
            components: optional ``(B, C, K)`` bool component sets to use instead of the chosen ones.
            top_k: at most this many components per class, the most relevant among those above τ (default: the
                interpreter's ``top_k``; 0 = no cap).
            refine_iters: > 0: before the masks, that many multiplicative NMF updates of the activations on
                the clip's own ``V`` (W fixed), starting from Ψ's H, with the components of the classes the
                *interpreter* finds absent held at zero (Θ's own decision, never ``target``: multilabel,
                ``sigmoid(Θ(H)) <= class_threshold``; with per-class ``evidence`` these are the absent classes'
                blocks, components without evidence stay free). Ψ decides which classes sound; the updates fit
                how much of every bin each explains. Relevance, and so the chosen components, stay Ψ's.
                Default 0: the authors' method.
            refine_gate: whose decision holds the absent classes' components at zero: ``interpreter``
                (Θ(H), default) or ``classifier`` (f's own decision, the one being explained; then the
                interpretation of c is a separation conditioned on f's decisions, Ψ only initialising H).
            refine_init: where the updates start: ``interpreter`` (Ψ's H) or ``uniform`` (every allowed
                component at the same level: with ``refine_gate: classifier`` Ψ then plays no part, the
                interpretation is the NMF of the clip on the blocks of the classes f detects).
            block_components: explain c with every component of c's block (Θ's per-class ``evidence``)
                instead of the components above the relevance threshold (``components``, when given, wins).
        """
        top_k = self.top_k if top_k is None else (None if int(top_k) == 0 else int(top_k))
        was_training = self.training
        self.eval()
        try:
            out = self(waveform, sample_rate)
            classes = select_classes(out.classifier_logits, self.task, target, class_threshold)
            activations = out.activations
            if block_components and components is None:  # an explicit set (e.g. a random baseline's) wins
                if self.theta.evidence.dim() != 2:
                    raise ValueError("block_components needs Θ tied to class blocks (block_evidence: true)")
                components = self.theta.evidence.expand(waveform.shape[0], -1, -1)
            if refine_iters > 0:
                activations = self.refine_activations(out, int(refine_iters), class_threshold, refine_gate, refine_init)
            return build_interpretation(
                frontend=self.frontend,
                features=out.features,
                dictionary=self.dictionary,
                activations=activations,
                pooled=out.pooled,
                class_weights=self.theta.class_weights,
                logits=out.logits,
                classes=classes,
                classifier_logits=out.classifier_logits,
                threshold=threshold,
                mask_mode=mask_mode,
                relevance_weighted=relevance_weighted,
                components=components,
                top_k=top_k,
                eps=self.share_eps,
            )
        finally:
            self.train(was_training)
