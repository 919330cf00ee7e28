"""Device-side speed-ups for a backbone: channels-last convolutions and (optional) ``torch.compile``.

Mixed precision needs nothing from the backbones: run them under ``torch.autocast`` (Lightning
``precision="bf16-mixed"`` / ``"16-mixed"``); every op they use (conv, BatchNorm, pooling, amax/mean, linear) is
autocast-safe. Keep the front-end (log10 of small powers) outside autocast or in float32.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["prepare_for_device"]

_HANDLES_ATTR = "_l2i_channels_last_handles"


def _to_channels_last(_module: nn.Module, args: tuple):
    x = args[0]
    if isinstance(x, torch.Tensor) and x.dim() == 4 and not x.is_contiguous(memory_format=torch.channels_last):
        return (x.contiguous(memory_format=torch.channels_last), *args[1:])
    return None


def prepare_for_device(
    backbone: nn.Module,
    channels_last: bool = False,
    compile: bool = False,
    *,
    compile_backend: str = "inductor",
    compile_mode: str | None = None,
) -> nn.Module:
    """Prepare ``backbone`` in place (module names, state-dict keys and ``capture_hidden`` taps are unchanged).

    Args:
        backbone: any backbone; move it to its device first (``.to(device)``).
        channels_last: store 4-D conv weights as ``torch.channels_last`` and feed every ``Conv2d`` a channels-last
            input (a forward pre-hook), so conv/BN/pool kernels run in NHWC (faster on GPUs with tensor cores and on
            oneDNN CPUs). Outputs are numerically the same up to float rounding; hidden maps come out channels-last
            (``(B, C, H, W)`` shapes unchanged). ``False`` undoes an earlier ``True``.
        compile: compile the forward with ``nn.Module.compile`` (``torch.compile`` in place). Off by default: the
            first calls are slow (graph capture and code generation) and a new input length recompiles.
        compile_backend, compile_mode: passed to ``torch.compile`` (``"inductor"`` needs a C++ compiler on CPU).

    Returns:
        the same ``backbone``.
    """
    old = getattr(backbone, _HANDLES_ATTR, None)
    if old:
        for h in old:
            h.remove()
        setattr(backbone, _HANDLES_ATTR, [])
    if channels_last:
        backbone.to(memory_format=torch.channels_last)
        handles = [m.register_forward_pre_hook(_to_channels_last) for m in backbone.modules() if isinstance(m, nn.Conv2d)]
        setattr(backbone, _HANDLES_ATTR, handles)
    elif old:
        backbone.to(memory_format=torch.contiguous_format)
    if compile:
        if not hasattr(torch, "compile") or not hasattr(nn.Module, "compile"):
            raise RuntimeError(f"torch {torch.__version__} has no torch.compile / nn.Module.compile")
        backbone.compile(backend=compile_backend, mode=compile_mode)
    return backbone
