"""The embedded synthetic data set: deterministic, sources that add up, labels that match."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules import SyntheticDataModule
from l2i.synthetic import CLASS_NAMES, SyntheticConfig, generate_clip, generate_event


def test_deterministic_per_seed_split_and_index():
    cfg = SyntheticConfig()
    a = generate_clip(cfg, 3, "train", 7)
    b = generate_clip(cfg, 3, "train", 7)
    assert np.array_equal(a.mixture, b.mixture) and np.array_equal(a.sources, b.sources)
    assert not np.array_equal(a.mixture, generate_clip(cfg, 4, "train", 7).mixture)
    assert not np.array_equal(a.mixture, generate_clip(cfg, 3, "test", 7).mixture)
    assert not np.array_equal(a.mixture, generate_clip(cfg, 3, "train", 8).mixture)


@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_sources_and_background_sum_to_the_mixture(mode):
    cfg = SyntheticConfig(mode=mode)
    for i in range(20):
        clip = generate_clip(cfg, 0, "val", i)
        assert clip.mixture.dtype == np.float32 and clip.mixture.shape == (cfg.num_samples,)
        np.testing.assert_allclose(clip.sources.sum(0) + clip.background, clip.mixture, atol=1e-6)
        used = clip.source_labels >= 0
        assert used.any()
        assert np.abs(clip.sources[~used]).max(initial=0.0) == 0.0  # empty slots are silent
        assert set(clip.source_labels[used].tolist()) >= set(clip.labels)


def test_multiclass_target_is_the_loudest_class_and_distractor_is_another():
    cfg = SyntheticConfig(mode="multiclass", distractor_prob=1.0)
    for i in range(20):
        clip = generate_clip(cfg, 0, "train", i)
        target = clip.labels[0]
        labels = clip.source_labels[clip.source_labels >= 0]
        others = labels[labels != target]
        assert len(others) == 1  # exactly one distractor, of another class
        energy = {int(c): float((clip.sources[clip.source_labels == c] ** 2).sum()) for c in set(labels.tolist())}
        assert energy[target] > 0


def test_classes_differ_in_spectrum():
    """Each class's mean log-spectrum is closest to its own class centroid (the events are separable)."""
    rng = np.random.default_rng(0)
    sr, n = 16000, 8000

    def spectrum(x):
        return np.log1p(np.abs(np.fft.rfft(x, 1024)))

    train = {c: np.mean([spectrum(generate_event(c, n, sr, rng)) for _ in range(10)], 0) for c in range(len(CLASS_NAMES))}
    correct = 0
    for c in range(len(CLASS_NAMES)):
        for _ in range(5):
            s = spectrum(generate_event(c, n, sr, rng))
            nearest = min(train, key=lambda k: np.linalg.norm(train[k] - s))
            correct += nearest == c
    assert correct >= 24  # of 40, chance is 5: even a spectrum-only nearest centroid separates most classes


def test_datamodule_batches_and_contract():
    dm = SyntheticDataModule(num_train=8, num_val=4, num_test=4, batch_size=4, duration_s=1.0, mode="multilabel")
    assert dm.task == "multilabel" and dm.num_classes == 8 and dm.class_names[0] == "harmonic_vibrato"
    batch = next(iter(dm.train_dataloader()))
    assert batch["waveform"].shape == (4, 16000)
    assert batch["target"].shape == (4, 8) and batch["target"].dtype == torch.float32
    assert batch["sources"].shape[:2] == (4, dm.config.max_sources)
    assert batch["source_labels"].shape == (4, dm.config.max_sources)
    assert len(batch["id"]) == 4 and batch["id"][0].startswith("synthetic-0-train-")
    with pytest.raises(IndexError, match="has 8 items"):
        dm.dataset("train")[8]


def test_bad_settings_are_refused_with_the_field_name():
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticConfig(num_classes=12)
    with pytest.raises(ValueError, match="event_duration_s"):
        SyntheticConfig(duration_s=0.5)
    with pytest.raises(ValueError, match="split"):
        generate_clip(SyntheticConfig(), 0, "holdout", 0)
