"""Ψ: the interpreter's encoder, from the classifier's hidden maps to NMF activations ``H ≥ 0``.

For every tapped layer (named in the config, captured by forward hooks):

* a 2-D conv map ``(B, C, F', T')`` (``conv_map_axes = "BCFT"``) or ``(B, C, T', F')`` (``"BCTF"``) is laid out
  as ``(B, C·F', T')`` (frequency folded into channels, so Ψ still knows *where* in frequency a unit fired);
* a 1-D map ``(B, C, T')`` is used as is; a clip-level vector ``(B, C)`` is a constant over time;
* a 1x1 convolution + batch norm + ReLU brings it to ``hidden`` channels, and linear interpolation along
  time brings it to the common time resolution (that of the finest tapped layer).

The layers are concatenated, then ``Conv1d(k=3) + BN + ReLU`` and ``Conv1d(k=3)`` to K channels, a ReLU, and a
linear interpolation to the NMF frame count: ``H = Ψ(f_1..f_L(x))`` of shape ``(B, K, T)``, non-negative
(linear interpolation of non-negative values stays non-negative).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Psi", "map_to_sequence", "probe_layer_shapes"]


def map_to_sequence(x: Tensor, conv_map_axes: str = "BCFT", name: str = "?") -> Tensor:
    """A hidden map as a channels x time sequence.

    ``(B, C, F', T')`` ("BCFT") or ``(B, C, T', F')`` ("BCTF") -> ``(B, C·F', T')``; ``(B, C, T')`` -> itself;
    ``(B, C)`` -> ``(B, C, 1)`` (constant over time).
    """
    if x.dim() == 4:
        if conv_map_axes == "BCTF":
            x = x.transpose(2, 3)
        elif conv_map_axes != "BCFT":
            raise ValueError(f"conv_map_axes must be 'BCFT' or 'BCTF', got {conv_map_axes!r}")
        return x.flatten(1, 2)
    if x.dim() == 3:
        return x
    if x.dim() == 2:
        return x[:, :, None]
    raise ValueError(f"hidden map {name!r} must be 2-D, 3-D or 4-D (batch first), got shape {tuple(x.shape)}")


@torch.no_grad()
def probe_layer_shapes(
    hidden_fn, logmel_shape: tuple[int, int], layers: Sequence[str], conv_map_axes: str = "BCFT", device=None
) -> dict[str, tuple[int, int]]:
    """``{layer: (channels, frames)}`` of the sequences :func:`map_to_sequence` makes, from one dummy forward.

    ``hidden_fn(logmel (B, n_mels, T), layers) -> (logits, maps)`` (e.g. ``ClassifierModule.hidden``);
    ``logmel_shape = (n_mels, T)``.
    """
    dummy = torch.zeros(2, *logmel_shape, device=device)
    _, maps = hidden_fn(dummy, list(layers))
    out = {}
    for name in layers:
        if name not in maps:
            raise KeyError(f"layer {name!r} produced no output in the probe forward (is it used in forward?)")
        seq = map_to_sequence(maps[name], conv_map_axes, name)
        out[name] = (int(seq.shape[1]), int(seq.shape[2]))
    return out


class Psi(nn.Module):
    """``forward(maps: {layer: tensor}, n_frames) -> H (B, K, n_frames)`` with ``H ≥ 0``.

    Args:
        layer_channels: ``{layer: channels}`` of each tapped map as a sequence (see :func:`map_to_sequence`,
            e.g. from :func:`probe_layer_shapes`); the order is the concatenation order.
        n_components: K, the dictionary's number of columns.
        hidden: channels of every per-layer projection and of the combining convolution.
        conv_map_axes: axis order of the backbone's 2-D conv maps (``BCFT`` or ``BCTF``).
        kernel_size: time kernel of the two combining 1-D convolutions.
        dropout: dropout before the last convolution.
    """

    def __init__(
        self,
        layer_channels: Mapping[str, int],
        n_components: int,
        hidden: int = 128,
        conv_map_axes: str = "BCFT",
        kernel_size: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not layer_channels:
            raise ValueError("Psi needs at least one tapped layer")
        if conv_map_axes not in ("BCFT", "BCTF"):
            raise ValueError(f"conv_map_axes must be 'BCFT' or 'BCTF', got {conv_map_axes!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (same-length convolutions), got {kernel_size}")
        self.layers = list(layer_channels)
        self.layer_channels = {k: int(v) for k, v in layer_channels.items()}
        self.n_components = int(n_components)
        self.conv_map_axes = conv_map_axes
        self.project = nn.ModuleList(
            nn.Sequential(nn.Conv1d(c, hidden, 1, bias=False), nn.BatchNorm1d(hidden), nn.ReLU())
            for c in self.layer_channels.values()
        )
        pad = kernel_size // 2
        self.combine = nn.Sequential(
            nn.Conv1d(hidden * len(self.layers), hidden, kernel_size, padding=pad, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Conv1d(hidden, self.n_components, kernel_size, padding=pad),
            nn.ReLU(),
        )

    def forward(self, maps: Mapping[str, Tensor], n_frames: int) -> Tensor:
        seqs = []
        for name, proj in zip(self.layers, self.project):
            if name not in maps:
                raise KeyError(f"Psi: hidden map {name!r} missing; got {sorted(maps)}")
            seq = map_to_sequence(maps[name], self.conv_map_axes, name)
            if seq.shape[1] != self.layer_channels[name]:
                raise ValueError(
                    f"Psi: layer {name!r} has {seq.shape[1]} channels (x frequency), built for {self.layer_channels[name]}"
                )
            seqs.append(proj(seq.float()))
        t_common = max(s.shape[-1] for s in seqs)
        seqs = [
            s if s.shape[-1] == t_common
            else (s.expand(-1, -1, t_common) if s.shape[-1] == 1 else F.interpolate(s, size=t_common, mode="linear", align_corners=False))
            for s in seqs
        ]
        h = self.combine(torch.cat(seqs, dim=1))  # (B, K, t_common), >= 0
        if h.shape[-1] != n_frames:
            h = F.interpolate(h, size=int(n_frames), mode="linear", align_corners=False)
        return h
