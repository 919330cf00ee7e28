"""An L-MAC-style mask decoder (Paissan, Ravanelli, Subakan: "Listenable Maps for Audio Classifiers", ICML 2024),
in pure torch.

A small decoder reads the frozen classifier's hidden maps (named layers, as Ψ does) and a class, and outputs a
time-frequency mask ``m ∈ (0, 1)^{F×T}`` on the linear-frequency STFT magnitude ``|X|``. Trained (classifier
frozen) so that the **masked-in** input ``m ⊙ |X|`` keeps the class and the **masked-out** input
``(1 − m) ⊙ |X|`` loses it, with a mask-size regulariser (L-MAC's objective; the SpeechBrain recipe's
``l_in_w · CE(f(m⊙X), ŷ) − l_out_w · CE(f((1−m)⊙X), ŷ) + reg_w_l1 · mean|m| + reg_w_tv · TV(m)``, ŷ the
classifier's own prediction). The masked inputs go through the classifier's own log-mel and backbone, so the
gradient reaches the mask. Our choices: the ``−CE`` of the masked-out input is capped at ``out_cap`` (nats) so
the objective stays bounded below; the decoder is class-conditioned (a class embedding) so any class, not only
the prediction, can be explained; multilabel uses binary cross-entropy of the explained class.

Decoder: every tapped map -> 1×1 conv to ``hidden`` channels -> bilinear upsampling to the finest tapped grid,
summed, + class embedding, two 3×3 conv + ReLU and a 1×1 conv to ``head_channels`` (on that coarse grid: cheap on a
CPU); upsampled to the log-mel grid (M, T) and mapped to linear frequency by the normalised mel filterbank
transpose; concatenated with the (normalised) log-magnitude ``log1p|X|``; a 3×3 conv and a sigmoid give the mask
``(B, F, T)`` at full STFT resolution.

``interpret(waveform (B, N), target=None, threshold=0.2) -> Interpretation`` as every interpreter (component-free:
``relevance`` / ``components`` are ``(B, C, 0)``, see :mod:`l2i.baselines.common`).
"""

from __future__ import annotations

from typing import Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from l2i.backbones import capture_hidden
from l2i.baselines.common import ClassifierBaseline, check_threshold, mask_interpretation, mel_to_linear, mel_to_linear_matrix
from l2i.interpreter.interpretation import Interpretation, select_classes

__all__ = ["LMACDecoder", "LMACInterpreter", "LMAC_DEFAULT_WEIGHTS", "total_variation"]

#: loss weights of the SpeechBrain ESC-50 L-MAC recipe: masked-in CE, masked-out −CE, L1 and TV of the mask
LMAC_DEFAULT_WEIGHTS = {"in": 4.0, "out": 0.2, "l1": 0.4, "tv": 0.0}


def total_variation(mask: Tensor) -> Tensor:
    """Mean squared difference of neighbouring bins of ``mask (B, F, T)`` along both axes (scalar)."""
    return (mask[:, 1:] - mask[:, :-1]).pow(2).mean() + (mask[:, :, 1:] - mask[:, :, :-1]).pow(2).mean()


def _to_bcft(x: Tensor, axes: str, name: str) -> Tensor:
    """A hidden map as ``(B, C, F', T')`` (mel before time); ``(B, C, T')`` maps get F' = 1."""
    if x.dim() == 4:
        return x.transpose(-2, -1) if axes == "BCTF" else x
    if x.dim() == 3:
        return x[:, :, None, :]
    raise ValueError(f"L-MAC decoder: layer {name!r} gives a {x.dim()}-D map; need (B, C, F', T') or (B, C, T')")


