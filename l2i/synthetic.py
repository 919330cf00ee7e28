"""Synthetic sound-event mixtures with known sources: the embedded default data set.

Pure numpy/torch, no files and no Lightning. Every clip is generated from ``(seed, split, index)`` alone,
so a clip is the same whichever worker, epoch or process asks for it, and splits never share clips.

Classes (clearly different time-frequency shapes, so a small CNN separates them and an interpretation can
be scored against the true source):

==================  ====================================================================================
harmonic_vibrato    f0 150-350 Hz, 6 harmonics with 1/h amplitudes, 5-7 Hz vibrato
rising_chirp        exponential sweep up, 300-700 Hz -> x2.5-4
falling_chirp       exponential sweep down, 1.2-2.8 kHz -> /2.5-4
noise_burst         band-limited noise, centre 2-5 kHz, half-octave band
click_train         broadband 2 ms clicks at 12-30 Hz
am_tone             carrier 0.8-2 kHz, 8-15 Hz amplitude modulation, depth 0.9
chord               major triad (1, 5/4, 3/2) on 400-800 Hz, steady
bell                inharmonic partials (1, 2.76, 5.40, 8.93) on 500-1100 Hz, exponential decay
==================  ====================================================================================

An item holds the mixture, each event's waveform (``sources``), their labels and the background noise,
with ``mixture == sources.sum(0) + background`` to float precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["CLASS_NAMES", "SPLITS", "SyntheticConfig", "SyntheticClip", "generate_clip", "generate_event"]

CLASS_NAMES: tuple[str, ...] = (
    "harmonic_vibrato",
    "rising_chirp",
    "falling_chirp",
    "noise_burst",
    "click_train",
    "am_tone",
    "chord",
    "bell",
)
SPLITS = {"train": 0, "val": 1, "test": 2, "nmf": 3}


@dataclass
class SyntheticConfig:
    """How clips are drawn.

    Args:
        mode: ``multiclass`` (one target class, 1..``max_events`` events of it, optionally one distractor
            event of another class, quieter by ``distractor_gain_db``) or ``multilabel`` (1..``max_labels``
            distinct classes present, 1..``max_events`` events each).
        sample_rate, duration_s: clip format.
        num_classes: use the first ``num_classes`` of :data:`CLASS_NAMES` (2-8).
        event_gain_db: range of each event's gain (dB re. peak 0.5).
        distractor_prob: probability of a distractor in multiclass mode.
        distractor_gain_db: distractor gain relative to the target events (dB).
        noise_db: background noise RMS range (dBFS).
    """

    mode: Literal["multiclass", "multilabel"] = "multiclass"
    sample_rate: int = 16000
    duration_s: float = 2.0
    num_classes: int = 8
    max_events: int = 2
    max_labels: int = 3
    event_gain_db: tuple[float, float] = (-6.0, 0.0)
    distractor_prob: float = 0.5
    distractor_gain_db: tuple[float, float] = (-9.0, -3.0)
    noise_db: tuple[float, float] = (-50.0, -38.0)
    event_duration_s: tuple[float, float] = (0.3, 0.8)

    def __post_init__(self):
        if not 2 <= self.num_classes <= len(CLASS_NAMES):
            raise ValueError(f"num_classes must be in 2..{len(CLASS_NAMES)}, got {self.num_classes}")
        if self.mode not in ("multiclass", "multilabel"):
            raise ValueError(f"mode must be multiclass|multilabel, got {self.mode!r}")
        if self.event_duration_s[1] >= self.duration_s:
            raise ValueError(f"event_duration_s {self.event_duration_s} must be shorter than duration_s {self.duration_s}")
        if self.mode == "multilabel" and self.max_labels > self.num_classes:
            raise ValueError(f"max_labels ({self.max_labels}) > num_classes ({self.num_classes})")

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.duration_s))

    @property
    def max_sources(self) -> int:
        if self.mode == "multiclass":
            return self.max_events + 1
        return self.max_labels * self.max_events


@dataclass
class SyntheticClip:
    """One generated clip. ``sources (S, samples)`` are padded with zero rows whose label is -1."""

    mixture: np.ndarray
    sources: np.ndarray
    source_labels: np.ndarray
    background: np.ndarray
    labels: list[int] = field(default_factory=list)


def _envelope(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Attack-sustain-release envelope with 5-30 ms ramps, ``(n,)``."""
    attack = max(1, int(sr * rng.uniform(0.005, 0.03)))
    release = max(1, int(sr * rng.uniform(0.01, 0.05)))
    env = np.ones(n)
    attack, release = min(attack, n // 2), min(release, n // 2)
    env[:attack] = np.linspace(0.0, 1.0, attack, endpoint=False)
    env[n - release :] = np.linspace(1.0, 0.0, release)
    return env


def _sines(freqs_t: np.ndarray, sr: int) -> np.ndarray:
    """Sine with time-varying frequency ``(…, n)`` Hz -> ``(…, n)`` by phase accumulation."""
    phase = 2 * np.pi * np.cumsum(freqs_t, axis=-1) / sr
    return np.sin(phase)


def generate_event(label: int, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One event of class ``label``, ``n`` samples, peak 1 before gain."""
    t = np.arange(n) / sr
    dur = n / sr
    name = CLASS_NAMES[label]
    nyq = sr / 2
    if name == "harmonic_vibrato":
        f0 = rng.uniform(150, 350)
        vib = 1 + rng.uniform(0.02, 0.04) * np.sin(2 * np.pi * rng.uniform(5, 7) * t)
        h = np.arange(1, 7)[:, None]
        freqs = f0 * vib[None, :] * h
        amps = (1.0 / h) * (freqs < nyq * 0.95)
        x = (amps * _sines(freqs, sr)).sum(0)
    elif name in ("rising_chirp", "falling_chirp"):
        ratio = rng.uniform(2.5, 4.0)
        if name == "rising_chirp":
            f_start = rng.uniform(300, 700)
            f_end = f_start * ratio
        else:
            f_start = rng.uniform(1200, 2800)
            f_end = f_start / ratio
        f_end = min(f_end, nyq * 0.9)
        freqs = f_start * (f_end / f_start) ** (t / dur)
        x = _sines(freqs, sr)
    elif name == "noise_burst":
        centre = min(rng.uniform(2000, 5000), nyq * 0.7)
        lo, hi = centre / 2**0.25, centre * 2**0.25
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / sr)
        spec[(f < lo) | (f > hi)] = 0
        x = np.fft.irfft(spec, n)
    elif name == "click_train":
        rate = rng.uniform(12, 30)
        x = np.zeros(n)
        click_len = max(4, int(0.002 * sr))
        click = rng.standard_normal(click_len) * np.exp(-np.arange(click_len) / (click_len / 4))
        for onset in np.arange(0, dur, 1 / rate):
            i = int(onset * sr)
            m = min(click_len, n - i)
            x[i : i + m] += click[:m]
    elif name == "am_tone":
        fc = rng.uniform(800, 2000)
        mod = 1 - 0.9 * 0.5 * (1 + np.cos(2 * np.pi * rng.uniform(8, 15) * t))
        x = mod * np.sin(2 * np.pi * fc * t + rng.uniform(0, 2 * np.pi))
    elif name == "chord":
        root = rng.uniform(400, 800)
        ratios = np.array([1.0, 1.25, 1.5])[:, None]
        x = np.sin(2 * np.pi * root * ratios * t[None, :] + rng.uniform(0, 2 * np.pi, (3, 1))).sum(0)
    elif name == "bell":
        f0 = rng.uniform(500, 1100)
        partials = np.array([1.0, 2.76, 5.40, 8.93])[:, None]
        decay = np.exp(-t[None, :] * rng.uniform(4, 8) * np.array([1.0, 1.5, 2.2, 3.0])[:, None])
        amps = np.array([1.0, 0.6, 0.4, 0.25])[:, None] * (f0 * partials < nyq * 0.95)
        x = (amps * decay * np.sin(2 * np.pi * f0 * partials * t[None, :])).sum(0)
    else:  # pragma: no cover - CLASS_NAMES and this table are edited together
        raise ValueError(f"unknown synthetic class {label}")
    x = x * _envelope(n, sr, rng)
    peak = np.abs(x).max()
    return x / peak if peak > 0 else x


def _background(n: int, rng: np.random.Generator, rms_db: float) -> np.ndarray:
    """Pink-ish (1/f power) noise at the given RMS in dBFS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.shape[0], dtype=np.float64)
    spec = spec / np.sqrt(np.maximum(f, 1.0))
    x = np.fft.irfft(spec, n)
    x = x / (np.sqrt(np.mean(x**2)) + 1e-12)
    return x * 10 ** (rms_db / 20)


def generate_clip(config: SyntheticConfig, seed: int, split: str, index: int) -> SyntheticClip:
    """Draw clip ``index`` of ``split`` deterministically from ``seed``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    rng = np.random.default_rng([int(seed), SPLITS[split], int(index)])
    sr, n = config.sample_rate, config.num_samples
    events: list[tuple[int, float]] = []  # (label, gain)
    if config.mode == "multiclass":
        target = int(rng.integers(config.num_classes))
        labels = [target]
        target_gain_db = []
        for _ in range(int(rng.integers(1, config.max_events + 1))):
            g = rng.uniform(*config.event_gain_db)
            target_gain_db.append(g)
            events.append((target, g))
        if rng.random() < config.distractor_prob:
            other = int(rng.choice([c for c in range(config.num_classes) if c != target]))
            events.append((other, min(target_gain_db) + rng.uniform(*config.distractor_gain_db)))
    else:
        k = int(rng.integers(1, config.max_labels + 1))
        labels = sorted(int(c) for c in rng.choice(config.num_classes, size=k, replace=False))
        for c in labels:
            for _ in range(int(rng.integers(1, config.max_events + 1))):
                events.append((c, rng.uniform(*config.event_gain_db)))

    sources = np.zeros((config.max_sources, n), dtype=np.float32)
    source_labels = np.full(config.max_sources, -1, dtype=np.int64)
    for s, (label, gain_db) in enumerate(events):
        length = int(sr * rng.uniform(*config.event_duration_s))
        onset = int(rng.integers(0, n - length + 1))
        event = generate_event(label, length, sr, rng) * 0.5 * 10 ** (gain_db / 20)
        sources[s, onset : onset + length] = event
        source_labels[s] = label
    background = _background(n, rng, rng.uniform(*config.noise_db)).astype(np.float32)
    mixture = (sources.sum(0, dtype=np.float64) + background).astype(np.float32)
    return SyntheticClip(mixture=mixture, sources=sources, source_labels=source_labels, background=background, labels=labels)
