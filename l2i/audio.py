"""Audio file I/O: any file soundfile reads (WAV / FLAC / OGG / MP3) -> float32 mono at a chosen rate.

Pure torch + soundfile + torchaudio (for resampling); no Lightning. torchaudio's own ``load`` / ``save``
need torchcodec and FFmpeg, which we do not require, so all file access goes through soundfile.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
import torchaudio.functional as AF

__all__ = ["AudioFileError", "audio_info", "load_audio", "save_audio", "resample", "to_mono", "wav_truncation"]


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


def wav_truncation(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(bytes the WAV header declares for the data chunk, bytes present)`` when the file is shorter than its
    header says (a cut download or copy: libsndfile silently decodes what is there), else ``None`` (also for
    non-RIFF files and streamed WAVs whose data size is left unset)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = os.fstat(fh.fileno()).st_size
            pos = 12
            while pos + 8 <= size:
                fh.seek(pos)
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                declared = int.from_bytes(chunk[4:8], "little")
                if chunk[:4] == b"data":
                    present = size - (pos + 8)
                    if declared in (0, 0xFFFFFFFF) or present >= declared:
                        return None
                    return declared, present
                pos += 8 + declared + (declared & 1)
    except OSError:
        return None
    return None


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


class PolyphaseResampler:
    """torchaudio's sinc resampler (``transforms.Resample(orig_rate, new_rate)``: ``sinc_interp_hann``, width 6,
    rolloff 0.99) computed only where its kernel is non-zero. ``(..., samples)`` -> ``(..., ceil(samples *
    new / orig))``, the same samples as torchaudio's to float rounding (bit-equal for 44.1 -> 16 kHz).

    Why by hand: torchaudio applies its ``(new, 2 * width + orig)`` kernel as one strided convolution, so every
    output sample costs the whole row although only ~2 * 6 * orig / new of its taps are non-zero: 44.1 ->
    16 kHz (orig 441, new 160 after the gcd) computes 475 products per output sample, 34 of them non-zero.
    Here the ``new`` output phases are cut into groups of ``phases`` consecutive ones; a group's non-zero taps
    lie in a window of ``L`` input samples (``L = 75`` for 44.1 -> 16 kHz with 16 phases), so one batched
    product ``(groups, blocks, L) @ (groups, L, phases)`` over strided views of the padded input does all the
    work with no copy of the input, several times faster than torchaudio's convolution on a CPU (timings in
    the README's measured notes). With few phases (``new`` < 16, e.g. 2:1 decimation)
    ``m`` blocks are taken as one (``m * new`` phases), so that the product is a matrix product, not a
    matrix-vector one. The group size minimises the products done, weighted for the efficiency of narrow
    products (the sizes it picks are in the README's measured notes).

    CPU only (the strided views and the kernel live on the CPU); :func:`resample` is the device-agnostic one.
    """

    def __init__(self, orig_rate: int, new_rate: int):
        ref = torchaudio.transforms.Resample(int(orig_rate), int(new_rate))
        self.orig_rate, self.new_rate = int(orig_rate), int(new_rate)
        orig, new, self.width = int(orig_rate) // ref.gcd, int(new_rate) // ref.gcd, int(ref.width)
        self.ratio = (new, orig)  # output samples per input samples, reduced
        kernel = ref.kernel[:, 0].double()  # (new, 2 * width + orig): phase p's taps over the padded input
        self.reps = -(-16 // new)  # blocks taken as one: m * new phases over m * orig input samples
        m = self.reps
        wide = torch.zeros(m * new, kernel.shape[1] + (m - 1) * orig, dtype=kernel.dtype)
        for r in range(m):  # phase r * new + p is phase p, r blocks (r * orig samples) later
            wide[r * new:(r + 1) * new, r * orig:r * orig + kernel.shape[1]] = kernel
        self.orig, self.new = m * orig, m * new
        nonzero = wide != 0
        taps = torch.arange(wide.shape[1])
        first = torch.where(nonzero, taps, wide.shape[1]).min(dim=1).values
        last = torch.where(nonzero, taps, -1).max(dim=1).values + 1

        def plan(phases: int):
            groups = -(-self.new // phases)
            lo = [int(first[g * phases:(g + 1) * phases].min()) for g in range(groups)]
            hi = [int(last[g * phases:(g + 1) * phases].max()) for g in range(groups)]
            step = (lo[-1] - lo[0]) // (groups - 1) if groups > 1 else 0  # window g starts at base + g * step
            base = min(lo[g] - g * step for g in range(groups))
            length = max(hi[g] - base - g * step for g in range(groups))
            cost = self.new * length * (1 + 16 / phases)  # products per block, narrow products cost more
            return cost, phases, groups, step, base, length

        candidates = [p for p in (4, 8, 16, 32, 48, 64, 96, 128) if p < self.new] + [self.new]
        _, self.phases, self.groups, self.step, base, self.length = min(plan(p) for p in candidates)
        # the windows may reach past the kernel's ends: pad kernel and input alike, so they stay in range
        self.pad_left = max(0, -base)
        self.pad_right = max(0, base + (self.groups - 1) * self.step + self.length - wide.shape[1])
        wide = torch.nn.functional.pad(wide, (self.pad_left, self.pad_right))
        self.base = base + self.pad_left
        weights = torch.zeros(self.groups, self.length, self.phases, dtype=kernel.dtype)
        for g in range(self.groups):
            start = self.base + g * self.step
            rows = wide[g * self.phases:(g + 1) * self.phases, start:start + self.length]
            weights[g, :, :rows.shape[0]] = rows.T
        self.weights = weights.float()  # (groups, L, phases)

    @property
    def margins(self) -> tuple[int, int]:
        """Zeros before and after the input that :meth:`resample_padded` expects."""
        return self.width + self.pad_left, self.width + self.orig + self.pad_right

    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        if not waveform.is_floating_point():
            raise TypeError(f"expected a floating-point waveform, got {waveform.dtype}")
        shape, length = waveform.shape, waveform.shape[-1]
        padded = torch.nn.functional.pad(waveform.reshape(-1, length).float(), self.margins)
        out = torch.stack([self.resample_padded(row, length) for row in padded])
        return out.reshape(*shape[:-1], out.shape[-1]).to(waveform.dtype)

    def resample_padded(self, padded: torch.Tensor, length: int) -> torch.Tensor:
        """Resample one signal of ``length`` samples given inside its zero margins: ``padded`` is a
        contiguous float32 CPU ``(left + length + right,)`` tensor (:attr:`margins`), so a decoder can write
        the samples straight into it (no padding copy). -> ``(ceil(length * new / orig),)``."""
        left, right = self.margins
        if padded.dim() != 1 or padded.shape[0] != left + length + right or not padded.is_contiguous():
            raise ValueError(f"padded must be a contiguous ({left} + {length} + {right},) tensor, "
                             f"got {tuple(padded.shape)}")
        blocks = length // self.orig + 1
        target = -(-self.ratio[0] * length // self.ratio[1])  # ceil(new * length / orig)
        views = padded.as_strided((self.groups, blocks, self.length), (self.step, self.orig, 1),
                                  padded.storage_offset() + self.base)
        with torch.no_grad():
            out = torch.bmm(views, self.weights)  # (groups, blocks, phases)
        # -> (blocks, groups * phases): the output samples in time order (the last group's unused phases,
        # when groups * phases > new, dropped)
        out = out.transpose(0, 1).reshape(blocks, -1)[:, :self.new]
        return out.reshape(-1)[:target]


@functools.lru_cache(maxsize=16)
def _cpu_resampler(orig_rate: int, new_rate: int) -> PolyphaseResampler:
    """One resampler per rate pair and process (its kernel is built once: ``torchaudio.functional.resample``
    rebuilds it on every call, most of the call's time for a short clip); the same filter as :func:`resample`."""
    return PolyphaseResampler(orig_rate, new_rate)


def _pcm16_to_float(data: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """16-bit PCM ``(frames,)`` / ``(frames, channels)`` -> float32 in [-1, 1): ``x / 32768``, the scale
    libsndfile uses when it reads such a file as float (bit-equal to ``SoundFile.read(dtype="float32")``,
    tested), and faster than reading as float32 (README's measured notes).
    Channels are averaged afterwards in float32, as for float reads (the sum of two scaled int16 is exact).
    ``out``: where to write (a float32 array of ``data``'s shape)."""
    return np.multiply(data, np.float32(1.0 / 32768.0), out=out, dtype=np.float32)


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
    _check_not_empty(path)
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
        if fh.format == "WAV":
            cut = wav_truncation(path_s)
            if cut is not None:
                warnings.warn(f"{path_s}: WAV data chunk is truncated ({cut[1]:,} of the {cut[0]:,} bytes its header "
                              "declares); decoding the samples present", RuntimeWarning, stacklevel=2)
        target = rate if sample_rate is None else int(sample_rate)
        start, stop = _frame_range(fh.frames, rate, target, offset_s, duration_s, max_samples)
        frames = max(0, stop - start)
        resampler = _cpu_resampler(rate, target) if target != rate else None
        if resampler is not None:  # decode into the middle of the resampler's zero-padded input
            left, right = resampler.margins
            padded = np.empty(left + frames + right, dtype=np.float32)
            dest = padded[left:left + frames]
        else:
            dest = None if out is None else out[:frames]
        try:
            if start:
                fh.seek(start)
            data = _read_mono(fh, frames, channels, dest)
        except Exception as exc:
            raise AudioFileError(path, f"cannot decode audio ({exc})") from exc
    if data is None:
        raise AudioFileError(path, "file holds NaN or infinite samples")
    n = data.shape[0]
    if n == 0:
        raise AudioFileError(path, "file holds no audio samples")
    if resampler is not None:
        padded[:left] = 0
        padded[left + n:left + n + right] = 0
        wav = resampler.resample_padded(torch.from_numpy(padded[:left + n + right]), n)
        rate = target
    else:
        wav = torch.from_numpy(data)
    if max_samples is not None and wav.shape[0] > max_samples:
        wav = wav[:max_samples]
    if out is not None and not np.may_share_memory(wav.numpy(), out):
        out[:wav.shape[0]] = wav.numpy()
        wav = torch.from_numpy(out[:wav.shape[0]])
    return wav.contiguous(), int(rate)


def _check_not_empty(path: str | os.PathLike) -> None:
    """:class:`AudioFileError` naming ``path`` when it does not exist, cannot be read or has 0 bytes."""
    try:
        size = os.stat(str(path)).st_size
    except FileNotFoundError:
        raise AudioFileError(path, "file does not exist") from None
    except OSError as exc:
        raise AudioFileError(path, f"cannot read audio header ({exc})") from exc
    if size == 0:
        raise AudioFileError(path, "file is empty (0 bytes)")


def _frame_range(n_frames: int, rate: int, target: int, offset_s: float, duration_s: float | None,
                 max_samples: int | None) -> tuple[int, int]:
    """The ``[start, stop)`` file frames :func:`load_audio` decodes: from ``offset_s`` for ``duration_s`` (to the
    end when None), cut to what ``max_samples`` outputs at ``target`` need (plus 0.1 s when resampling, so that
    they equal the first samples of a whole-file decode), within the file's ``n_frames``."""
    start = int(round(offset_s * rate))
    stop = None if duration_s is None else start + int(round(duration_s * rate))
    if max_samples is not None:
        needed = -(-int(max_samples) * rate // target)  # ceil: file frames behind max_samples outputs
        if target != rate:
            needed += rate // 10  # the resampling filter's right edge sees real samples
        stop = start + needed if stop is None else min(stop, start + needed)
    start, stop, _ = slice(start, stop).indices(n_frames)
    return start, stop


def _read_mono(fh: sf.SoundFile, frames: int, channels: int, dest: np.ndarray | None) -> np.ndarray | None:
    """Read up to ``frames`` frames from ``fh``'s position as float32 mono ``(n,)``, into ``dest[:n]`` when
    given (a float32 ``(frames,)`` array); ``None`` when a float file holds a non-finite sample.

    16-bit PCM is read as stored and scaled here (:func:`_pcm16_to_float`); channels are averaged in
    float32. Only 16-bit: reading as integers and scaling is bit-equal for 24/32-bit too but was no faster
    for 24-bit WAV or any FLAC (decoding dominates; README's measured notes), and 32-bit integer files are
    rare."""
    pcm16 = fh.subtype == "PCM_16"
    if channels == 1:
        if pcm16:
            raw = fh.read(frames, dtype="int16")
            return _pcm16_to_float(raw, None if dest is None else dest[:raw.shape[0]])
        data = fh.read(frames, dtype="float32", out=dest)
        return data if _all_finite(data) else None
    raw = fh.read(frames, dtype="int16" if pcm16 else "float32", always_2d=True)  # (n, channels)
    if pcm16:
        raw = _pcm16_to_float(raw)
    elif not _all_finite(raw):
        return None
    return raw.mean(axis=1, dtype=np.float32, out=None if dest is None else dest[:raw.shape[0]])


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
