"""Builders of tiny data-set trees in the exact official layouts (documented in ``datamodules/*.py``).

Every builder writes real-format audio (WAV for ESC-50 / SONYC-UST, MP3 for MagnaTagATune / MTG-Jamendo,
written with soundfile) and the metadata files with the official names, headers, separators and folders,
and returns what a test needs to check the DataModule's output (expected labels per split). Audio is a
short sine whose frequency depends on the label, at the data set's native rate, so clips differ.
Nothing is downloaded; everything lands in the caller's ``tmp_path``.
"""

from __future__ import annotations

import csv
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from datamodules.esc50 import ESC10_CLASSES, ESC50_CLASSES
from datamodules.magnatagatune import MTAT_TOP50
from l2i.metrics.sonyc import DEFAULT_TAXONOMY

ESC50_HEADER = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]


def tone(seconds: float, rate: int, freq: float, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """A sine plus a little noise, float32 ``(round(seconds * rate),)``."""
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    return (amp * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(n)).astype(np.float32)


def write_wav(path: Path, seconds: float, rate: int, freq: float, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, rate, freq, seed=seed), rate, subtype="PCM_16")
    return path


def write_mp3(path: Path, seconds: float, rate: int, freq: float, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, rate, freq, seed=seed), rate, format="MP3")
    return path


# ----------------------------------------------------------------------------------------------------------
# ESC-50
# ----------------------------------------------------------------------------------------------------------
@dataclass
class ESC50Fixture:
    root: Path
    rows: list[dict]  # one per clip: filename, fold, target, category, esc10, src_file, take

    def files(self, fold: int | None = None, folds: tuple[int, ...] | None = None) -> list[str]:
        return sorted(r["filename"] for r in self.rows if (fold is None or r["fold"] == fold)
                      and (folds is None or r["fold"] in folds))


def make_esc50(
    tmp: Path,
    *,
    classes: tuple[int, ...] = (0, 1, 2, 10),
    clips_per_class_per_fold: int = 1,
    seconds: float = 0.25,
    rate: int = 44100,
    root_name: str = "ESC-50-master",
) -> ESC50Fixture:
    """``ESC-50-master/audio/{fold}-{src}-{take}-{target}.wav`` + ``meta/esc50.csv`` (official header).

    Clips: for every fold 1-5 and class in ``classes``, ``clips_per_class_per_fold`` clips; fragments of one
    source clip (takes A, B, ...) share ``src_file`` and a fold, as in the release.
    """
    root = tmp / root_name
    rows = []
    for fold in range(1, 6):
        for target in classes:
            src = 100000 + 1000 * fold + target  # one source clip per (fold, class)
            for k in range(clips_per_class_per_fold):
                take = "ABCDEFGH"[k]
                name = f"{fold}-{src}-{take}-{target}.wav"
                write_wav(root / "audio" / name, seconds, rate, 200.0 + 40.0 * target, seed=fold * 100 + k)
                rows.append({"filename": name, "fold": fold, "target": target, "category": ESC50_CLASSES[target],
                             "esc10": ESC50_CLASSES[target] in ESC10_CLASSES, "src_file": src, "take": take})
    write_esc50_csv(root, rows)
    return ESC50Fixture(root, rows)


def write_esc50_csv(root: Path, rows: list[dict], header: list[str] = ESC50_HEADER) -> Path:
    path = root / "meta" / "esc50.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow([str(r[c]) for c in header])
    return path


# ----------------------------------------------------------------------------------------------------------
# SONYC-UST v2
# ----------------------------------------------------------------------------------------------------------
SONYC_META = ["split", "sensor_id", "audio_filename", "annotator_id", "borough", "block", "latitude", "longitude",
              "year", "week", "day", "hour"]
SONYC_FINE = DEFAULT_TAXONOMY.fine_tags(with_x=True)  # 29: 23 fine + 6 X
SONYC_COARSE = DEFAULT_TAXONOMY.coarse_tags()  # 8


