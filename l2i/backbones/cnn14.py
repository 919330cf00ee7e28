"""PANNs CNN14 (Kong et al., 2020) on our log-mel input, with the parameter names of the official checkpoints.

The official ``Cnn14_mAP=0.431.pth`` is ``{"model": state_dict}``; its keys are ``bn0.*``,
``conv_block{1..6}.{conv1,conv2}.weight`` (3x3, no bias), ``conv_block{1..6}.{bn1,bn2}.*``, ``fc1.{weight,bias}``,
``fc_audioset.{weight,bias}`` (527 classes) and the torchlibrosa front-end ``spectrogram_extractor.stft.conv_real.weight``,
``spectrogram_extractor.stft.conv_imag.weight``, ``logmel_extractor.melW``. This module has every parameter and
buffer of the official network under the same name and shape except the head: ``fc_head`` (this data set's classes)
replaces ``fc_audioset`` (the loader maps ``fc_audioset.`` -> ``fc_head.`` only when asked to keep the AudioSet head).
The front-end keys are not loaded: :data:`CNN14_FRONTEND` computes the same log-mel with :mod:`l2i.frontend`.

Differences from the official ``Cnn14.forward`` (none changes what pretrained weights compute in eval mode):

* input is our log-mel ``(B, n_mels, frames)``; it is laid out as PANNs' ``(B, 1, frames, mel)`` inside, so the
  hidden conv maps are ``(B, C, frames', mel')`` (``conv_map_axes = "BCTF"``, time before frequency, unlike SmallCNN);
* output is logits (no sigmoid): apply ``sigmoid`` (multilabel) or ``softmax`` (multiclass) outside;
* SpecAugment and mixup are not part of the backbone (augmentation belongs to the data pipeline);
* dropout (0.5) is applied to the embedding before the head in training (the official code feeds the head the
  un-dropped ``relu(fc1)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from l2i.backbones.small_cnn import ConvBlock
from l2i.frontend import FrontEndConfig

__all__ = ["CNN14", "CNN14_FRONTEND", "CNN14_CHANNELS", "cnn14"]

#: PANNs' CNN14 front-end (32 kHz, 1024-point Hann STFT, hop 320 = 10 ms, 64 slaney mel bands 50 Hz-14 kHz,
#: power -> dB with amin 1e-10 and ref 1.0). PANNs uses ``top_db=None`` (no clipping of the dynamic range), so
#: ``top_db`` is None here (our default, 80 dB, would clip quiet bands below the clip's peak - 80 dB and shift the
#: input distribution the pretrained ``bn0`` expects). Filterbank: torchaudio ``melscale_fbanks(norm="slaney",
#: mel_scale="slaney")``, the same construction as ``librosa.filters.mel`` used by torchlibrosa; STFT padding is
#: reflect (``torch.stft`` default, as torchlibrosa's ``pad_mode="reflect"``). Remaining difference: resampling
#: (torchaudio sinc vs librosa at data preparation time). ``duration_s`` is left to the data set (AudioSet: 10 s).
CNN14_FRONTEND = FrontEndConfig(
    sample_rate=32000,
    n_fft=1024,
    hop_length=320,
    win_length=1024,
    window="hann",
    center=True,
    n_mels=64,
    f_min=50.0,
    f_max=14000.0,
    top_db=None,
)

CNN14_CHANNELS = (64, 128, 256, 512, 1024, 2048)


def _init_layer(layer: nn.Module) -> None:
    """PANNs' initialisation: Xavier-uniform weights, zero bias."""
    nn.init.xavier_uniform_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


