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


@pytest.mark.parametrize(
    "orig, new",
    [(44100, 16000), (16000, 44100), (44100, 22050), (48000, 16000), (22050, 16000), (44100, 48000), (8000, 16000),
     (3, 2)],
)
def test_polyphase_resampler_equals_torchaudio_resample(orig, new):
    """Only the kernel's non-zero taps are computed: the samples are torchaudio's (same filter, same length),
    for long and short signals and leading batch dimensions."""
    import torchaudio

    from l2i.audio import PolyphaseResampler

    ours, ref = PolyphaseResampler(orig, new), torchaudio.transforms.Resample(orig, new)
    x = torch.randn(2, 3, 20011, generator=torch.Generator().manual_seed(0))
    for length in (20011, 4410, 441, 7, 1):
        got, want = ours(x[..., :length]), ref(x[..., :length])
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=2e-6, rtol=0)
    assert ours.length < ref.kernel.shape[-1] or ours.reps > 1  # fewer taps per output than torchaudio's row


def test_polyphase_resampler_padded_input_contract():
    from l2i.audio import PolyphaseResampler

    rs = PolyphaseResampler(44100, 16000)
    left, right = rs.margins
    x = torch.randn(1000)
    padded = torch.nn.functional.pad(x, (left, right))
    torch.testing.assert_close(rs.resample_padded(padded, 1000), rs(x))
    with pytest.raises(ValueError, match="padded must be a contiguous"):
        rs.resample_padded(x, 1000)
    with pytest.raises(TypeError, match="floating-point"):
        rs(torch.zeros(10, dtype=torch.int16))


@pytest.mark.parametrize("suffix, channels", [(".wav", 1), (".wav", 2), (".flac", 1)])
def test_pcm16_files_read_bit_equal_to_soundfile_float_reads(tmp_path, suffix, channels):
    """16-bit PCM is read as int16 and scaled here (faster than libsndfile's conversion): the samples are
    exactly soundfile's float32 ones (extremes included), with and without ``out``; resampled reads equal
    resampling soundfile's samples."""
    from l2i.audio import PolyphaseResampler

    rng = np.random.default_rng(0)
    pcm = rng.integers(-32768, 32768, size=(8000, channels), dtype=np.int16)
    pcm[0], pcm[1] = -32768, 32767
    path = tmp_path / f"clip{suffix}"
    sf.write(str(path), pcm if channels > 1 else pcm[:, 0], 8000, subtype="PCM_16")
    ref = sf.read(str(path), dtype="float32", always_2d=True)[0].mean(axis=1, dtype=np.float32)

    wav, _ = load_audio(path)
    np.testing.assert_array_equal(wav.numpy(), ref)
    out = np.full(9000, 7.0, dtype=np.float32)
    got, _ = load_audio(path, out=out)
    assert np.shares_memory(got.numpy(), out)
    np.testing.assert_array_equal(got.numpy(), ref)
    resampled, rate = load_audio(path, 16000)
    assert rate == 16000
    torch.testing.assert_close(resampled, PolyphaseResampler(8000, 16000)(torch.from_numpy(ref)), atol=1e-6, rtol=0)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_float_files_with_non_finite_samples_are_refused_by_name(tmp_path, channels, bad):
    """A float WAV holding NaN / inf never reaches a model: every read path (native rate, resampled, into
    ``out``) raises naming the file."""
    data = np.zeros((800, channels), dtype=np.float32)
    data[123, channels - 1] = bad
    path = tmp_path / "nonfinite.wav"
    sf.write(str(path), data, 8000, subtype="FLOAT")
    for kwargs in ({}, {"sample_rate": 16000}, {"out": np.zeros(800, dtype=np.float32)}):
        with pytest.raises(AudioFileError, match=r"nonfinite\.wav: file holds NaN or infinite samples"):
            load_audio(path, **kwargs)