def sonyc_header() -> list[str]:
    """The official column order: id/time/place, fine presence (29), coarse presence (8), fine proximity."""
    return (SONYC_META + [f"{t}_presence" for t in SONYC_FINE] + [f"{t}_presence" for t in SONYC_COARSE]
            + [f"{t}_proximity" for t in SONYC_FINE])


def sonyc_row(split: str, fname: str, annotator: int, positives: set[str] = frozenset(),
              unannotated: set[str] | None = None) -> dict:
    """One annotation row. ``positives``: fine or coarse tag names marked 1 (a fine tag also sets its coarse
    tag); ``unannotated``: coarse tags whose group is -1 (team members annotate one group at a time)."""
    row = {"split": split, "sensor_id": "7", "audio_filename": fname, "annotator_id": str(annotator),
           "borough": "1", "block": "547", "latitude": "40.72951", "longitude": "-73.99388",
           "year": "2019", "week": "12", "day": "3", "hour": "14"}
    coarse_on = set()
    for t in SONYC_FINE:
        on = t in positives
        row[f"{t}_presence"] = "1" if on else "0"
        row[f"{t}_proximity"] = "near" if on else "-1"
        if on:
            coarse_on.add(t.split("-")[0])
    for t in SONYC_COARSE:
        on = t in positives or t.split("_")[0] in coarse_on
        row[f"{t}_presence"] = "1" if on else "0"
    for t in unannotated or ():
        cid = t.split("_")[0]
        row[f"{t}_presence"] = "-1"
        for f in SONYC_FINE:
            if f.split("-")[0] == cid:
                row[f"{f}_presence"] = "-1"
    return row


def write_sonyc_taxonomy(root: Path) -> Path:
    """``dcase-ust-taxonomy.yaml`` in the official shape (``coarse: {1: engine}``, ``fine: {1: {1: ..., X: ...}}``)."""
    lines = ["coarse:"]
    lines += [f"  {c}: {n}" for c, n in DEFAULT_TAXONOMY.coarse.items()]
    lines.append("fine:")
    for c, fines in DEFAULT_TAXONOMY.fine.items():
        lines.append(f"  {c}:")
        lines += [f"    {k}: {n}" for k, n in fines.items()]
    path = root / "dcase-ust-taxonomy.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_sonyc_csv(root: Path, rows: list[dict], header: list[str] | None = None) -> Path:
    header = header or sonyc_header()
    path = root / "annotations.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


@dataclass
class SONYCFixture:
    root: Path
    rows: list[dict]
    #: expected multi-hot targets per split: {split: {fname: set of positive tags (fine with X + coarse)}}
    expected: dict[str, dict[str, set[str]]] = field(default_factory=dict)


