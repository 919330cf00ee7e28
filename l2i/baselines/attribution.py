"""Gradient and perturbation attributions through Captum, made listenable.

Each interpreter explains the frozen classifier ``f = backbone ∘ log-mel`` with one Captum method on the
**log-mel input** ``(B, M, T)``, keeps the positive evidence for the explained class, maps it to linear
frequency (mel filterbank transpose, normalised, or its pseudo-inverse; :func:`~l2i.baselines.common.
mel_to_linear_matrix`) and uses it as a soft (or, ``mask="threshold"``, binary) mask on the STFT magnitude
``|X| (B, F, T)``; audio = iSTFT(mask · |X|, input phase). Same one verb as every interpreter::

    interpret(waveform (B, N), target=None, threshold=0.2) -> Interpretation

(``relevance`` / ``components`` are ``(B, C, 0)``: no components; see :mod:`l2i.baselines.common`).

* :class:`SaliencyInterpreter` — ``captum.attr.Saliency`` (|∂f_c/∂logmel|; ``sign="abs"``);
* :class:`IntegratedGradientsInterpreter` — ``captum.attr.IntegratedGradients`` from the silent input (every
  bin at the clip's dB floor) with ``n_steps`` steps;
* :class:`GradCAMInterpreter` — ``captum.attr.LayerGradCam`` on a named backbone layer, upsampled to (M, T)
  with ``LayerAttribution.interpolate``;
* :class:`OcclusionInterpreter` — ``captum.attr.Occlusion`` over time-frequency patches (mel × frames)
  replaced by the dB floor.

The Python loop runs over explained-class *slots* (C' = 1 for multiclass), never over clips or bins.
"""

from __future__ import annotations

import abc

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from l2i.baselines.common import (
    ClassifierBaseline,
    attribution_mask,
    check_threshold,
    mask_interpretation,
    mel_to_linear_matrix,
)
from l2i.interpreter.interpretation import Interpretation, select_classes

__all__ = [
    "AttributionInterpreter",
    "SaliencyInterpreter",
    "IntegratedGradientsInterpreter",
    "GradCAMInterpreter",
    "OcclusionInterpreter",
]


class AttributionInterpreter(ClassifierBaseline, metaclass=abc.ABCMeta):
    """Base class: subclasses implement :meth:`attribute` ``(logmel (B, M, T), target (B,)) -> (B, M, T)``.

    Args:
        frontend: the classifier's :class:`~l2i.frontend.AudioFrontEnd`.
        backbone: the classifier's backbone, ``logmel (B, M, T) -> logits (B, C)`` (frozen, eval).
        task: ``multiclass`` | ``multilabel``.
        num_classes: C (default: the backbone's last ``nn.Linear``).
        mel_to_linear: ``transpose`` (normalised filterbank transpose) or ``pinv``.
        mask: ``soft`` (the normalised map) or ``threshold`` (1 where it exceeds τ).
        sign: ``positive`` (evidence for the class) or ``abs``.
        class_threshold: multilabel decision threshold of "the classifier's prediction".
    """

    name = "attribution"
    default_sign: Literal["positive", "abs"] = "positive"

    def __init__(
        self,
        frontend: nn.Module,
        backbone: nn.Module,
        task: Literal["multiclass", "multilabel"] = "multiclass",
        num_classes: int | None = None,
        mel_to_linear: Literal["transpose", "pinv"] = "transpose",
        mask: Literal["soft", "threshold"] = "soft",
        sign: Literal["positive", "abs"] | None = None,
        class_threshold: float = 0.5,
    ):
        super().__init__()
        self._init_classifier(frontend, backbone, task, num_classes)
        self.register_buffer("mel_to_linear_matrix", mel_to_linear_matrix(self._mel_fbanks, mel_to_linear), persistent=False)
        if mask not in ("soft", "threshold"):
            raise ValueError(f"{type(self).__name__}: mask must be soft|threshold, got {mask!r}")
        self.mask_mode = mask
        self.sign = sign or self.default_sign
        self.class_threshold = class_threshold
        self.settings = {"mel_to_linear": mel_to_linear, "mask": mask, "sign": self.sign}
        self.eval()

    # -- to implement ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def attribute(self, logmel: Tensor, target: Tensor) -> Tensor:
        """``logmel (B, M, T)``, ``target (B,)`` int64 -> attribution ``(B, M, T)`` (called with grad enabled)."""

    @staticmethod
    def floor(logmel: Tensor) -> Tensor:
        """The silent input: every bin at its clip's minimum (the dB floor), ``(B, M, T)``."""
        return logmel.amin(dim=(-2, -1), keepdim=True).expand_as(logmel).contiguous()

    # -- the one verb ----------------------------------------------------------------------------------
    def interpret(
        self,
        waveform: Tensor,
        target: Tensor | int | Sequence[int] | None = None,
        threshold: float = 0.2,
        *,
        sample_rate: int | None = None,
        class_threshold: float | Tensor | None = None,
    ) -> Interpretation:
        """Listenable attribution of ``waveform (B, N)``; see :class:`~l2i.interpreter.interpretation.Interpretation`.

        ``threshold`` is τ of ``mask="threshold"`` (a soft mask ignores it, but records it).
        """
        tau = check_threshold(threshold)
        self.eval()
        with torch.no_grad():
            features = self.frontend(waveform, sample_rate)
            logits = self.backbone(features.logmel)
        classes = select_classes(logits, self.task, target, self.class_threshold if class_threshold is None else class_threshold)
        logmel = features.logmel.detach()
        maps = []
        for j in range(classes.shape[1]):
            with torch.enable_grad():
                a = self.attribute(logmel, classes[:, j].clamp_min(0))
            if a.shape != logmel.shape:
                raise RuntimeError(f"{type(self).__name__}.attribute returned {tuple(a.shape)}, expected {tuple(logmel.shape)}")
            maps.append(a.detach())
        attribution = torch.stack(maps, dim=1)  # (B, C', M, T)
        mask = attribution_mask(attribution, self.mel_to_linear_matrix, self.mask_mode, tau, self.sign)
        return mask_interpretation(self.frontend, features, mask, classes, logits.detach(), self.num_classes, tau)


