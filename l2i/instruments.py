"""Real recordings with known sources: phrases of sampled acoustic instruments, rendered from a SoundFont.

The sounds are the sampled instruments of the General-MIDI SoundFont that the ``pretty_midi`` wheel ships
(``TimGM6mb.sf2``), rendered by the self-contained ``midirenderer`` wheel; nothing is downloaded and no audio
is committed. Each clip holds 1..``max_labels`` distinct instruments (the classes), each playing its own
random phrase at its own level; every instrument is rendered alone (its *stem*, the true source), and the
mixture is the sum of the stems, so ``mixture == sources.sum(0)`` to float precision.

Every clip is drawn from ``(seed, split, index)`` alone (``numpy.random.default_rng``): the same clip whichever
process asks for it, splits never share clips. Rendering is deterministic (same wheel, same SoundFont), and
:func:`render_split` caches a whole split on disk (see :class:`datamodules.instruments.InstrumentDataModule`).

Instruments (class order; GM program, MIDI pitch range played):

==========  =======  ===========
piano        0       48-84
guitar       24      40-76   (nylon-string acoustic)
violin       40      55-91
cello        42      36-67
flute        73      60-93
harp         46      40-84
trumpet      56      55-82
clarinet     71      50-84
vibraphone   11      53-89
bassoon      70      34-65
==========  =======  ===========

Pure numpy / torch plus the two wheels; no Lightning.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "INSTRUMENTS",
    "CLASS_NAMES",
    "SPLITS",
    "InstrumentConfig",
    "InstrumentClip",
    "soundfont_path",
    "generate_clip",
    "config_digest",
    "default_cache_dir",
]

#: (name, General-MIDI program, lowest and highest MIDI pitch played)
INSTRUMENTS: tuple[tuple[str, int, int, int], ...] = (
    ("piano", 0, 48, 84),
    ("guitar", 24, 40, 76),
    ("violin", 40, 55, 91),
    ("cello", 42, 36, 67),
    ("flute", 73, 60, 93),
    ("harp", 46, 40, 84),
    ("trumpet", 56, 55, 82),
    ("clarinet", 71, 50, 84),
    ("vibraphone", 11, 53, 89),
    ("bassoon", 70, 34, 65),
)
CLASS_NAMES: tuple[str, ...] = tuple(name for name, *_ in INSTRUMENTS)
SPLITS = {"train": 0, "val": 1, "test": 2, "nmf": 3}
#: instruments that may play two- or three-note chords
_POLYPHONIC = {"piano", "guitar", "harp", "vibraphone"}
#: scales (semitones above the tonic) the phrases are drawn from
_SCALES = ((0, 2, 4, 7, 9), (0, 3, 5, 7, 10), (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10))


def soundfont_path() -> Path:
    """The General-MIDI SoundFont inside the ``pretty_midi`` wheel (clear error when the wheel is missing)."""
    try:
        import pretty_midi
    except ImportError as exc:  # pragma: no cover - setup.cfg installs it
        raise ImportError("the instrument recordings need the 'pretty_midi' wheel (pip install pretty_midi)") from exc
    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not path.is_file():  # pragma: no cover - the wheel ships it
        raise FileNotFoundError(f"pretty_midi ships no SoundFont at {path}")
    return path


@dataclass
class InstrumentConfig:
    """How clips are drawn.

    Args:
        sample_rate, duration_s: clip format (rendered at the renderer's rate, resampled).
        num_classes: use the first ``num_classes`` instruments of :data:`INSTRUMENTS` (2-10).
        instruments: or name them (class order = this order; ``num_classes`` then follows it).
        min_labels, max_labels: instruments per clip (distinct), drawn uniformly in this range.
        gain_db: range of each stem's level, dB relative to RMS 0.1 (varied levels inside a clip).
        note_s: range of note durations (seconds); phrases are sequences of notes and short rests.
        rest_prob: probability of a rest after a note.
        chord_prob: probability that a note of a polyphonic instrument is a 2-3 note chord.
        velocity: MIDI velocity range.
    """

    sample_rate: int = 16000
    duration_s: float = 2.0
    num_classes: int = 8
    min_labels: int = 1
    max_labels: int = 3
    gain_db: tuple[float, float] = (-9.0, 0.0)
    note_s: tuple[float, float] = (0.15, 0.6)
    rest_prob: float = 0.15
    chord_prob: float = 0.3
    velocity: tuple[int, int] = (60, 120)
    instruments: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.instruments is not None:
            self.instruments = tuple(str(n) for n in self.instruments)
            unknown = [n for n in self.instruments if n not in CLASS_NAMES]
            if unknown or len(set(self.instruments)) != len(self.instruments):
                raise ValueError(f"instruments: unknown or repeated names {unknown or list(self.instruments)}; known: {list(CLASS_NAMES)}")
            self.num_classes = len(self.instruments)
        self.gain_db = tuple(float(g) for g in self.gain_db)
        self.note_s = tuple(float(s) for s in self.note_s)
        self.velocity = tuple(int(v) for v in self.velocity)
        if not 2 <= self.num_classes <= len(INSTRUMENTS):
            raise ValueError(f"instruments: num_classes must be in 2..{len(INSTRUMENTS)}, got {self.num_classes}")
        if not 1 <= self.min_labels <= self.max_labels <= self.num_classes:
            raise ValueError(
                f"instruments: need 1 <= min_labels <= max_labels <= num_classes, got {self.min_labels}, "
                f"{self.max_labels}, {self.num_classes}"
            )
        if not 0 < self.note_s[0] <= self.note_s[1] < self.duration_s:
            raise ValueError(f"instruments: note_s {self.note_s} must be positive and shorter than duration_s {self.duration_s}")
        if self.sample_rate <= 0 or self.duration_s <= 0:
            raise ValueError(f"instruments: sample_rate and duration_s must be positive, got {self.sample_rate}, {self.duration_s}")

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.duration_s))

    @property
    def class_names(self) -> list[str]:
        return list(self.instruments) if self.instruments is not None else list(CLASS_NAMES[: self.num_classes])

    def instrument(self, c: int) -> tuple[str, int, int, int]:
        """``(name, GM program, lowest pitch, highest pitch)`` of class ``c``."""
        return INSTRUMENTS[CLASS_NAMES.index(self.class_names[c])]


@dataclass
class InstrumentClip:
    """One clip: ``mixture (N,)``, ``sources (max_labels, N)`` (zero rows with label -1 pad), ``source_labels``
    ``(max_labels,)`` int64, ``labels`` the instruments present (sorted)."""

    mixture: np.ndarray
    sources: np.ndarray
    source_labels: np.ndarray
    labels: list[int] = field(default_factory=list)


def config_digest(config: InstrumentConfig, seed: int) -> str:
    """Key of the renders of ``config`` and ``seed`` (also the SoundFont's size and the renderer's version)."""
    try:
        from importlib.metadata import version

        renderer = version("midirenderer")
    except Exception:  # noqa: BLE001 - the digest only needs to change when the renderer does
        renderer = "unknown"
    sf = soundfont_path()
    fields = {k: v for k, v in asdict(config).items() if not (k == "instruments" and v is None)}  # keys of older caches
    key = repr((sorted(fields.items()), int(seed), renderer, sf.stat().st_size, "v1"))
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def _phrase(name: str, low: int, high: int, config: InstrumentConfig, rng: np.random.Generator) -> list[tuple[float, float, int, int]]:
    """A random phrase ``[(start s, end s, pitch, velocity), ...]`` inside the clip."""
    scale = _SCALES[int(rng.integers(len(_SCALES)))]
    tonic = int(rng.integers(low, low + 12))
    pitches = sorted({p for base in range(tonic - 36, high + 1, 12) for p in (base + s for s in scale) if low <= p <= high})
    span = config.duration_s
    t = float(rng.uniform(0.0, 0.25 * span))
    pos = int(rng.integers(len(pitches)))
    notes = []
    while t < span - 0.1:
        length = float(rng.uniform(*config.note_s))
        end = min(t + length, span)
        velocity = int(rng.integers(config.velocity[0], config.velocity[1] + 1))
        chord = [pos]
        if name in _POLYPHONIC and rng.random() < config.chord_prob:
            chord += [pos + 2, pos + 4][: int(rng.integers(1, 3))]
        for p in chord:
            if p < len(pitches):
                notes.append((t, end, pitches[p], velocity))
        pos = int(np.clip(pos + rng.integers(-2, 3), 0, len(pitches) - 1))
        t = end
        if rng.random() < config.rest_prob:
            t += float(rng.uniform(0.05, 0.3))
    return notes


def _render(program: int, notes, soundfont: bytes, sample_rate: int, num_samples: int) -> np.ndarray:
    """One instrument's phrase -> mono float32 ``(num_samples,)`` at ``sample_rate``."""
    import midirenderer
    import pretty_midi
    import soundfile

    from l2i.audio import resample

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=int(program))
    for start, end, pitch, velocity in notes:
        inst.notes.append(pretty_midi.Note(velocity=int(velocity), pitch=int(pitch), start=float(start), end=float(end)))
    pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    wav_bytes = midirenderer.render_wave_from(soundfont, buf.getvalue())
    data, rate = soundfile.read(io.BytesIO(wav_bytes), dtype="float32", always_2d=True)
    x = torch.from_numpy(data.mean(axis=1))
    x = resample(x, int(rate), int(sample_rate)).numpy()
    out = np.zeros(num_samples, dtype=np.float32)
    n = min(num_samples, x.shape[0])
    out[:n] = x[:n]
    return out


