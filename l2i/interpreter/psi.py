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

__all__ = ["Psi", "AuthorsPsi", "map_to_sequence", "map_to_grid", "probe_layer_shapes"]


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


def map_to_grid(x: Tensor, conv_map_axes: str = "BCFT", name: str = "?") -> Tensor:
    """A hidden map as a ``(B, C, F', T')`` grid: a conv map in ``BCFT`` order; ``(B, C, T')`` -> ``F' = 1``;
    ``(B, C)`` -> ``(B, C, 1, 1)``."""
    if x.dim() == 4:
        if conv_map_axes == "BCTF":
            return x.transpose(2, 3)
        if conv_map_axes != "BCFT":
            raise ValueError(f"conv_map_axes must be 'BCFT' or 'BCTF', got {conv_map_axes!r}")
        return x
    if x.dim() == 3:
        return x[:, :, None, :]
    if x.dim() == 2:
        return x[:, :, None, None]
    raise ValueError(f"hidden map {name!r} must be 2-D, 3-D or 4-D (batch first), got shape {tuple(x.shape)}")


class AuthorsPsi(nn.Module):
    """The authors' Ψ, for any backbone: ``forward(maps, n_frames) -> H (B, K, n_frames)``, ``H ≥ 0``.

    Their network (three maps of 512, 256 and 128 channels before the classifier's last conv layer) aligns
    the maps in time by bilinear upsampling, mixes them with 3x3 convolutions, collapses frequency with (4, 1)
    convolutions, upsamples to exactly T frames and only then applies two ``Conv1d(kernel 5) + ReLU``
    (``256 -> K -> K``). Here, for maps of any shape (see :func:`map_to_grid`):

    1. each map: ``Conv2d(C -> hidden, 3x3) + ReLU``; bilinear interpolation along time to the finest tapped
       time resolution; average pooling along frequency to the coarsest tapped frequency size ``F_min``;
    2. concatenation, ``Conv2d(L·hidden -> 2·hidden, 3x3) + ReLU``;
    3. frequency collapsed by ``Conv2d((k, 1), stride (k, 1)) + ReLU`` stages, ``k = min(4, F)`` (zero-padded to a
       multiple of k), until one row is left (their ``F_min = 4``: exactly one (4, 1) convolution);
    4. linear interpolation along time to ``n_frames`` (``align_corners=True``, as their bilinear upsampler);
    5. ``Conv1d(2·hidden -> K, 5) + ReLU``, ``Conv1d(K -> K, 5) + ReLU``.

    Their intermediate x2 time upsamplings between the 3x3 convolutions are folded into step 1's alignment and
    step 4's upsampling (the same layers, at the tapped resolution).

    Args:
        layer_shapes: ``{layer: (channels, freq, frames)}`` of each map as a grid (:func:`map_to_grid`).
        n_components: K.
        hidden: per-layer width (the mixing convolution has ``2 * hidden`` channels; authors: 256 after mixing).
        conv_map_axes: axis order of the backbone's 2-D conv maps.
        kernel_size: time kernel of the two final 1-D convolutions (authors: 5).
    """

    def __init__(
        self,
        layer_shapes: Mapping[str, Sequence[int]],
        n_components: int,
        hidden: int = 128,
        conv_map_axes: str = "BCFT",
        kernel_size: int = 5,
    ):
        super().__init__()
        if not layer_shapes:
            raise ValueError("AuthorsPsi needs at least one tapped layer")
        if conv_map_axes not in ("BCFT", "BCTF"):
            raise ValueError(f"conv_map_axes must be 'BCFT' or 'BCTF', got {conv_map_axes!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (same-length convolutions), got {kernel_size}")
        self.layers = list(layer_shapes)
        self.layer_shapes = {k: tuple(int(v) for v in shape) for k, shape in layer_shapes.items()}
        for name, shape in self.layer_shapes.items():
            if len(shape) != 3:
                raise ValueError(f"AuthorsPsi: layer {name!r} shape must be (channels, freq, frames), got {shape}")
        self.n_components = int(n_components)
        self.conv_map_axes = conv_map_axes
        self.freq = min(shape[1] for shape in self.layer_shapes.values())
        self.project = nn.ModuleList(
            nn.Sequential(nn.Conv2d(shape[0], hidden, 3, padding=1), nn.ReLU()) for shape in self.layer_shapes.values()
        )
        width = 2 * hidden
        self.mix = nn.Sequential(nn.Conv2d(hidden * len(self.layers), width, 3, padding=1), nn.ReLU())
        collapse, f = [], self.freq
        while f > 1:
            k = min(4, f)
            collapse.append(nn.Sequential(nn.Conv2d(width, width, (k, 1), stride=(k, 1)), nn.ReLU()))
            f = -(-f // k)
        self.collapse = nn.ModuleList(collapse)
        pad = kernel_size // 2
        self.head = nn.Sequential(
            nn.Conv1d(width, self.n_components, kernel_size, padding=pad),
            nn.ReLU(),
            nn.Conv1d(self.n_components, self.n_components, kernel_size, padding=pad),
            nn.ReLU(),
        )

    def forward(self, maps: Mapping[str, Tensor], n_frames: int) -> Tensor:
        grids = []
        for name, proj in zip(self.layers, self.project):
            if name not in maps:
                raise KeyError(f"AuthorsPsi: hidden map {name!r} missing; got {sorted(maps)}")
            grid = map_to_grid(maps[name], self.conv_map_axes, name).float()
            if grid.shape[1] != self.layer_shapes[name][0]:
                raise ValueError(f"AuthorsPsi: layer {name!r} has {grid.shape[1]} channels, built for {self.layer_shapes[name][0]}")
            grids.append(proj(grid))
        t_common = max(g.shape[-1] for g in grids)
        aligned = []
        for g in grids:
            if g.shape[-1] != t_common:
                g = F.interpolate(g, size=(g.shape[-2], t_common), mode="bilinear", align_corners=True)
            if g.shape[-2] != self.freq:
                g = F.adaptive_avg_pool2d(g, (self.freq, t_common))
            aligned.append(g)
        x = self.mix(torch.cat(aligned, dim=1))  # (B, 2·hidden, F_min, t_common)
        for stage in self.collapse:
            k = stage[0].kernel_size[0]
            rem = x.shape[-2] % k
            if rem:
                x = F.pad(x, (0, 0, 0, k - rem))
            x = stage(x)
        x = x.squeeze(-2)  # (B, 2·hidden, t_common)
        if x.shape[-1] != n_frames:
            x = F.interpolate(x, size=int(n_frames), mode="linear", align_corners=x.shape[-1] > 1)
        return self.head(x)
