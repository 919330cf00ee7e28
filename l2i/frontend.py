"""The audio front-end: waveform -> STFT (magnitude, phase) -> log1p|X| (NMF domain) and log-mel dB
(classifier input), and back: magnitude + phase -> waveform.

Pure torch + torchaudio, an ``nn.Module`` so its window and mel filterbank follow the model's device and
dtype. Every method is batched: waveforms are ``(batch, samples)``; spectra are ``(batch, freq, frames)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Literal

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import nn

from l2i.audio import resample, to_mono

__all__ = ["FrontEndConfig", "Features", "AudioFrontEnd", "fix_length", "nmf_domain"]

#: the parameters that decide what a spectrogram frame means; a dictionary learnt with one set of these
#: cannot be used with another.
SPECTRAL_KEYS = ("sample_rate", "n_fft", "hop_length", "win_length", "window", "center")


@dataclass
class FrontEndConfig:
    """Front-end parameters (all in one place so a dictionary artifact can check it matches a model).

    Args:
        sample_rate: rate every waveform is resampled to (Hz).
        n_fft: STFT size; ``n_fft // 2 + 1`` frequency bins.
        hop_length: STFT hop in samples.
        win_length: window length (defaults to ``n_fft``).
        window: ``hann`` or ``hamming``.
        center: pad so frame t is centred on sample ``t * hop`` (``torch.stft`` convention).
        n_mels: mel bands of the classifier input.
        f_min, f_max: mel range in Hz (``f_max`` None = Nyquist).
        top_db: dynamic range kept in the log-mel (None keeps all).
        duration_s: fixed clip length in seconds (None = keep the input length).
        pad_mode: how short clips are lengthened: ``constant`` (zeros) or ``repeat`` (tile the clip).
        crop_mode: which part of a long clip is kept: ``start``, ``center`` or ``random``.
        mel_power: exponent of ``|X|`` fed to the mel filterbank before ``10·log10``: 2 (default, the power
            spectrum) or 1 (the magnitude, as the authors' librosa ``melspectrogram(S=|X|)`` + ``power_to_db``).
    """

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 256
    win_length: int | None = None
    window: Literal["hann", "hamming"] = "hann"
    center: bool = True
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None
    top_db: float | None = 80.0
    duration_s: float | None = None
    pad_mode: Literal["constant", "repeat"] = "constant"
    crop_mode: Literal["start", "center", "random"] = "start"
    mel_power: float = 2.0

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def num_samples(self) -> int | None:
        return None if self.duration_s is None else int(round(self.duration_s * self.sample_rate))

    def num_frames(self, num_samples: int | None = None) -> int:
        """Frames of the STFT of a clip of ``num_samples`` (default: the fixed clip length)."""
        n = self.num_samples if num_samples is None else num_samples
        if n is None:
            raise ValueError("num_frames needs a clip length (duration_s is None)")
        if self.center:
            return n // self.hop_length + 1
        return 1 + (n - (self.win_length or self.n_fft)) // self.hop_length

    def spectral_params(self) -> dict:
        """The parameters a dictionary artifact must agree on."""
        d = asdict(self)
        d["win_length"] = self.win_length or self.n_fft
        d["transform"] = "log1p_magnitude"
        return {k: d[k] for k in (*SPECTRAL_KEYS, "transform")}

    @classmethod
    def from_any(cls, value: "FrontEndConfig | dict | None") -> "FrontEndConfig":
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            known = {f.name for f in fields(cls)}
            unknown = set(value) - known
            if unknown:
                raise ValueError(f"front-end config: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
            return cls(**value)
        raise TypeError(f"front-end config must be a FrontEndConfig or dict, got {type(value).__name__}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Features:
    """Everything the models need from one batch, computed once.

    Shapes: ``waveform (B, samples)``; ``stft`` complex ``(B, F, T)``; ``magnitude``/``phase``/``nmf``
    ``(B, F, T)``; ``logmel (B, n_mels, T)``.

    ``phase`` and ``nmf`` are computed on first use (then kept): a classifier needs only ``logmel``, and the
    phase (an ``atan2`` over every bin) is a large share of the front-end's time on a CPU (figure in the
    README's measured notes).
    """

    waveform: torch.Tensor
    stft: torch.Tensor
    magnitude: torch.Tensor
    logmel: torch.Tensor
    _phase: torch.Tensor | None = field(default=None, repr=False)
    _nmf: torch.Tensor | None = field(default=None, repr=False)

    @property
    def phase(self) -> torch.Tensor:
        if self._phase is None:
            self._phase = self.stft.angle()
        return self._phase

    @property
    def nmf(self) -> torch.Tensor:
        """The NMF domain V = log(1 + |X|)."""
        if self._nmf is None:
            self._nmf = nmf_domain(self.magnitude)
        return self._nmf


def nmf_domain(magnitude: torch.Tensor) -> torch.Tensor:
    """The NMF domain V = log(1 + |X|) of a magnitude spectrogram, any shape."""
    return torch.log1p(magnitude)


def fix_length(
    waveform: torch.Tensor,
    num_samples: int,
    pad_mode: str = "constant",
    crop_mode: str = "start",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pad or crop the last axis to ``num_samples``. ``(…, samples)`` -> ``(…, num_samples)``."""
    n = waveform.shape[-1]
    if n == num_samples:
        return waveform
    if n > num_samples:
        excess = n - num_samples
        if crop_mode == "start":
            start = 0
        elif crop_mode == "center":
            start = excess // 2
        elif crop_mode == "random":
            start = int(torch.randint(0, excess + 1, (1,), generator=generator).item())
        else:
            raise ValueError(f"crop_mode must be start|center|random, got {crop_mode!r}")
        return waveform[..., start : start + num_samples]
    if pad_mode == "constant":
        return F.pad(waveform, (0, num_samples - n))
    if pad_mode == "repeat":
        if n == 0:
            return waveform.new_zeros(*waveform.shape[:-1], num_samples)
        reps = -(-num_samples // n)
        return waveform.repeat(*([1] * (waveform.dim() - 1)), reps)[..., :num_samples]
    raise ValueError(f"pad_mode must be constant|repeat, got {pad_mode!r}")


class AudioFrontEnd(nn.Module):
    """Batched STFT front-end with its inverse.

    ``forward(waveform (B, samples) or (B, C, samples), sample_rate=None) -> Features``.
    """

    #: floor under amplitudes before the log (keeps silent clips finite: log10(1e-10) = -100 dB)
    amin: float = 1e-10

    def __init__(self, config: FrontEndConfig | dict | None = None, **overrides):
        super().__init__()
        cfg = FrontEndConfig.from_any(config)
        if overrides:
            cfg = FrontEndConfig(**{**cfg.to_dict(), **overrides})
        self.config = cfg
        if not float(cfg.mel_power) > 0:
            raise ValueError(f"front-end mel_power must be > 0 (2 = power, 1 = magnitude), got {cfg.mel_power}")
        win_length = cfg.win_length or cfg.n_fft
        if win_length > cfg.n_fft:
            raise ValueError(f"win_length ({win_length}) must be <= n_fft ({cfg.n_fft})")
        window = torch.hann_window(win_length) if cfg.window == "hann" else torch.hamming_window(win_length)
        self.register_buffer("window", window, persistent=False)
        fbanks = AF.melscale_fbanks(
            n_freqs=cfg.n_freq,
            f_min=cfg.f_min,
            f_max=cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2,
            n_mels=cfg.n_mels,
            sample_rate=cfg.sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer("mel_fbanks", fbanks, persistent=False)  # (F, n_mels)

    # -- waveform preparation ---------------------------------------------------------------------------
    def prepare(self, waveform: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """Mono, resample to the configured rate, fix the length. -> ``(B, samples)``."""
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        if waveform.dim() == 3:
            waveform = to_mono(waveform)
        if waveform.dim() != 2:
            raise ValueError(f"waveform must be (B, samples) or (B, C, samples), got {tuple(waveform.shape)}")
        if sample_rate is not None:
            waveform = resample(waveform, int(sample_rate), self.config.sample_rate)
        if self.config.num_samples is not None:
            waveform = fix_length(waveform, self.config.num_samples, self.config.pad_mode, self.config.crop_mode)
        return waveform

    # -- analysis ---------------------------------------------------------------------------------------
    def stft(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, samples)`` -> complex ``(B, F, T)``."""
        cfg = self.config
        return torch.stft(
            waveform.float(),
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length or cfg.n_fft,
            window=self.window.to(waveform.device),
            center=cfg.center,
            return_complex=True,
        )

    def nmf_from_magnitude(self, magnitude: torch.Tensor) -> torch.Tensor:
        """The NMF domain V = log(1 + |X|), ``(B, F, T)``."""
        return nmf_domain(magnitude)

    def logmel_from_magnitude(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Log-mel in dB of the power spectrum: ``(B, F, T)`` -> ``(B, n_mels, T)``; finite for silence."""
        power = magnitude.pow(2) if self.config.mel_power == 2.0 else magnitude.pow(self.config.mel_power)
        mel = torch.einsum("bft,fm->bmt", power, self.mel_fbanks.to(power.dtype))
        db = 10.0 * torch.log10(mel.clamp_min(self.amin))
        if self.config.top_db is not None:
            peak = db.amax(dim=(-2, -1), keepdim=True)
            db = torch.maximum(db, peak - self.config.top_db)
        return db

    def magnitude_phase(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spec = self.stft(waveform)
        return spec.abs(), spec.angle()

    def nmf_spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, samples)`` -> V = log1p|X| ``(B, F, T)``."""
        return self.nmf_from_magnitude(self.stft(waveform).abs())

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, samples)`` -> log-mel dB ``(B, n_mels, T)``."""
        return self.logmel_from_magnitude(self.stft(waveform).abs())

    def forward(self, waveform: torch.Tensor, sample_rate: int | None = None) -> Features:
        wav = self.prepare(waveform, sample_rate)
        spec = self.stft(wav)
        mag = spec.abs()
        return Features(waveform=wav, stft=spec, magnitude=mag, logmel=self.logmel_from_magnitude(mag))

    # -- synthesis --------------------------------------------------------------------------------------
    def inverse(self, magnitude: torch.Tensor, phase: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Magnitude + phase ``(B, F, T)`` -> waveform ``(B, samples)`` by inverse STFT."""
        cfg = self.config
        spec = torch.polar(magnitude.float(), phase.float())
        return torch.istft(
            spec,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length or cfg.n_fft,
            window=self.window.to(magnitude.device),
            center=cfg.center,
            length=length,
        )

    def inverse_nmf(self, nmf_spectrogram: torch.Tensor, phase: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """A spectrum in the NMF domain (log1p|X|) + phase -> waveform (``expm1`` undoes ``log1p``)."""
        return self.inverse(torch.expm1(nmf_spectrogram.clamp_min(0)), phase, length)

    def extra_repr(self) -> str:
        c = self.config
        return f"sr={c.sample_rate}, n_fft={c.n_fft}, hop={c.hop_length}, n_mels={c.n_mels}, duration_s={c.duration_s}"
