"""Classifier backbones on log-mel input, each exposing its hidden maps by name.

A backbone is an ``nn.Module`` with ``forward(logmel (B, n_mels, frames)) -> logits (B, C)`` and a class
attribute ``layer_names``: the modules whose outputs an interpreter may tap (``capture_hidden``).
Backbones are built by name (``build_backbone``) so checkpoints store plain data, not pickled classes.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from l2i.backbones.hooks import capture_hidden
from l2i.backbones.small_cnn import SmallCNN

__all__ = ["BACKBONES", "register_backbone", "build_backbone", "capture_hidden", "SmallCNN"]

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


register_backbone("small_cnn", SmallCNN)
