"""An SB-CNN-like baseline (Salamon & Bello, "Deep convolutional neural networks and data augmentation for
environmental sound classification", IEEE SPL 2017).

The paper's network on 128-band x 128-frame log-mel patches: three 5x5 conv layers with 24, 48, 48 filters, the
first two followed by (4, 2) max-pooling (time, frequency) and all by ReLU; flatten; dense 64 + ReLU; softmax output;
dropout 0.5 on the inputs of the last two layers. Differences here (named "like" for them):

* the convolutions are padded ("same") so every clip length works and shapes follow ``// pool`` arithmetic;
* a BatchNorm over mel bands normalises the dB input (as SmallCNN / PANNs ``bn0``; the paper had none);
* the flatten is over (channels, frequency) only; time is pooled by max + mean before the dense layer, so the
  network takes any number of frames (the paper's dense layer fixed the patch length);
* L2 weight decay (0.001 on the last two layers in the paper) is left to the optimizer.
"""

from __future__ import annotations

import torch
from torch import nn

from l2i.frontend import FrontEndConfig

__all__ = ["SBCNN", "SBConvBlock", "SBCNN_FRONTEND", "sbcnn"]

#: the paper's input: 44.1 kHz, 1024-sample (23 ms) windows with a hop of the same length, 128 mel bands over
#: 0-22050 Hz, log amplitude (dB here). The paper fed 3 s patches (128 frames); the clip length is the data set's.
SBCNN_FRONTEND = FrontEndConfig(sample_rate=44100, n_fft=1024, hop_length=1024, n_mels=128, f_min=0.0, f_max=None)


class SBConvBlock(nn.Module):
    """Conv 5x5 (padded) + ReLU + optional max-pool. ``(B, C_in, M, T)`` -> ``(B, C_out, M // pf, T // pt)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5, pool: tuple[int, int] | None = (2, 4)):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.pool = nn.MaxPool2d(pool) if pool is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.conv(x)))


class SBCNN(nn.Module):
    """``forward(logmel (B, n_mels, T)) -> logits (B, num_classes)``.

    Named hidden maps (``layer_names``), ``M = n_mels``, pool ``(pf, pt) = (2, 4)`` (frequency, time), floor
    division at each pooling:

    * ``block1``: ``(B, filters[0], M // 2, T // 4)``;
    * ``block2``: ``(B, filters[1], M // 4, T // 16)``;
    * ``block3``: ``(B, filters[2], M // 4, T // 16)`` (no pooling);
    * ``fc1``: ``(B, dense)`` after its ReLU.

    Needs ``T >= 16`` frames and ``n_mels >= 4``.
    """

    layer_names = ("block1", "block2", "block3", "fc1")
    conv_map_axes = "BCFT"
    head_names = ("fc_head",)
    block_names = ("bn0", "block1", "block2", "block3", "fc1")
    min_frames = 16

    def __init__(
        self,
        n_mels: int,
        num_classes: int,
        filters: tuple[int, int, int] = (24, 48, 48),
        kernel_size: int = 5,
        pool: tuple[int, int] = (2, 4),
        dense: int = 64,
        dropout: float = 0.5,
    ):
        super().__init__()
        if len(filters) != 3:
            raise ValueError(f"SBCNN needs 3 filter counts, got {filters}")
        pf, pt = pool
        if n_mels // (pf * pf) < 1:
            raise ValueError(f"n_mels={n_mels} too small for two ({pf}, {pt}) poolings")
        self.n_mels = n_mels
        self.min_frames = pt * pt
        self.bn0 = nn.BatchNorm2d(n_mels)
        self.block1 = SBConvBlock(1, filters[0], kernel_size, pool)
        self.block2 = SBConvBlock(filters[0], filters[1], kernel_size, pool)
        self.block3 = SBConvBlock(filters[1], filters[2], kernel_size, None)
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Sequential(nn.Linear(filters[2] * (n_mels // (pf * pf)), dense), nn.ReLU())
        self.fc_head = nn.Linear(dense, num_classes)

    def features(self, logmel: torch.Tensor) -> torch.Tensor:
        """``(B, M, T)`` -> block3 output ``(B, filters[2], M // 4, T // 16)``."""
        if logmel.dim() != 3 or logmel.shape[1] != self.n_mels:
            raise ValueError(f"SBCNN expects log-mel (B, {self.n_mels}, frames), got {tuple(logmel.shape)}")
        if logmel.shape[-1] < self.min_frames:
            raise ValueError(f"SBCNN needs >= {self.min_frames} frames, got {logmel.shape[-1]}")
        x = logmel.unsqueeze(1)  # (B, 1, M, T)
        x = self.bn0(x.transpose(1, 2)).transpose(1, 2)  # normalise each mel band
        return self.block3(self.block2(self.block1(x)))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = self.features(logmel)  # (B, C, F', T')
        x = x.flatten(1, 2)  # (B, C * F', T')
        x = x.amax(dim=-1) + x.mean(dim=-1)  # pool time: (B, C * F')
        x = self.fc1(self.dropout(x))
        return self.fc_head(self.dropout(x))


def sbcnn(n_mels: int, num_classes: int, pretrained: str | None = None, load_head: bool = False, **kwargs) -> SBCNN:
    """Registry factory: an :class:`SBCNN`, loaded from a state dict file when ``pretrained`` is a path."""
    model = SBCNN(n_mels=n_mels, num_classes=num_classes, **kwargs)
    if pretrained is not None:
        from l2i.backbones.pretrained import load_pretrained

        model.load_report = load_pretrained(model, pretrained, load_head=load_head)
    return model

