"""Audio file I/O: any file soundfile reads (WAV / FLAC / OGG / MP3) -> float32 mono at a chosen rate.

Pure torch + soundfile + torchaudio (for resampling); no Lightning. torchaudio's own ``load`` / ``save``
need torchcodec and FFmpeg, which we do not require, so all file access goes through soundfile.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
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


@functools.lru_cache(maxsize=16)
def _cpu_resampler(orig_rate: int, new_rate: int) -> torchaudio.transforms.Resample:
    """One resampler per rate pair and process: ``torchaudio.functional.resample`` rebuilds its kernel on
    every call (~0.25 s of a 0.35 s call for a 5 s clip 44.1 -> 16 kHz). Same filter (``sinc_interp_hann``,
    width 6, rolloff 0.99) as :func:`resample`."""
    return torchaudio.transforms.Resample(orig_rate, new_rate)


def _all_finite(x: np.ndarray) -> bool:
    # one sum instead of an elementwise test and its boolean array: the sum is non-finite iff a sample is,
    # or if it overflowed (only huge float samples can do that; then the exact test decides)
    return bool(np.isfinite(x.sum())) or bool(np.isfinite(x).all())


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    *,
    offset_s: float = 0.0,
    duration_s: float | None = None,
    max_samples: int | None = None,
    out: np.ndarray | None = None,
) -> tuple[torch.Tensor, int]:
    """Read an audio file as float32 mono, resampled to ``sample_rate`` if given.

    Returns ``(waveform (samples,), rate)``. Raises :class:`AudioFileError` naming the file when it is
    missing, empty, unreadable, holds no samples, or holds non-finite samples.

    ``max_samples``: return at most this many samples (at the returned rate); only the frames they need are
    decoded (when resampling, 0.1 s more, so that they equal the first samples of a whole-file decode).
    ``out``: a writable C-contiguous float32 ``(n,)`` array to decode into instead of a new array (a mono
    file at the returned rate is read straight into it, with no copy); ``n`` caps ``max_samples`` and the
    returned tensor is a view of ``out[:samples]``.

    The file is opened once (header and samples); the rate is read from it.
    """
    path_s = str(path)
    try:
        size = os.stat(path_s).st_size
    except FileNotFoundError:
        raise AudioFileError(path, "file does not exist") from None
    except OSError as exc:
        raise AudioFileError(path, f"cannot read audio header ({exc})") from exc
    if size == 0:
        raise AudioFileError(path, "file is empty (0 bytes)")
    if out is not None:
        if out.dtype != np.float32 or out.ndim != 1 or not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError("out must be a writable C-contiguous float32 1-D array")
        max_samples = len(out) if max_samples is None else min(int(max_samples), len(out))
    try:
        fh = sf.SoundFile(path_s)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError by format
        raise AudioFileError(path, f"cannot read audio header ({exc})") from exc
    with fh:
        rate, channels = int(fh.samplerate), int(fh.channels)
        target = rate if sample_rate is None else int(sample_rate)
        start = int(round(offset_s * rate))
        stop = None if duration_s is None else start + int(round(duration_s * rate))
        if max_samples is not None:
            needed = -(-int(max_samples) * rate // target)  # ceil: file frames behind max_samples outputs
            if target != rate:
                needed += rate // 10  # the resampling filter's right edge sees real samples
            stop = start + needed if stop is None else min(stop, start + needed)
        start, stop, _ = slice(start, stop).indices(fh.frames)
        frames = max(0, stop - start)
        direct = out is not None and channels == 1 and target == rate
        try:
            if start:
                fh.seek(start)
            if direct:
                data = fh.read(frames, dtype="float32", out=out[:frames])
            else:
                data = fh.read(frames, dtype="float32", always_2d=channels > 1)
        except Exception as exc:
            raise AudioFileError(path, f"cannot decode audio ({exc})") from exc
    if data.shape[0] == 0:
        raise AudioFileError(path, "file holds no audio samples")
    if not _all_finite(data):
        raise AudioFileError(path, "file holds NaN or infinite samples")
    if data.ndim == 2:
        data = data.mean(axis=1, dtype=np.float32)
    wav = torch.from_numpy(data)
    if target != rate:
        with torch.no_grad():
            wav = _cpu_resampler(rate, target)(wav)
        rate = target
    if max_samples is not None and wav.shape[0] > max_samples:
        wav = wav[:max_samples]
    if out is not None and not direct:
        n = wav.shape[0]
        out[:n] = wav.numpy()
        wav = torch.from_numpy(out[:n])
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
