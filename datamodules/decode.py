"""Decoding one clip: the one function the dataset and the cache both call.

:func:`decode_clip` reads a file with :func:`l2i.audio.load_audio` at the data set's rate and fixes its length.
It lives in a module of its own so that :mod:`datamodules.files` (the datasets) and :mod:`datamodules.cache`
(the decoded cache) both import it and neither imports the other for it. Callers look it up as
``decode.decode_clip`` (and this module's ``load_audio``) at call time, so a test can replace either.
"""

from __future__ import annotations

import torch

from l2i.audio import load_audio
from l2i.frontend import fix_length

__all__ = ["decode_clip"]


def decode_clip(
    path: str,
    sample_rate: int,
    num_samples: int | None = None,
    *,
    offset_s: float = 0.0,
    duration_s: float | None = None,
    max_samples: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decode ``path`` to float32 mono at ``sample_rate`` (the file's own rate is read from the file and
    resampled with a cached band-limited sinc kernel); pad with zeros / crop (from the start) to
    ``num_samples`` when given. -> ``(samples,)``. Raises :class:`AudioFileError` naming the file.

    Only the frames behind the samples kept are decoded (``num_samples`` or ``max_samples``, plus a resampling
    margin: :func:`l2i.audio.load_audio`), so a crop costs no more than its length. ``out``: a contiguous
    float32 ``(num_samples,)`` tensor to decode into (a batch row; mono files at ``sample_rate`` are read
    straight into it) - it is returned, zero padded."""
    if num_samples is not None:
        max_samples = num_samples if max_samples is None else min(max_samples, num_samples)
    if out is None:
        wav, _ = load_audio(path, sample_rate, offset_s=offset_s, duration_s=duration_s, max_samples=max_samples)
        return wav if num_samples is None else fix_length(wav, num_samples)
    if num_samples is None or tuple(out.shape) != (num_samples,) or out.dtype != torch.float32 or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous float32 ({num_samples},) tensor, got {tuple(out.shape)} {out.dtype}")
    wav, _ = load_audio(path, sample_rate, offset_s=offset_s, duration_s=duration_s, max_samples=max_samples,
                        out=out.numpy())
    out[wav.shape[0]:] = 0
    return out