def make_sonyc(tmp: Path, *, layout: str = "v2.2", seconds: float = 0.25, rate: int = 44100) -> SONYCFixture:
    """A tree with the annotator situations the label rules distinguish.

    train:   ``00_000001`` volunteers 11 (small engine) and 12 (dog bark, and 1-X), team member -3 marks siren
             (must not count), -1 values elsewhere; ``00_000002`` volunteer 11 all-negative, volunteer 13 with
             the alert group unannotated (-1) -> no positive; ``00_000003`` only a ground-truth row (no
             volunteer) -> left out of train.
    validate: ``01_000010`` volunteer says engine (ignored), ground truth (0) says siren + talking;
             ``01_000011`` only volunteers -> left out; ``01_000012`` ground truth: 2-X only.
    test:    ``02_000020`` ground truth: 1-X + 1-2 (medium engine); ``02_000021`` ground truth: nothing.

    ``layout="v2.2"``: flat ``audio/``; ``"v2.3"``: ``audio-0.tar.gz``, ``audio-1.tar.gz`` unpacking into
    ``audio/`` (no ``audio/`` folder written).
    """
    root = tmp / f"sonyc-ust-{layout}"
    root.mkdir(parents=True)
    R = sonyc_row
    rows = [
        R("train", "00_000001.wav", 11, {"1-1_small-sounding-engine"}),
        R("train", "00_000001.wav", 12, {"8-1_dog-barking-whining", "1-X_engine-of-uncertain-size"}),
        R("train", "00_000001.wav", -3, {"5-3_siren"}, unannotated=set(SONYC_COARSE) - {"5_alert-signal"}),
        R("train", "00_000002.wav", 11, set()),
        R("train", "00_000002.wav", 13, set(), unannotated={"5_alert-signal"}),
        R("train", "00_000003.wav", 0, {"6-1_stationary-music"}),
        R("validate", "01_000010.wav", 21, {"1-1_small-sounding-engine"}),
        R("validate", "01_000010.wav", -2, {"5-3_siren"}, unannotated=set(SONYC_COARSE) - {"5_alert-signal"}),
        R("validate", "01_000010.wav", 0, {"5-3_siren", "7-1_person-or-small-group-talking"}),
        R("validate", "01_000011.wav", 21, {"8-1_dog-barking-whining"}),
        R("validate", "01_000012.wav", 0, {"2-X_other-unknown-impact-machinery"}),
        R("test", "02_000020.wav", 0, {"1-X_engine-of-uncertain-size", "1-2_medium-sounding-engine"}),
        R("test", "02_000021.wav", 0, set()),
    ]
    write_sonyc_csv(root, rows)
    write_sonyc_taxonomy(root)
    names = sorted({r["audio_filename"] for r in rows})
    if layout == "v2.2":
        for i, n in enumerate(names):
            write_wav(root / "audio" / n, seconds, rate, 300.0 + 50 * i, seed=i)
    elif layout == "v2.3":
        for k, chunk in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
            with tarfile.open(root / f"audio-{k}.tar.gz", "w:gz") as tf:
                for i, n in enumerate(chunk):
                    buf = io.BytesIO()
                    sf.write(buf, tone(seconds, rate, 300.0 + 50 * i, seed=i), rate, format="WAV", subtype="PCM_16")
                    info = tarfile.TarInfo(f"audio/{n}")
                    info.size = buf.tell()
                    buf.seek(0)
                    tf.addfile(info, buf)
    else:
        raise ValueError(layout)

    def coarse_of(fines: set[str]) -> set[str]:
        ids = {f.split("-")[0] for f in fines}
        return {c for c in SONYC_COARSE if c.split("_")[0] in ids}

    fine = {
        "train": {"00_000001.wav": {"1-1_small-sounding-engine", "8-1_dog-barking-whining", "1-X_engine-of-uncertain-size"},
                  "00_000002.wav": set()},
        "val": {"01_000010.wav": {"5-3_siren", "7-1_person-or-small-group-talking"},
                "01_000012.wav": {"2-X_other-unknown-impact-machinery"}},
        "test": {"02_000020.wav": {"1-X_engine-of-uncertain-size", "1-2_medium-sounding-engine"}, "02_000021.wav": set()},
    }
    expected = {s: {f: tags | coarse_of(tags) for f, tags in d.items()} for s, d in fine.items()}
    return SONYCFixture(root, rows, expected)


# ----------------------------------------------------------------------------------------------------------
# MagnaTagATune
# ----------------------------------------------------------------------------------------------------------
#: tags of annotations_final.csv outside the top 50 (a few real ones; the rest padded to 188 columns)
MTAT_OTHER_TAGS = ["hard rock", "jazz", "blues", "funk", "baroque", "medieval", "irish", "orchestra", "oboe",
                   "trance", "house", "hip hop", "eerie", "spacey", "chant", "drone", "low", "heavy", "lute", "banjo"]
MTAT_ALL_TAGS = list(MTAT_TOP50[:25]) + MTAT_OTHER_TAGS + list(MTAT_TOP50[25:])
MTAT_ALL_TAGS += [f"other tag {i}" for i in range(188 - len(MTAT_ALL_TAGS))]
assert len(MTAT_ALL_TAGS) == 188 and len(set(MTAT_ALL_TAGS)) == 188


@dataclass
class MTATFixture:
    root: Path
    rows: list[dict]  # clip_id, mp3_path, tags (set)
    expected: dict[str, dict[str, set[str]]]  # split -> clip_id -> top-50 tags (clips kept)