class CNN14(nn.Module):
    """``forward(logmel (B, n_mels, T)) -> logits (B, num_classes)``.

    Named hidden maps (``layer_names``), for ``T`` frames and ``M = n_mels`` bands (floor division at each pool):

    * ``conv_blockK`` (K = 1..5): ``(B, channels[K-1], T // 2**K, M // 2**K)`` (after ReLU and 2x2 avg pool);
    * ``conv_block6``: ``(B, channels[5], T // 32, M // 32)`` (1x1 pool, i.e. none);
    * ``fc1``: ``(B, channels[5])`` before its ReLU; ``embedding``: ``(B, channels[5])`` = ``relu(fc1)``.

    Needs ``T >= 32`` and ``M >= 32`` frames/bands. ``channels`` other than :data:`CNN14_CHANNELS` give a
    width-reduced variant (same names, same shape arithmetic; not loadable from the official checkpoints).
    """

    layer_names = (
        "conv_block1",
        "conv_block2",
        "conv_block3",
        "conv_block4",
        "conv_block5",
        "conv_block6",
        "fc1",
        "embedding",
    )
    conv_map_axes = "BCTF"
    head_names = ("fc_head",)
    block_names = ("bn0", "conv_block1", "conv_block2", "conv_block3", "conv_block4", "conv_block5", "conv_block6", "fc1")
    pretrained_skip_prefixes = ("fc_audioset.", "spectrogram_extractor.", "logmel_extractor.")
    pretrained_head_aliases = {"fc_audioset.": "fc_head."}
    min_frames = 32

    def __init__(
        self,
        n_mels: int = 64,
        num_classes: int = 527,
        channels: tuple[int, ...] = CNN14_CHANNELS,
        block_dropout: float = 0.2,
        head_dropout: float = 0.5,
    ):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) != 6:
            raise ValueError(f"CNN14 needs 6 channel counts, got {channels}")
        if n_mels < self.min_frames:
            raise ValueError(f"CNN14 pools the mel axis 5 times: n_mels must be >= {self.min_frames}, got {n_mels}")
        self.n_mels = n_mels
        self.num_classes = num_classes
        self.block_dropout = block_dropout
        self.head_dropout = head_dropout
        self.bn0 = nn.BatchNorm2d(n_mels)
        chans = (1, *channels)
        for i in range(6):
            pool = (2, 2) if i < 5 else (1, 1)
            setattr(self, f"conv_block{i + 1}", ConvBlock(chans[i], chans[i + 1], pool=pool))
        self.fc1 = nn.Linear(channels[-1], channels[-1], bias=True)
        self.embedding = nn.ReLU()
        self.fc_head = nn.Linear(channels[-1], num_classes, bias=True)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                _init_layer(m)

    def features(self, logmel: torch.Tensor) -> torch.Tensor:
        """``(B, M, T)`` -> conv_block6 output ``(B, channels[5], T // 32, M // 32)`` (after its dropout)."""
        if logmel.dim() != 3 or logmel.shape[1] != self.n_mels:
            raise ValueError(f"CNN14 expects log-mel (B, {self.n_mels}, frames), got {tuple(logmel.shape)}")
        if logmel.shape[-1] < self.min_frames:
            raise ValueError(f"CNN14 needs >= {self.min_frames} frames, got {logmel.shape[-1]}")
        x = logmel.transpose(1, 2).unsqueeze(1)  # (B, 1, T, M): PANNs layout
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # BatchNorm over mel bands
        for i in range(6):
            x = getattr(self, f"conv_block{i + 1}")(x)
            x = F.dropout(x, p=self.block_dropout, training=self.training)
        return x

    def embed(self, logmel: torch.Tensor) -> torch.Tensor:
        """``(B, M, T)`` -> clip embedding ``relu(fc1(.))`` ``(B, channels[5])`` (before the head's dropout)."""
        x = self.features(logmel).mean(dim=3)  # mean over frequency: (B, C, T')
        x = x.amax(dim=2) + x.mean(dim=2)  # max + mean over time: (B, C)
        x = F.dropout(x, p=self.head_dropout, training=self.training)
        return self.embedding(self.fc1(x))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = F.dropout(self.embed(logmel), p=self.head_dropout, training=self.training)
        return self.fc_head(x)


def cnn14(
    n_mels: int = 64, num_classes: int = 527, pretrained: str | None = None, load_head: bool = False, **kwargs
) -> CNN14:
    """Registry factory: a :class:`CNN14`, loaded from a PANNs checkpoint when ``pretrained`` is a path.

    The checkpoint must match the model exactly outside the head (see :func:`l2i.backbones.pretrained.load_pretrained`);
    ``load_head=True`` keeps the AudioSet head (``num_classes=527``).
    """
    model = CNN14(n_mels=n_mels, num_classes=num_classes, **kwargs)
    if pretrained is not None:
        from l2i.backbones.pretrained import load_pretrained

        model.load_report = load_pretrained(model, pretrained, load_head=load_head)
    return model
