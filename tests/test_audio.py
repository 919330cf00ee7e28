"""Audio file I/O: any format soundfile writes comes back as mono float32 at the requested rate."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from l2i.audio import AudioFileError, load_audio, save_audio


def _dominant_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spec.argmax()])


@pytest.mark.parametrize(
    "suffix, rate, channels, fmt",
    [
        (".wav", 22050, 2, {"subtype": "PCM_16"}),
        (".wav", 11025, 1, {"subtype": "FLOAT"}),
        (".flac", 44100, 3, {}),
        (".mp3", 44100, 2, {}),
        (".ogg", 48000, 2, {}),
    ],
)
def test_formats_rates_and_channels_give_mono_float32_at_target_rate(tmp_path, suffix, rate, channels, fmt):
    seconds, hz = 0.5, 440.0
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.5 * np.sin(2 * np.pi * hz * t)
    data = np.stack([tone * (c + 1) / channels for c in range(channels)], axis=1).astype(np.float32)
    path = tmp_path / f"clip{suffix}"
    sf.write(str(path), data, rate, **fmt)

    wav, out_rate = load_audio(path, 16000)
    assert out_rate == 16000
    assert wav.dtype == torch.float32 and wav.dim() == 1
    # MP3 adds encoder padding: length within 0.1 s; lossless formats exact to a sample
    tolerance = 1600 if suffix == ".mp3" else 2
    assert abs(wav.shape[0] - int(seconds * 16000)) <= tolerance
    assert abs(_dominant_hz(wav.numpy(), 16000) - hz) < 5.0
    # mono is the channel mean: amplitude of the mean of (1..C)/C * tone
    expected_peak = 0.5 * np.mean([(c + 1) / channels for c in range(channels)])
    body = wav.numpy()[2000:6000]
    assert abs(np.abs(body).max() - expected_peak) < 0.05


def test_native_rate_when_none_requested(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(str(path), np.zeros((1234, 2), np.float32), 8000)
    wav, rate = load_audio(path)
    assert rate == 8000 and wav.shape == (1234,)


def test_missing_empty_and_corrupt_files_name_the_file(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioFileError, match="nope.wav.*does not exist"):
        load_audio(missing)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioFileError, match="empty.wav.*empty"):
        load_audio(empty)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(100))
    with pytest.raises(AudioFileError, match="corrupt.wav"):
        load_audio(corrupt)
    no_samples = tmp_path / "zero.wav"
    sf.write(str(no_samples), np.zeros((0,), np.float32), 16000)
    with pytest.raises(AudioFileError, match="zero.wav.*no audio samples"):
        load_audio(no_samples)


def test_save_round_trip_and_refuses_nan(tmp_path):
    x = torch.linspace(-0.9, 0.9, 1600)
    path = save_audio(tmp_path / "out" / "x.wav", x, 16000)
    y, rate = load_audio(path)
    assert rate == 16000
    assert torch.allclose(x, y, atol=1e-6)
    with pytest.raises(ValueError, match="NaN"):
        save_audio(tmp_path / "bad.wav", torch.tensor([0.0, float("nan")]), 16000)
