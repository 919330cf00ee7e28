"""Classifier backbones on log-mel input, each exposing its hidden maps by name.

A backbone is an ``nn.Module`` with ``forward(logmel (B, n_mels, frames)) -> logits (B, C)`` and class
attributes:

* ``layer_names``: the modules whose outputs an interpreter may tap (``capture_hidden``);
* ``conv_map_axes``: axis order of the conv maps, ``"BCFT"`` (SmallCNN, SB-CNN: channels, mel, time) or
  ``"BCTF"`` (CNN14, PANNs layout: channels, time, mel);
* ``head_names`` / ``block_names``: the new classifier head and the other modules in input -> output order, for
  :func:`finetune_param_groups` and :func:`load_pretrained`.

Backbones are built by name (``build_backbone``) so checkpoints store plain data, not pickled classes. Every
factory accepts ``pretrained: str | None`` (a checkpoint path loaded with :func:`load_pretrained`).

=============  ============================  ==========================================================
name           class                         native front-end
=============  ============================  ==========================================================
``small_cnn``  :class:`SmallCNN`             any (default FrontEndConfig: 16 kHz, hop 256, 64 mels)
``sbcnn``      :class:`SBCNN`                :data:`SBCNN_FRONTEND` (paper: 44.1 kHz, hop 1024, 128 mels)
``cnn14``      :class:`CNN14`                :data:`CNN14_FRONTEND` (32 kHz, hop 320, 64 mels, PANNs)
=============  ============================  ==========================================================
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from l2i.backbones.cnn14 import CNN14, CNN14_FRONTEND, cnn14
from l2i.backbones.device import prepare_for_device
from l2i.backbones.hooks import capture_hidden
from l2i.backbones.pretrained import (
    LoadReport,
    PretrainedLoadError,
    finetune_param_groups,
    load_pretrained,
    set_frozen_batchnorm_eval,
)
from l2i.backbones.sbcnn import SBCNN, SBCNN_FRONTEND, sbcnn
from l2i.backbones.small_cnn import SmallCNN

__all__ = [
    "BACKBONES",
    "register_backbone",
    "build_backbone",
    "capture_hidden",
    "SmallCNN",
    "SBCNN",
    "SBCNN_FRONTEND",
    "CNN14",
    "CNN14_FRONTEND",
    "load_pretrained",
    "LoadReport",
    "PretrainedLoadError",
    "finetune_param_groups",
    "set_frozen_batchnorm_eval",
    "prepare_for_device",
]

BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str, factory: Callable[..., nn.Module]) -> None:
    if name in BACKBONES and BACKBONES[name] is not factory:
        raise ValueError(f"backbone {name!r} is already registered")
    BACKBONES[name] = factory


def build_backbone(name: str, *, n_mels: int, num_classes: int, **kwargs) -> nn.Module:
    """Instantiate a registered backbone. Unknown names list the known ones."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {sorted(BACKBONES)}")
    return BACKBONES[name](n_mels=n_mels, num_classes=num_classes, **kwargs)


def small_cnn(n_mels: int, num_classes: int, pretrained: str | None = None, load_head: bool = False, **kwargs) -> SmallCNN:
    """Registry factory: a :class:`SmallCNN`, loaded from a state dict file when ``pretrained`` is a path."""
    model = SmallCNN(n_mels=n_mels, num_classes=num_classes, **kwargs)
    if pretrained is not None:
        model.load_report = load_pretrained(model, pretrained, load_head=load_head)
    return model


register_backbone("small_cnn", small_cnn)
register_backbone("sbcnn", sbcnn)
register_backbone("cnn14", cnn14)