def make_mtat(tmp: Path, *, seconds: float = 1.5, rate: int = 16000, quote_all: bool = True) -> MTATFixture:
    """``annotations_final.csv`` (TAB-separated, ``clip_id``, 188 tags, ``mp3_path``; every field quoted as in
    the release) and MP3s under the folders of their ``mp3_path``.

    Clips: folder 0: two tagged, one with only non-top-50 tags (dropped); folder b: one; c (val): two;
    d and f (test): one each.
    """
    root = tmp / "magnatagatune"
    spec = [
        (2, "0", {"classical", "strings", "violin"}),
        (6, "0", {"guitar", "rock", "loud", "male vocal"}),
        (10, "0", {"jazz", "blues"}),  # no top-50 tag -> dropped
        (25, "b", {"techno", "electronic", "beat"}),
        (31, "c", {"piano", "slow", "no vocal"}),
        (32, "c", {"opera", "female", "singing", "hard rock"}),
        (40, "d", {"sitar", "indian"}),
        (41, "f", {"choral", "choir", "new age"}),
    ]
    rows = []
    for k, (cid, folder, tags) in enumerate(spec):
        rel = f"{folder}/artist_{cid}-album_{cid}-01-track_{cid}-30-59.mp3"
        write_mp3(root / rel, seconds, rate, 220.0 * (1 + k % 4), seed=cid)
        rows.append({"clip_id": str(cid), "mp3_path": rel, "tags": tags})
    write_mtat_csv(root, rows, quote_all=quote_all)
    split_of = {"0": "train", "b": "train", "c": "val", "d": "test", "f": "test"}
    expected: dict[str, dict[str, set[str]]] = {"train": {}, "val": {}, "test": {}}
    for r in rows:
        top = set(r["tags"]) & set(MTAT_TOP50)
        if top:
            expected[split_of[r["mp3_path"][0]]][r["clip_id"]] = top
    return MTATFixture(root, rows, expected)


def write_mtat_csv(root: Path, rows: list[dict], *, header: list[str] | None = None, quote_all: bool = True) -> Path:
    header = header or ["clip_id", *MTAT_ALL_TAGS, "mp3_path"]
    path = root / "annotations_final.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL,
                       lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([r["clip_id"] if c == "clip_id" else r["mp3_path"] if c == "mp3_path"
                        else ("1" if c in r["tags"] else "0") for c in header])
    return path


# ----------------------------------------------------------------------------------------------------------
# MTG-Jamendo
# ----------------------------------------------------------------------------------------------------------
@dataclass
class JamendoFixture:
    root: Path
    audio_dir: Path
    expected: dict[str, dict[str, set[str]]]  # split -> TRACK_ID -> tags


def make_mtg_jamendo(tmp: Path, *, seconds: float = 1.0, rate: int = 16000) -> JamendoFixture:
    """``data/splits/split-0/autotagging_top50tags-{train,validation,test}.tsv`` (header
    ``TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS``, tags in the remaining TAB fields) + MP3s at ``PATH``."""
    root = tmp / "mtg-jamendo-dataset"
    audio = tmp / "jamendo-audio"
    splits = {
        "train": [("track_0000214", "14/214.mp3", ["genre---pop", "instrument---piano"]),
                  ("track_0000215", "15/215.mp3", ["genre---rock", "mood/theme---energetic", "instrument---guitar"])],
        "validation": [("track_0000314", "14/314.mp3", ["genre---pop"])],
        "test": [("track_0000414", "14/414.mp3", ["instrument---guitar", "mood/theme---energetic"])],
    }
    expected = {}
    for split, tracks in splits.items():
        d = root / "data" / "splits" / "split-0"
        d.mkdir(parents=True, exist_ok=True)
        lines = ["TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"]
        for i, (tid, rel, tags) in enumerate(tracks):
            lines.append("\t".join([tid, "artist_000014", "album_000031", rel, f"{seconds:.1f}", *tags]))
            write_mp3(audio / rel, seconds, rate, 330.0 + 110 * i, seed=i)
        (d / f"autotagging_top50tags-{split}.tsv").write_text("\n".join(lines) + "\n")
        expected[{"train": "train", "validation": "val", "test": "test"}[split]] = {t: set(g) for t, _, g in tracks}
    return JamendoFixture(root, audio, expected)
