"""Audio file I/O: any file soundfile reads (WAV / FLAC / OGG / MP3) -> float32 mono at a chosen rate.

Pure torch + soundfile + torchaudio (for resampling); no Lightning. torchaudio's own ``load`` / ``save``
need torchcodec and FFmpeg, which we do not require, so all file access goes through soundfile.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

__all__ = ["AudioFileError", "audio_info", "load_audio", "save_audio", "resample", "to_mono"]


class AudioFileError(RuntimeError):
    """An audio file is missing, empty or unreadable. The message always names the file."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def audio_info(path: str | os.PathLike) -> sf._SoundFileInfo:
    """``soundfile.info`` with the file-naming error contract of :func:`load_audio`."""
    path = Path(path)
    if not path.exists():
        raise AudioFileError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise AudioFileError(path, "file is empty (0 bytes)")
    try:
        return sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError by format
        raise AudioFileError(path, f"cannot read audio header ({exc})") from exc


def to_mono(waveform: torch.Tensor) -> torch.Tensor:
    """Average channels. ``(samples,)`` stays; ``(channels, samples)`` -> ``(samples,)``;
    ``(batch, channels, samples)`` -> ``(batch, samples)``."""
    if waveform.dim() == 1:
        return waveform
    if waveform.dim() == 2:
        return waveform.mean(dim=0)
    if waveform.dim() == 3:
        return waveform.mean(dim=1)
    raise ValueError(f"to_mono expects 1-3 dims, got shape {tuple(waveform.shape)}")


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited (sinc) resampling along the last axis; a no-op when the rates are equal."""
    if int(orig_rate) == int(new_rate):
        return waveform
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    return AF.resample(waveform, int(orig_rate), int(new_rate))


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    *,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> tuple[torch.Tensor, int]:
    """Read an audio file as float32 mono, resampled to ``sample_rate`` if given.

    Returns ``(waveform (samples,), rate)``. Raises :class:`AudioFileError` naming the file when it is
    missing, empty, unreadable, holds no samples, or holds non-finite samples.
    """
    info = audio_info(path)
    start = int(round(offset_s * info.samplerate))
    stop = None if duration_s is None else start + int(round(duration_s * info.samplerate))
    try:
        data, rate = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioFileError(path, f"cannot decode audio ({exc})") from exc
    if data.shape[0] == 0:
        raise AudioFileError(path, "file holds no audio samples")
    if not np.isfinite(data).all():
        raise AudioFileError(path, "file holds NaN or infinite samples")
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1), dtype=np.float32))
    if sample_rate is not None and rate != sample_rate:
        wav = resample(wav, rate, sample_rate)
        rate = sample_rate
    return wav.contiguous(), int(rate)


def save_audio(path: str | os.PathLike, waveform: torch.Tensor, sample_rate: int) -> Path:
    """Write ``(samples,)`` or ``(channels, samples)`` float audio; the format follows the suffix.

    Samples are clipped to [-1, 1] for integer formats (WAV default subtype PCM_16 would wrap)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = waveform.detach().to("cpu", torch.float32)
    if data.dim() == 2:
        data = data.T
    arr = data.numpy()
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: refusing to write NaN or infinite samples")
    subtype = "FLOAT" if path.suffix.lower() == ".wav" else None
    sf.write(str(path), arr, int(sample_rate), subtype=subtype)
    return path