def generate_clip(config: InstrumentConfig, seed: int, split: str, index: int, soundfont: bytes | None = None) -> InstrumentClip:
    """Draw and render clip ``index`` of ``split`` (``soundfont``: the SoundFont's bytes, read once by callers)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    if soundfont is None:
        soundfont = soundfont_path().read_bytes()
    rng = np.random.default_rng([int(seed), 1000 + SPLITS[split], int(index)])
    k = int(rng.integers(config.min_labels, config.max_labels + 1))
    labels = sorted(int(c) for c in rng.choice(config.num_classes, size=k, replace=False))
    N = config.num_samples
    sources = np.zeros((config.max_labels, N), dtype=np.float32)
    source_labels = np.full(config.max_labels, -1, dtype=np.int64)
    for s, c in enumerate(labels):
        name, program, low, high = config.instrument(c)
        gain_db = float(rng.uniform(*config.gain_db))
        stem = _render(program, _phrase(name, low, high, config, rng), soundfont, config.sample_rate, N)
        rms = float(np.sqrt(np.mean(stem.astype(np.float64) ** 2)))
        if rms <= 0:  # a phrase always sounds; a silent render means a broken renderer
            raise RuntimeError(f"instruments: the {name} stem of {split} clip {index} rendered silent")
        sources[s] = stem * (0.1 / rms) * 10 ** (gain_db / 20)
        source_labels[s] = c
    mixture = sources.sum(0, dtype=np.float64).astype(np.float32)
    return InstrumentClip(mixture=mixture, sources=sources, source_labels=source_labels, labels=labels)


def default_cache_dir() -> Path:
    """``$L2I_CACHE_DIR`` or ``~/.cache/l2i``: where generated recordings are kept between runs."""
    return Path(os.environ.get("L2I_CACHE_DIR") or Path.home() / ".cache" / "l2i")