class SaliencyInterpreter(AttributionInterpreter):
    """``captum.attr.Saliency``: the absolute gradient of the class logit w.r.t. the log-mel input."""

    name = "saliency"
    default_sign = "abs"

    def attribute(self, logmel: Tensor, target: Tensor) -> Tensor:
        from captum.attr import Saliency

        return Saliency(self.backbone).attribute(logmel.clone().requires_grad_(True), target=target, abs=True)


class IntegratedGradientsInterpreter(AttributionInterpreter):
    """``captum.attr.IntegratedGradients`` from the silent input (the clip's dB floor) in ``n_steps`` steps.

    Extra args: ``n_steps`` (default 16), ``internal_batch_size`` (clips × steps per backward; default all).
    """

    name = "integrated_gradients"

    def __init__(self, *args, n_steps: int = 16, internal_batch_size: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if int(n_steps) < 1:
            raise ValueError(f"integrated_gradients: n_steps must be >= 1, got {n_steps}")
        self.n_steps, self.internal_batch_size = int(n_steps), internal_batch_size
        self.settings.update(n_steps=self.n_steps)

    def attribute(self, logmel: Tensor, target: Tensor) -> Tensor:
        from captum.attr import IntegratedGradients

        return IntegratedGradients(self.backbone).attribute(
            logmel.clone().requires_grad_(True), baselines=self.floor(logmel), target=target, n_steps=self.n_steps,
            internal_batch_size=self.internal_batch_size,
        )


class GradCAMInterpreter(AttributionInterpreter):
    """``captum.attr.LayerGradCam`` on the backbone layer ``layer`` (default: the last of its ``layer_names``),
    ReLU'd and bilinearly upsampled to the log-mel grid. The layer's map axes follow the backbone's
    ``conv_map_axes`` (``BCFT``: channels, mel, time; ``BCTF``: time before mel); 3-D ``(B, C, T')`` maps are
    spread over all mel bands."""

    name = "gradcam"

    def __init__(self, frontend, backbone, *args, layer: str | None = None, **kwargs):
        super().__init__(frontend, backbone, *args, **kwargs)
        names = list(getattr(backbone, "layer_names", ()))
        layer = layer or (names[-1] if names else None)
        modules = dict(backbone.named_modules())
        if not layer or layer not in modules:
            raise ValueError(f"gradcam: layer {layer!r} is not a module of the backbone; tappable: {names or sorted(modules)[:20]}")
        self.layer_name = layer
        self.layer = modules[layer]
        self.axes = getattr(backbone, "conv_map_axes", "BCFT")
        self.settings.update(layer=layer)

    def attribute(self, logmel: Tensor, target: Tensor) -> Tensor:
        from captum.attr import LayerGradCam

        cam = LayerGradCam(self.backbone, self.layer).attribute(
            logmel.clone().requires_grad_(True), target=target, relu_attributions=True
        )
        M, T = logmel.shape[-2:]
        if cam.dim() == 4:  # (B, 1, F', T') or (B, 1, T', F')
            if self.axes == "BCTF":
                cam = cam.transpose(-2, -1)
            return F.interpolate(cam.float(), size=(M, T), mode="bilinear", align_corners=False)[:, 0]
        if cam.dim() == 3:  # (B, 1, T')
            up = F.interpolate(cam.float(), size=T, mode="linear", align_corners=False)[:, 0]
            return up[:, None, :].expand(-1, M, -1)
        raise ValueError(f"gradcam: layer {self.layer_name!r} gives a {cam.dim()}-D map; need (B, C, F', T') or (B, C, T')")


class OcclusionInterpreter(AttributionInterpreter):
    """``captum.attr.Occlusion``: patches of ``patch = (mel bands, frames)`` slid with ``stride`` (default: the
    patch, i.e. no overlap) are set to the dB floor; attribution = drop of the class logit.

    Extra args: ``patch`` (default (16, 16)), ``stride``, ``perturbations_per_eval`` (patches per forward, default 8).
    """

    name = "occlusion"

    def __init__(self, *args, patch: Sequence[int] = (16, 16), stride: Sequence[int] | None = None,
                 perturbations_per_eval: int = 8, **kwargs):
        super().__init__(*args, **kwargs)
        patch = tuple(int(p) for p in patch)
        stride = tuple(int(s) for s in (stride or patch))
        if len(patch) != 2 or len(stride) != 2 or min(patch + stride) < 1:
            raise ValueError(f"occlusion: patch and stride must be two positive ints (mels, frames), got {patch}, {stride}")
        self.patch, self.stride, self.per_eval = patch, stride, max(1, int(perturbations_per_eval))
        self.settings.update(patch=list(patch), stride=list(stride))

    def attribute(self, logmel: Tensor, target: Tensor) -> Tensor:
        from captum.attr import Occlusion

        M, T = logmel.shape[-2:]
        patch = (min(self.patch[0], M), min(self.patch[1], T))
        with torch.no_grad():
            return Occlusion(self.backbone).attribute(
                logmel, sliding_window_shapes=patch, strides=self.stride, baselines=self.floor(logmel), target=target,
                perturbations_per_eval=self.per_eval,
            )
