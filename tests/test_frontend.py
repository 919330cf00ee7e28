"""The audio front-end: STFT and its inverse, resampling, fixed length, finite features for silence."""

from __future__ import annotations

import math

import pytest
import torch

from l2i.frontend import AudioFrontEnd, FrontEndConfig, fix_length


def test_stft_inverse_round_trip_below_1e_4():
    fe = AudioFrontEnd(FrontEndConfig(sample_rate=16000, n_fft=512, hop_length=128))
    x = torch.randn(3, 16000) * 0.3
    feats = fe(x)
    y = fe.inverse(feats.magnitude, feats.phase, length=x.shape[-1])
    assert y.shape == x.shape
    assert (y - x).abs().max().item() < 1e-4


def test_inverse_nmf_undoes_log1p():
    fe = AudioFrontEnd(FrontEndConfig(n_fft=256, hop_length=64))
    x = torch.randn(2, 4000) * 0.2
    feats = fe(x)
    y = fe.inverse_nmf(feats.nmf, feats.phase, length=x.shape[-1])
    assert (y - x).abs().max().item() < 1e-4


def test_shapes_of_every_feature():
    cfg = FrontEndConfig(sample_rate=16000, n_fft=512, hop_length=256, n_mels=40, duration_s=1.0)
    fe = AudioFrontEnd(cfg)
    feats = fe(torch.randn(4, 2, 12000), sample_rate=16000)  # stereo, short: mono + padded
    frames = cfg.num_frames()
    assert feats.waveform.shape == (4, 16000)
    assert feats.magnitude.shape == feats.phase.shape == feats.nmf.shape == (4, 257, frames)
    assert feats.logmel.shape == (4, 40, frames)
    assert bool((feats.nmf >= 0).all())


@pytest.mark.parametrize("orig", [8000, 22050, 44100, 48000])
def test_resampling_keeps_a_sines_frequency(orig):
    hz = 1000.0
    t = torch.arange(orig) / orig
    x = torch.sin(2 * math.pi * hz * t).unsqueeze(0)
    fe = AudioFrontEnd(FrontEndConfig(sample_rate=16000))
    y = fe.prepare(x, sample_rate=orig)[0]
    assert abs(y.shape[0] - 16000) <= 1
    spec = torch.fft.rfft(y * torch.hann_window(y.shape[0]))
    peak_hz = torch.fft.rfftfreq(y.shape[0], 1 / 16000)[spec.abs().argmax()].item()
    assert abs(peak_hz - hz) < 2.0


def test_silent_and_extreme_clips_give_finite_features():
    fe = AudioFrontEnd(FrontEndConfig(n_fft=256, hop_length=128))
    silent = torch.zeros(2, 8000)
    loud = torch.randn(2, 8000) * 1e4
    for x in (silent, loud):
        feats = fe(x)
        for name in ("magnitude", "phase", "nmf", "logmel"):
            assert torch.isfinite(getattr(feats, name)).all(), name


def test_fix_length_policies():
    x = torch.arange(10.0).unsqueeze(0)
    assert fix_length(x, 4, crop_mode="start").tolist() == [[0, 1, 2, 3]]
    assert fix_length(x, 4, crop_mode="center").tolist() == [[3, 4, 5, 6]]
    assert fix_length(x, 13, pad_mode="constant")[0, 10:].tolist() == [0, 0, 0]
    assert fix_length(x, 13, pad_mode="repeat")[0, 10:].tolist() == [0, 1, 2]
    g = torch.Generator().manual_seed(0)
    r = fix_length(x, 4, crop_mode="random", generator=g)
    assert r.shape == (1, 4) and (r[0, 1:] - r[0, :-1] == 1).all()
    with pytest.raises(ValueError, match="pad_mode"):
        fix_length(x, 20, pad_mode="mirror")


def test_config_rejects_unknown_fields_and_reports_spectral_params():
    with pytest.raises(ValueError, match="unknown field.*hop"):
        FrontEndConfig.from_any({"hop": 3})
    params = FrontEndConfig(n_fft=1024, hop_length=512, sample_rate=44100).spectral_params()
    assert params["win_length"] == 1024 and params["transform"] == "log1p_magnitude"


def test_phase_and_nmf_are_computed_on_first_use_and_kept():
    """A classifier reads only ``logmel``: the phase (an atan2 per bin) and log1p|X| are computed when first
    read, equal to their definitions, and computed once."""
    fe = AudioFrontEnd(FrontEndConfig(sample_rate=8000, n_fft=256, hop_length=64, n_mels=32))
    f = fe(torch.randn(2, 4000))
    assert f._phase is None and f._nmf is None
    torch.testing.assert_close(f.phase, torch.angle(fe.stft(f.waveform)))
    torch.testing.assert_close(f.nmf, torch.log1p(torch.abs(fe.stft(f.waveform))))
    assert f.phase is f.phase and f.nmf is f.nmf
    back = fe.inverse(f.magnitude, f.phase, length=4000)
    assert (back - f.waveform).abs().max() < 1e-4
