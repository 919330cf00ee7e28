"""MagnaTagATune (music tagging, top-50 tags, multilabel) and MTG-Jamendo (top-50 split files).

MagnaTagATune tree::

    <root>/annotations_final.csv     TAB-separated: clip_id, 188 tag columns, mp3_path (values 0/1)
    <root>/0/ ... <root>/f/          the MP3s (mp3_path like "f/american_bach_soloists-...-30-59.mp3")

Split by the first folder of ``mp3_path``: ``0``-``b`` train, ``c`` validation, ``d``-``f`` test. Only the
top-50 tags (:data:`MTAT_TOP50`, stored here in the usual order) are used; clips with none of them are
dropped (count logged and kept in ``dropped_no_tag``): 15,250 / 1,529 / 4,332 clips remain in the release.

MTG-Jamendo: ``<root>/data/splits/split-{k}/autotagging_top50tags-{train,validation,test}.tsv``
(header ``TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS``, tags = the remaining tab-separated fields),
audio under ``audio_dir`` at ``PATH``. Classes: the tags of the train file, sorted.

Chunking (both): ``chunk_s`` is the waveform length of every batch (the module's ``duration_s``).
Training items are clips; each visit takes a random ``chunk_s`` chunk. Validation/test items are all
chunks of every clip (hop ``eval_hop_s``, default ``chunk_s``), each batch carrying ``clip_index`` /
``chunk_index`` int64 ``(B,)`` (and ``id`` = clip id) so that predictions can be averaged per clip with
:func:`average_chunks`, or scored directly with :class:`l2i.metrics.tagging.ClipTaggingMetrics`
(``update(probabilities, target, clip_index)`` per test batch: clip-level macro ROC-AUC / PR-AUC). The cache holds whole clips (``clip_s`` seconds, zero padded; decoded lengths
kept), so chunks are memmap slices.

Three MagnaTagATune MP3s are reported by other users to be empty (0 bytes); use ``on_bad_file: skip``
for the full release (the report lists them).

The config of every stage (a LightningCLI ``data`` group; the loader's keys in ``init_args.loader``):
experiments/magnatagatune/data.yaml (MTG-Jamendo: experiments/mtg_jamendo/data.yaml).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules import decode
from datamodules.files import (
    AudioFileDataset,
    AudioItem,
    Collated,
    DatasetFormatError,
    FileDataModule,
    LoaderConfig,
    OnBadFile,
    check_duplicates,
    collate_batch,
    parse_int,
    read_table,
    require_file,
    require_root,
)
from l2i.audio import AudioFileError, audio_info
from l2i.frontend import fix_length
from l2i.metrics.tagging import average_chunks

__all__ = ["MTAT_TOP50", "MTAT_SPLIT_FOLDERS", "ChunkedAudioDataset", "MagnaTagATuneDataModule",
           "MTGJamendoDataModule", "average_chunks"]

log = logging.getLogger(__name__)

MTAT_TOP50 = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop",
    "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip
MTAT_SPLIT_FOLDERS = {
    "train": tuple("0123456789ab"),
    "val": ("c",),
    "test": ("d", "e", "f"),
}


class ChunkedAudioDataset(Dataset):
    """Chunks of whole clips.

    ``mode="random"``: item ``i`` = a uniformly random ``chunk_samples`` chunk of clip ``i`` (zero padded
    if the clip is shorter). ``mode="all"``: items enumerate ``(clip, chunk)`` pairs, ``1 + (L - chunk) //
    hop`` chunks per clip of decoded length ``L`` (at least one). Items: ``{"waveform" float32
    (chunk_samples,), "target", "sample_rate", "id" (clip id), "clip_index", "chunk_index"}``.

    ``lengths[i]``: decoded length of clip ``i`` in samples at ``sample_rate`` (from the cache, or from the
    file header). With ``cache`` chunks are memmap slices; otherwise the chunk is decoded from the file
    (``offset_s`` / ``duration_s`` reads).
    """

    def __init__(self, items: list[AudioItem], sample_rate: int, chunk_samples: int, lengths: np.ndarray, *,
                 mode: Literal["random", "all"], hop_samples: int | None = None, cache=None, split: str = "",
                 on_bad_file: OnBadFile = "error", report=None, batch_dtype: torch.dtype | str = torch.float32):
        self.base = AudioFileDataset(items, sample_rate, chunk_samples, cache=cache, split=split,
                                     on_bad_file=on_bad_file, report=report, batch_dtype=batch_dtype)
        self.items, self.sample_rate, self.chunk_samples = self.base.items, int(sample_rate), int(chunk_samples)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.mode = mode
        self.hop = int(hop_samples or chunk_samples)
        if mode == "all":
            counts = np.maximum(1, 1 + (self.lengths - self.chunk_samples) // self.hop)
            self.index = np.stack([np.repeat(np.arange(len(items)), counts),
                                   np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, int)], 1)
        elif mode != "random":
            raise ValueError(f"mode must be 'random' or 'all', got {mode!r}")

    def __len__(self) -> int:
        return len(self.items) if self.mode == "random" else len(self.index)

    def _chunk(self, clip: int, start: int) -> torch.Tensor | None:
        base = self.base
        if base.cache is not None:
            wav = base.cache.read(clip, start, start + self.chunk_samples, base.batch_dtype)
            return fix_length(wav, self.chunk_samples)
        item = self.items[clip]
        try:
            if Path(item.path).suffix.lower() == ".mp3":
                # libsndfile's MP3 seek lands up to a frame (1,152 samples) off; decoding from the start and
                # slicing gives the same samples as the cache (the frames up to the chunk's end only, plus the
                # resampler's margin: decode.decode_clip)
                wav = decode.decode_clip(item.path, self.sample_rate, None, max_samples=start + self.chunk_samples)
                return fix_length(wav[start:start + self.chunk_samples], self.chunk_samples)
            return decode.decode_clip(item.path, self.sample_rate, self.chunk_samples,
                                     offset_s=start / self.sample_rate, duration_s=self.chunk_samples / self.sample_rate)
        except AudioFileError as exc:
            if base.on_bad_file == "error":
                raise
            base.report.add(base.split, item.path, exc.reason)
            return None

    def _position(self, i: int) -> tuple[int, int, int]:
        """``(clip, chunk index, start sample)`` of item ``i``; ``mode="random"`` draws the start from torch's
        generator (one draw per item, in the order items are asked for)."""
        if self.mode == "random":
            excess = int(self.lengths[i]) - self.chunk_samples
            start = int(torch.randint(0, excess + 1, (1,)).item()) if excess > 0 else 0
            return i, 0, start
        clip, chunk = (int(v) for v in self.index[i])
        return clip, chunk, chunk * self.hop

    def _meta(self, clip: int, chunk: int) -> dict:
        item = self.items[clip]
        out = {"target": item.target, "sample_rate": self.sample_rate, "id": item.id, "clip_index": clip,
               "chunk_index": chunk}
        if item.extra:
            out.update(item.extra)
        return out

    def __getitem__(self, i: int) -> dict | None:
        clip, chunk, start = self._position(i)
        wav = self._chunk(clip, start)
        if wav is None:
            return None
        return {"waveform": wav, **self._meta(clip, chunk)}

    def __getitems__(self, indices) -> list[dict | None] | Collated:
        """A whole batch (the DataLoader's batched fetch): the items, order, random starts and values of
        ``[self[i] for i in indices]``. Cached: all chunks in one pass over the memmap, straight into one
        ``(B, chunk_samples)`` buffer, returned already collated (as :meth:`AudioFileDataset.__getitems__`)."""
        positions = [self._position(int(i)) for i in indices]
        if self.base.cache is None:
            out = []
            for clip, chunk, start in positions:
                wav = self._chunk(clip, start)
                out.append(None if wav is None else {"waveform": wav, **self._meta(clip, chunk)})
            return out
        clips = [p[0] for p in positions]
        wavs = self.base.cache.read_chunks(clips, [p[2] for p in positions], self.chunk_samples, self.base.batch_dtype)
        rest = collate_batch([self._meta(clip, chunk) for clip, chunk, _ in positions])
        return Collated({"waveform": wavs, **rest})


class _ChunkedModule(FileDataModule):
    """Shared chunking logic of the music-tagging modules (``duration_s`` == ``chunk_s``)."""

    task = "multilabel"

    def _init_chunks(self, chunk_s: float, clip_s: float | None, eval_hop_s: float | None) -> None:
        if chunk_s <= 0 or (clip_s is not None and clip_s < chunk_s) or (eval_hop_s is not None and eval_hop_s <= 0):
            raise ValueError(f"need 0 < chunk_s <= clip_s and eval_hop_s > 0; got {chunk_s}, {clip_s}, {eval_hop_s}")
        self.chunk_s = float(chunk_s)
        self.clip_s = None if clip_s is None else float(clip_s)
        self.eval_hop_s = float(eval_hop_s) if eval_hop_s else self.chunk_s
        if self.cache_dir and self.clip_s is None:
            raise ValueError(f"{self.name}: a cache needs clip_s (seconds of each clip to keep)")

    @property
    def cache_num_samples(self) -> int:
        return int(round(self.clip_s * self.sample_rate))

    def _header_lengths(self, items: list[AudioItem]) -> np.ndarray:
        lengths = []
        for it in items:
            try:
                info = audio_info(it.path)
            except AudioFileError:
                if self.on_bad_file == "error":
                    raise
                lengths.append(self.num_samples)  # one chunk; decoding it reports the file and skips it
                continue
            n = int(info.frames * self.sample_rate / info.samplerate)
            lengths.append(n if self.clip_s is None else min(n, self.cache_num_samples))
        return np.asarray(lengths, dtype=np.int64)

    def make_dataset(self, split: str, items: list[AudioItem], array) -> Dataset:
        lengths = array.lengths if array is not None else self._header_lengths(items)
        return ChunkedAudioDataset(
            items, self.sample_rate, self.num_samples, lengths, mode="random" if split == "train" else "all",
            hop_samples=int(round(self.eval_hop_s * self.sample_rate)), cache=array, split=split,
            on_bad_file=self.on_bad_file, report=self.report, batch_dtype=self.batch_dtype,
        )

    average_chunks = staticmethod(average_chunks)


class MagnaTagATuneDataModule(_ChunkedModule):
    """MagnaTagATune top-50 tagging as a LightningDataModule.

    Batches: ``waveform`` float32 ``(B, round(chunk_s * sample_rate))``, ``target`` float32 multi-hot
    ``(B, 50)`` (order :data:`MTAT_TOP50`), ``sample_rate`` int64 ``(B,)``, ``id`` = ``clip_id`` strings,
    ``clip_index`` / ``chunk_index`` int64 ``(B,)``.

    Args (besides those of :class:`~datamodules.files.FileDataModule`; ``duration_s`` is ``chunk_s``):
        chunk_s: chunk length in seconds (training: random chunk; val/test: all chunks).
        clip_s: seconds of each clip kept (cache row length, chunk enumeration limit); MTAT clips ~29.1 s.
        eval_hop_s: hop between evaluation chunks (default ``chunk_s``: non-overlapping).
    """

    name = "magnatagatune"

    def __init__(
        self,
        root: str,
        sample_rate: int = 16000,
        chunk_s: float = 3.0,
        clip_s: float = 29.1,
        eval_hop_s: float | None = None,
        loader: LoaderConfig | None = None,
        seed: int = 0,
    ):
        super().__init__(root, sample_rate, chunk_s, loader=loader, seed=seed)
        self._init_chunks(chunk_s, clip_s, eval_hop_s)
        self.class_names = list(MTAT_TOP50)
        self.num_classes = len(self.class_names)
        self._clips: dict[str, list[AudioItem]] | None = None
        self.dropped_no_tag: dict[str, int] = {}

    def read_annotations(self) -> dict[str, list[AudioItem]]:
        """Items per stage from ``annotations_final.csv`` (top-50 tags; clips without any dropped)."""
        if self._clips is not None:
            return self._clips
        root = require_root(self.root, "MagnaTagATune", "the folders 0-f of MP3s and annotations_final.csv")
        csv_path = require_file(root / "annotations_final.csv", "MagnaTagATune", "annotations csv")
        _, rows = read_table(csv_path, delimiter="\t", required=("clip_id", "mp3_path", *MTAT_TOP50))
        check_duplicates([r["clip_id"] for r in rows], csv_path, "clip_id")
        check_duplicates([r["mp3_path"] for r in rows], csv_path, "mp3_path")
        folder_stage = {f: s for s, folders in MTAT_SPLIT_FOLDERS.items() for f in folders}
        clips: dict[str, list[AudioItem]] = {s: [] for s in MTAT_SPLIT_FOLDERS}
        dropped = {s: 0 for s in MTAT_SPLIT_FOLDERS}
        for r in rows:
            cid, rel = r["clip_id"].strip(), r["mp3_path"].strip()
            folder = rel.split("/", 1)[0]
            if folder not in folder_stage or "/" not in rel:
                raise DatasetFormatError(f"{csv_path}: clip {cid!r} has mp3_path {rel!r}, expected '<0-9a-f>/<name>.mp3'")
            target = np.empty(len(MTAT_TOP50), dtype=np.float32)
            for j, tag in enumerate(MTAT_TOP50):
                v = parse_int(r[tag], csv_path, tag, cid)
                if v not in (0, 1):
                    raise DatasetFormatError(f"{csv_path}: tag {tag!r} of clip {cid!r} is {v}, expected 0 or 1")
                target[j] = v
            stage = folder_stage[folder]
            if not target.any():
                dropped[stage] += 1
                continue
            clips[stage].append(AudioItem(str(root / rel), target, cid))
        self.dropped_no_tag = dropped
        log.warning("MagnaTagATune: dropped clips without any top-50 tag: %s", dropped)
        self._clips = clips
        return clips

    def build_items(self, stage: str) -> list[AudioItem]:
        clips = self.read_annotations()
        if not clips[stage]:
            raise DatasetFormatError(f"MagnaTagATune: no tagged clips in folders {MTAT_SPLIT_FOLDERS[stage]} of {self.root}")
        return clips[stage]


class MTGJamendoDataModule(_ChunkedModule):
    """MTG-Jamendo ``autotagging_top50tags`` (same batches as :class:`MagnaTagATuneDataModule`).

    Args: ``root`` = the mtg-jamendo-dataset checkout (holds ``data/splits``); ``audio_dir`` = where the
    MP3s were unpacked (``PATH`` is relative to it; default ``root/audio``); ``split`` = 0-4. Tracks are
    minutes long: ``clip_s`` limits how much of each track is used (required with a cache).
    """

    name = "mtg_jamendo"
    SPLIT_FILES = {"train": "train", "val": "validation", "test": "test"}
    COLUMNS = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS")

    def __init__(
        self,
        root: str,
        audio_dir: str | None = None,
        split: int = 0,
        sample_rate: int = 16000,
        chunk_s: float = 3.0,
        clip_s: float | None = None,
        eval_hop_s: float | None = None,
        loader: LoaderConfig | None = None,
        seed: int = 0,
    ):
        super().__init__(root, sample_rate, chunk_s, loader=loader, seed=seed)
        if split not in range(5):
            raise ValueError(f"split must be 0-4, got {split}")
        self.audio_dir = audio_dir
        self.split = int(split)
        self._init_chunks(chunk_s, clip_s, eval_hop_s)
        self._clips: dict[str, list[AudioItem]] | None = None
        self._read_tags()

    def _split_file(self, stage: str) -> Path:
        root = require_root(self.root, "MTG-Jamendo", "the mtg-jamendo-dataset checkout with data/splits/")
        return require_file(
            root / "data" / "splits" / f"split-{self.split}" / f"autotagging_top50tags-{self.SPLIT_FILES[stage]}.tsv",
            "MTG-Jamendo", "split file",
        )

    @staticmethod
    def _read_tsv(path: Path) -> list[tuple[str, str, list[str]]]:
        """-> ``[(track_id, relative path, tags)]``; the TAGS column spills over into further fields."""
        with open(path, encoding="utf-8-sig") as fh:
            header = fh.readline().rstrip("\n").split("\t")
            from datamodules.files import require_columns

            require_columns(header, MTGJamendoDataModule.COLUMNS, path)
            col = {c: header.index(c) for c in MTGJamendoDataModule.COLUMNS}
            out = []
            for lineno, line in enumerate(fh, start=2):
                fields = line.rstrip("\n").split("\t")
                if len(fields) == 1 and not fields[0].strip():
                    continue
                if len(fields) < len(header):
                    raise DatasetFormatError(f"{path}, line {lineno}: {len(fields)} fields, expected at least {len(header)}")
                tags = [t.strip() for t in fields[col["TAGS"]:] if t.strip()]
                if not tags:
                    raise DatasetFormatError(f"{path}, line {lineno}: track {fields[col['TRACK_ID']]!r} has no tags")
                out.append((fields[col["TRACK_ID"]], fields[col["PATH"]], tags))
        return out

    def _read_tags(self) -> None:
        """Class names = sorted tags of the train split file. Read at construction because the model's
        output size is linked from ``num_classes``; a missing root or split file raises here, naming it."""
        rows = self._read_tsv(self._split_file("train"))
        self.class_names = sorted({t for _, _, tags in rows for t in tags})
        self.num_classes = len(self.class_names)

    def read_splits(self) -> dict[str, list[AudioItem]]:
        if self._clips is not None:
            return self._clips
        root = require_root(self.root, "MTG-Jamendo", "the mtg-jamendo-dataset checkout with data/splits/")
        self._read_tags()
        audio_dir = Path(self.audio_dir) if self.audio_dir else root / "audio"
        index = {t: i for i, t in enumerate(self.class_names)}
        clips: dict[str, list[AudioItem]] = {}
        for stage in self.SPLIT_FILES:
            path = self._split_file(stage)
            rows = self._read_tsv(path)
            check_duplicates([r[0] for r in rows], path, "TRACK_ID")
            items = []
            for track, rel, tags in rows:
                unknown = [t for t in tags if t not in index]
                if unknown:
                    raise DatasetFormatError(f"{path}: track {track!r} has unknown tag(s) {unknown} (not in the train split's tags)")
                target = np.zeros(len(index), dtype=np.float32)
                target[[index[t] for t in tags]] = 1.0
                items.append(AudioItem(str(audio_dir / rel), target, track))
            clips[stage] = items
        self._clips = clips
        return clips

    def build_items(self, stage: str) -> list[AudioItem]:
        return self.read_splits()[stage]