class LMACDecoder(nn.Module):
    """``forward(maps {layer: map}, classes (B,), nmf (B, F, T), mel_shape (M, T)) -> mask (B, F, T)`` in (0, 1).

    Args:
        channels: ``{layer: channels}`` of the tapped maps.
        num_classes: C (size of the class embedding).
        mel_to_linear: ``(F, M)`` matrix (:func:`~l2i.baselines.common.mel_to_linear_matrix`).
        hidden: decoder width (on the finest tapped grid).
        conv_map_axes: ``BCFT`` or ``BCTF`` (the backbone's).
        head_channels: channels brought to the full STFT grid.
    """

    def __init__(self, channels: Mapping[str, int], num_classes: int, mel_to_linear: Tensor, hidden: int = 32,
                 conv_map_axes: str = "BCFT", head_channels: int = 8):
        super().__init__()
        if not channels:
            raise ValueError("L-MAC decoder needs at least one tapped layer")
        self.layers = list(channels)
        self.axes = conv_map_axes
        self.proj = nn.ModuleDict({n.replace(".", "_"): nn.Conv2d(int(c), hidden, 1) for n, c in channels.items()})
        self.class_embedding = nn.Embedding(int(num_classes), hidden)
        self.body = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, head_channels, 1),
        )
        self.head = nn.Conv2d(head_channels + 1, 1, 3, padding=1)
        self.register_buffer("mel_to_linear", mel_to_linear.float(), persistent=False)

    def forward(self, maps: Mapping[str, Tensor], classes: Tensor, nmf: Tensor, mel_shape: tuple[int, int]) -> Tensor:
        M, T = mel_shape
        grids = {n: _to_bcft(maps[n].float(), self.axes, n) for n in self.layers}
        size = max((g.shape[-2:] for g in grids.values()), key=lambda s: s[0] * s[1])  # the finest tapped grid
        x = 0
        for name, g in grids.items():
            p = self.proj[name.replace(".", "_")](g)
            x = x + (p if p.shape[-2:] == size else F.interpolate(p, size=size, mode="bilinear", align_corners=False))
        x = torch.relu(x + self.class_embedding(classes.long())[:, :, None, None])
        x = self.body(x)  # (B, head_channels, F', T'): the heavy convolutions run on the coarse grid
        x = F.interpolate(x, size=(M, T), mode="bilinear", align_corners=False)
        lin = mel_to_linear(x, self.mel_to_linear)  # (B, head_channels, F, T)
        Tn = nmf.shape[-1]
        if lin.shape[-1] != Tn:
            lin = F.interpolate(lin, size=(lin.shape[-2], Tn), mode="nearest")
        v = nmf / nmf.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
        return torch.sigmoid(self.head(torch.cat([lin, v[:, None]], dim=1)))[:, 0]


