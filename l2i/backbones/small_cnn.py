"""A small CNN on log-mel spectrograms, fast enough for CPU runs (the demo's classifier)."""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Module):
    """Conv3x3-BN-ReLU x2 then 2x2 average pooling. ``(B, C_in, mels, T)`` -> ``(B, C_out, mels/2, T/2)``."""

    def __init__(self, in_channels: int, out_channels: int, pool: tuple[int, int] = (2, 2)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.pool = nn.AvgPool2d(pool) if pool != (1, 1) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.pool(x)


class SmallCNN(nn.Module):
    """``forward(logmel (B, n_mels, T)) -> logits (B, num_classes)``.

    Named hidden maps (``layer_names``): ``block1`` … ``block4`` with shape
    ``(B, channels[i], n_mels / 2**(i+1), T / 2**(i+1))`` (floor division at each pooling).
    Input normalisation is a BatchNorm over mel bands (as PANNs' ``bn0``); the head is mean over
    frequency, then max + mean over time, dropout, linear.
    """

    layer_names = ("block1", "block2", "block3", "block4")
    conv_map_axes = "BCFT"
    head_names = ("fc",)  # fine-tuning policy (l2i.backbones.pretrained): the head, then blocks input -> output
    block_names = ("bn0", "block1", "block2", "block3", "block4")

    def __init__(self, n_mels: int, num_classes: int, channels: tuple[int, ...] = (16, 32, 64, 128), dropout: float = 0.2):
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"SmallCNN needs 4 channel counts, got {channels}")
        self.bn0 = nn.BatchNorm2d(n_mels)
        chans = (1, *channels)
        for i in range(4):
            setattr(self, f"block{i + 1}", ConvBlock(chans[i], chans[i + 1]))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels[-1], num_classes)

    def features(self, logmel: torch.Tensor) -> torch.Tensor:
        x = logmel.unsqueeze(1)  # (B, 1, M, T)
        x = self.bn0(x.transpose(1, 2)).transpose(1, 2)  # normalise each mel band
        for i in range(4):
            x = getattr(self, f"block{i + 1}")(x)
        return x

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = self.features(logmel).mean(dim=2)  # (B, C, T')
        x = x.amax(dim=-1) + x.mean(dim=-1)
        return self.fc(self.dropout(x))
