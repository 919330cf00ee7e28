"""The post-hoc interpreter (L2I, stage 2a) in pure torch: frozen classifier f -> Ψ -> H -> Θ, decoder W H.

:class:`PostHocInterpreter` holds the classifier's front-end and backbone (frozen, always in eval mode: its
batch-norm statistics never move, whatever ``.train()`` is called with), the NMF dictionary ``W (F, K)``
(a buffer, or a parameter kept non-negative and column-normalised by ReLU + normalisation when
``finetune_dictionary``), Ψ and Θ. Its losses and their epoch-dependent weights are in
:mod:`l2i.interpreter.losses` (re-exported here). No Lightning here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from l2i.backbones import capture_hidden
from l2i.frontend import AudioFrontEnd, Features
from l2i.interpreter.interpretation import EPS, Interpretation, build_interpretation, select_classes, sharpen_share
from l2i.interpreter.losses import (AUTHORS_ESC50_SCHEDULE, BLOCK_GATES, LossSchedule, gated_block_loss,
                                    interpreter_losses)
from l2i.interpreter.psi import AuthorsPsi, Psi, map_to_grid, map_to_sequence
from l2i.interpreter.theta import Theta
from l2i.nmf.core import update_activations

__all__ = ["PostHocInterpreter", "PostHocOutput", "LossSchedule", "interpreter_losses", "AUTHORS_ESC50_SCHEDULE", "default_layers",
           "gated_block_loss", "BLOCK_GATES",
           "INTERPRET_OPTIONS", "check_interpret_options",
           "merge_interpret_options"]

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
    "refine_beta": (1, 2),
    "block_components": bool,
    "class_threshold": float,
    "mask_power": "positive",
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
            if isinstance(value, bool) or value not in kind:
                raise ValueError(f"{where}.{key} must be one of {', '.join(map(str, kind))}, got {value!r}")
        elif kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{where}.{key} must be true or false, got {value!r}")
        elif kind == "positive":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{where}.{key} must be a finite number > 0, got {value!r}")
            value = float(value)
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


def _check_settings(task: str, psi_variant: str, top_k: int | None, block_gate: str | None,
                    block_gate_threshold: float) -> None:
    """Refuse a :class:`PostHocInterpreter` setting outside its range, naming it."""
    if block_gate is not None and block_gate not in BLOCK_GATES:
        raise ValueError(f"block_gate must be one of {', '.join(BLOCK_GATES)} (or None), got {block_gate!r}")
    if not 0.0 <= float(block_gate_threshold) <= 1.0:
        raise ValueError(f"block_gate_threshold must be in [0, 1], got {block_gate_threshold}")
    if psi_variant not in ("project", "authors"):
        raise ValueError(f"psi_variant must be project|authors, got {psi_variant!r}")
    if top_k is not None and int(top_k) < 1:
        raise ValueError(f"top_k must be a positive number of components (or None), got {top_k}")
    if task not in ("multiclass", "multilabel"):
        raise ValueError(f"task must be multiclass|multilabel, got {task!r}")


def _unit_norm_dictionary(dictionary, frontend_config) -> Tensor:
    """``W (F, K)`` as float with unit-L2-norm columns; refused unless F is the front-end's frequency bins and W is
    finite, non-negative and without an all-zero column."""
    W = torch.as_tensor(dictionary).detach().float()
    n_freq = frontend_config.n_freq
    if W.dim() != 2 or W.shape[0] != n_freq:
        raise ValueError(
            f"dictionary W must be (F={n_freq}, K) for the front-end (n_fft={frontend_config.n_fft}), "
            f"got {tuple(W.shape)}"
        )
    if not bool(torch.isfinite(W).all()) or bool((W < 0).any()):
        raise ValueError("dictionary W must be finite and non-negative")
    norms = W.norm(dim=0)
    if bool((norms == 0).any()):
        raise ValueError(f"dictionary W has all-zero column(s) {torch.nonzero(norms == 0).flatten().tolist()}")
    return W / norms


def _probe(backbone: nn.Module, cfg, names: list[str], probe_frames: int | None):
    """``(hidden maps by layer name, logits, device)`` of one dummy forward ``(2, n_mels, T)`` through the frozen
    backbone in eval mode (its mode restored): T is ``probe_frames``, else the front-end's clip length, or 128."""
    T = probe_frames or (cfg.num_frames() if cfg.num_samples else 128)
    T = max(int(T), int(getattr(backbone, "min_frames", 1)))
    device = next((p.device for p in backbone.parameters()), torch.device("cpu"))
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad(), capture_hidden(backbone, names, detach=True) as maps:
        logits = backbone(torch.zeros(2, cfg.n_mels, T, device=device))
    backbone.train(was_training)
    return maps, logits, device


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
        _check_settings(task, psi_variant, top_k, block_gate, block_gate_threshold)
        self.block_gate, self.block_gate_threshold = block_gate, float(block_gate_threshold)
        self.top_k = None if top_k is None else int(top_k)
        self.share_eps = float(share_eps)
        W = _unit_norm_dictionary(dictionary, frontend.config)
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
        names = list(layers) if layers else list(getattr(backbone, "layer_names", ()))
        maps, probe_logits, device = _probe(backbone, frontend.config, names, probe_frames)
        if probe_logits.shape[-1] != self.num_classes:
            raise ValueError(f"the classifier has {probe_logits.shape[-1]} outputs, num_classes is {self.num_classes}")
        self.layers = list(layers) if layers else default_layers(backbone, maps, skip_last=skip_last_layers)
        self.psi = self._build_psi(maps, psi_variant, hidden, psi_dropout)
        self.theta = Theta(self.n_components, self.num_classes, pooling=pooling, attention_dim=attention_dim,
                           center=task == "multiclass", evidence=evidence, attention_dropout=attention_dropout,
                           bias=theta_bias)
        if block_gate is not None and self.theta.evidence.dim() != 2:
            raise ValueError("block_gate needs Θ tied to class blocks (block_evidence: true)")
        self.psi.to(device)
        self.theta.to(device)
        self.train(self.training)

    def _build_psi(self, maps: dict[str, Tensor], psi_variant: str, hidden: int, psi_dropout: float) -> nn.Module:
        """Ψ sized by the probe's hidden ``maps`` of :attr:`layers`."""
        if psi_variant == "authors":
            missing = [n for n in self.layers if n not in maps]
            if missing:
                raise KeyError(f"layer(s) {missing} produced no output in the probe forward (is it used in forward?)")
            shapes = {n: tuple(map_to_grid(maps[n], self.conv_map_axes, n).shape[1:]) for n in self.layers}
            return AuthorsPsi(shapes, self.n_components, hidden=hidden, conv_map_axes=self.conv_map_axes)
        channels = {n: int(map_to_sequence(maps[n], self.conv_map_axes, n).shape[1]) for n in self.layers}
        return Psi(channels, self.n_components, hidden=hidden, conv_map_axes=self.conv_map_axes, dropout=psi_dropout)

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
                           gate: str = "interpreter", init: str = "interpreter", beta: int = 2) -> Tensor:
        """``H (B, K, T)`` after ``iters`` multiplicative updates on ``V`` (see ``refine_iters`` of
        :meth:`interpret`), which keep a zero at zero, from Ψ's H (plus a floor of 1e-3 of its mean, so a
        component Ψ left at exactly 0 may still grow) on the allowed components, by
        :func:`l2i.nmf.update_activations`: ``beta`` 2 the Euclidean updates, 1 the Kullback-Leibler ones."""
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
        return update_activations(W, V, H, int(iters), beta)  # a beta other than 1 or 2 is refused there

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
        refine_beta: int = 2,
        block_components: bool = False,
        mask_power: float = 1.0,
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
            refine_beta: the updates' divergence: 2 (Euclidean, default, as the dictionary was learnt) or 1
                (Kullback-Leibler; see :meth:`refine_activations`).
            block_components: explain c with every component of c's block (Θ's per-class ``evidence``)
                instead of the components above the relevance threshold (``components``, when given, wins).
            mask_power: ``p``: the share of the chosen components against the rest raised to ``p`` before the
                mask, ``s^p / (s^p + (1 - s)^p)`` (:func:`~l2i.interpreter.interpretation.sharpen_share`);
                default 1: the share as it is.
        """
        sharpen_share(torch.zeros(()), mask_power)  # a bad power fails before the forward pass
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
                activations = self.refine_activations(out, int(refine_iters), class_threshold, refine_gate, refine_init,
                                                      int(refine_beta))
            return build_interpretation(
                frontend=self.frontend, features=out.features, dictionary=self.dictionary, activations=activations,
                pooled=out.pooled, class_weights=self.theta.class_weights, logits=out.logits, classes=classes,
                classifier_logits=out.classifier_logits, threshold=threshold, mask_mode=mask_mode,
                relevance_weighted=relevance_weighted, components=components, top_k=top_k, eps=self.share_eps,
                mask_power=mask_power)
        finally:
            self.train(was_training)