class LMACInterpreter(ClassifierBaseline):
    """The frozen classifier + the L-MAC decoder.

    Args:
        frontend, backbone: the classifier's (frozen, eval).
        task: ``multiclass`` | ``multilabel``; num_classes: C (default: the backbone's last linear layer).
        layers: tapped layers (default: the backbone's last three ``layer_names``).
        hidden: decoder width.
        mask: ``soft`` (the decoder's mask) or ``threshold`` (1 where it exceeds τ) at interpretation time.
        class_threshold: multilabel decision threshold of "the classifier's prediction".
        probe_frames: frames of the dummy input that sizes the decoder.
    """

    name = "lmac"

    def __init__(self, frontend: nn.Module, backbone: nn.Module, task: Literal["multiclass", "multilabel"] = "multiclass",
                 num_classes: int | None = None, layers: Sequence[str] | None = None, hidden: int = 32,
                 mask: Literal["soft", "threshold"] = "soft", class_threshold: float = 0.5, probe_frames: int | None = None):
        super().__init__()
        self._init_classifier(frontend, backbone, task, num_classes)
        if mask not in ("soft", "threshold"):
            raise ValueError(f"lmac: mask must be soft|threshold, got {mask!r}")
        self.mask_mode, self.class_threshold = mask, class_threshold
        names = list(layers) if layers else list(getattr(backbone, "layer_names", ()))[-3:]
        if not names:
            raise ValueError("lmac: the backbone names no tappable layers (layer_names); give `layers`")
        cfg = frontend.config
        T = int(probe_frames or (cfg.num_frames() if cfg.num_samples else 128))
        T = max(T, int(getattr(backbone, "min_frames", 1)))
        device = next((p.device for p in backbone.parameters()), torch.device("cpu"))
        backbone.eval()
        with torch.no_grad(), capture_hidden(backbone, names, detach=True) as maps:
            backbone(torch.zeros(2, cfg.n_mels, T, device=device))
        missing = [n for n in names if n not in maps]
        if missing:
            raise ValueError(f"lmac: layers {missing} produced no map; tappable: {list(getattr(backbone, 'layer_names', ()))}")
        self.layers = names
        matrix = mel_to_linear_matrix(self._mel_fbanks, "transpose")
        self.decoder = LMACDecoder({n: int(maps[n].shape[1]) for n in names}, self.num_classes, matrix, hidden=hidden,
                                   conv_map_axes=getattr(backbone, "conv_map_axes", "BCFT")).to(device)
        self.settings = {"layers": names, "hidden": hidden, "mask": mask}
        self.train(self.training)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.decoder.parameters())

    def masks(self, waveform: Tensor, classes: Tensor | None = None, sample_rate: int | None = None):
        """``waveform (B, N)`` -> ``(features, classifier_logits (B, C), classes (B,), mask (B, F, T))``; ``classes``
        default the classifier's arg-max (multilabel: its most probable class)."""
        with torch.no_grad():
            features = self.frontend(waveform, sample_rate)
            with capture_hidden(self.backbone, self.layers, detach=True) as maps:
                logits = self.backbone(features.logmel)
            maps = dict(maps)
        if classes is None:
            classes = logits.argmax(-1)
        mask = self.decoder(maps, classes, features.nmf, tuple(features.logmel.shape[-2:]))
        return features, logits, classes, mask, maps

    def losses(self, waveform: Tensor, weights: Mapping[str, float] | None = None, out_cap: float = 5.0,
               sample_rate: int | None = None, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """L-MAC's objective on a batch, explaining the classifier's prediction.

        Returns scalars ``in`` (CE of the masked-in input), ``out`` (CE of the masked-out input, capped at
        ``out_cap``), ``l1`` (mean mask), ``tv`` (:func:`total_variation`), ``loss`` (weighted: ``in·w_in −
        out·w_out + l1·w_l1 + tv·w_tv``), and for monitoring ``fid_in`` (fraction of clips whose masked-in
        arg-max is the classifier's) and ``mask_mean``.
        """
        w = {**LMAC_DEFAULT_WEIGHTS, **(weights or {})}
        unknown = set(w) - set(LMAC_DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"lmac loss_weights: unknown key(s) {sorted(unknown)}; known: {sorted(LMAC_DEFAULT_WEIGHTS)}")
        classes = None
        if self.task == "multilabel":
            with torch.no_grad():
                logits = self.backbone(self.frontend(waveform, sample_rate).logmel)
            active = (logits.sigmoid() > self.class_threshold).float() + 1e-3 * logits.softmax(-1)
            classes = torch.multinomial(active, 1, generator=generator).squeeze(-1)
        features, logits, classes, mask, _ = self.masks(waveform, classes, sample_rate)
        mag = features.magnitude
        l_in = self.classifier.classify_magnitude(mask * mag)
        l_out = self.classifier.classify_magnitude((1 - mask) * mag)
        if self.task == "multiclass":
            ce_in = F.cross_entropy(l_in, classes)
            ce_out = F.cross_entropy(l_out, classes, reduction="none").clamp(max=out_cap).mean()
            fid = (l_in.argmax(-1) == logits.argmax(-1)).float().mean()
        else:
            ones = torch.ones_like(classes, dtype=l_in.dtype)
            pick = lambda z: z.gather(1, classes[:, None])[:, 0]  # noqa: E731
            ce_in = F.binary_cross_entropy_with_logits(pick(l_in), ones)
            ce_out = F.binary_cross_entropy_with_logits(pick(l_out), ones, reduction="none").clamp(max=out_cap).mean()
            fid = ((pick(l_in) > 0) == (pick(logits) > 0)).float().mean()
        l1 = mask.abs().mean()
        tv = total_variation(mask)
        loss = w["in"] * ce_in - w["out"] * ce_out + w["l1"] * l1 + w["tv"] * tv
        return {"loss": loss, "in": ce_in.detach(), "out": ce_out.detach(), "l1": l1.detach(), "tv": tv.detach(),
                "fid_in": fid.detach(), "mask_mean": mask.detach().mean()}

    @torch.no_grad()
    def interpret(self, waveform: Tensor, target: Tensor | int | Sequence[int] | None = None, threshold: float = 0.2, *,
                  sample_rate: int | None = None, class_threshold: float | Tensor | None = None) -> Interpretation:
        """The decoder's mask for each explained class of ``waveform (B, N)`` -> :class:`Interpretation`
        (``threshold``: τ of ``mask="threshold"``; recorded otherwise)."""
        tau = check_threshold(threshold)
        was = self.training
        self.eval()
        try:
            features = self.frontend(waveform, sample_rate)
            with capture_hidden(self.backbone, self.layers, detach=True) as maps:
                logits = self.backbone(features.logmel)
            maps = dict(maps)
            thr = self.class_threshold if class_threshold is None else class_threshold
            classes = select_classes(logits, self.task, target, thr)
            mel_shape = tuple(features.logmel.shape[-2:])
            masks = torch.stack([self.decoder(maps, classes[:, j].clamp_min(0), features.nmf, mel_shape)
                                 for j in range(classes.shape[1])], dim=1)  # (B, C', F, T)
            if self.mask_mode == "threshold":
                masks = (masks > tau).to(masks.dtype)
            return mask_interpretation(self.frontend, features, masks, classes, logits, self.num_classes, tau)
        finally:
            self.train(was)
