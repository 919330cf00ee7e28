"""Forward hooks that capture named hidden maps of any module (the interpreter's taps)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn


@contextmanager
def capture_hidden(model: nn.Module, layers: Sequence[str], detach: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, every forward of ``model`` fills the yielded dict ``{layer name: output}``.

    ``layers`` are names from ``model.named_modules()``; an unknown name raises with the known ones.
    """
    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        tappable = getattr(model, "layer_names", None) or [n for n in modules if n]
        raise KeyError(f"unknown layer(s) {missing}; tappable layers: {list(tappable)}")
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for name in layers:
        def hook(_module, _inputs, output, _name=name):
            out = output[0] if isinstance(output, (tuple, list)) else output
            captured[_name] = out.detach() if detach else out
        handles.append(modules[name].register_forward_hook(hook))
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()
