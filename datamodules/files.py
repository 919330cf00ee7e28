"""Shared code for file-based data sets (ESC-50, SONYC-UST, MagnaTagATune, MTG-Jamendo).

What lives here:

- validation helpers that fail with messages a user can act on: missing root, missing CSV, missing column
  (names the CSV and the column and lists the columns present), a listed file absent, an empty or
  unreadable file, an unknown class / tag, duplicated rows;
- the ``on_bad_file`` policy: ``"error"`` raises :class:`~l2i.audio.AudioFileError` naming the file and the
  reason; ``"skip"`` drops the item, logs a warning **and** appends ``path,reason`` to a report CSV
  (:class:`SkipReport`, ``skipped_files.csv``) - an item is never dropped silently;
- :class:`AudioFileDataset`: a map-style dataset over :class:`AudioItem` (path, target, id) that decodes with
  :func:`datamodules.decode.decode_clip` at the module rate and fixes the length, or reads the same clip from a
  :class:`~datamodules.cache.WaveformCache` memmap (a whole batch in one read, ``__getitems__``);
- :func:`collate_batch`: the batch dictionary of the batch contract;
- training order from :class:`datamodules.sampling.EpochSampler` (seed and epoch only; resumable);
- :class:`FileDataModule`: the LightningDataModule skeleton the data-set modules fill in (items per split).

Batch contract (every module): ``waveform`` float32 ``(B, samples)`` at ``sample_rate``; ``target`` int64
``(B,)`` (multiclass) or float32 multi-hot ``(B, C)`` (multilabel); ``sample_rate`` int64 ``(B,)``; ``id``
``list[str]`` (length B). Chunked data sets add ``clip_index`` / ``chunk_index`` int64 ``(B,)``.
"""

from __future__ import annotations

import abc
import csv
import dataclasses
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules import decode
from datamodules.buffers import batch_buffer
from datamodules.cache import WaveformCache
from datamodules.sampling import EpochSampler, SplitLoaders, resolve_pin_memory
from l2i.audio import AudioFileError, audio_info, wav_truncation
from l2i.frontend import fix_length

__all__ = [
    "OnBadFile",
    "LoaderConfig",
    "with_batch_size",
    "DatasetFormatError",
    "AudioItem",
    "SkipReport",
    "require_root",
    "require_file",
    "read_table",
    "require_columns",
    "check_duplicates",
    "parse_int",
    "check_audio_files",
    "AudioFileDataset",
    "float32_waveform",
    "collate_batch",
    "Collated",
    "FileDataModule",
]

log = logging.getLogger(__name__)

OnBadFile = Literal["error", "skip"]


class DatasetFormatError(ValueError):
    """The data set on disk does not have the expected layout or content. The message says where and what."""


@dataclass(frozen=True)
class AudioItem:
    """One example: ``path`` (absolute), ``target`` (``int`` class index, or float32 multi-hot ``(C,)``),
    ``id`` (unique within the data set, e.g. the file name), ``extra`` (optional further batch keys)."""

    path: str
    target: Any
    id: str
    extra: dict | None = None  # further per-item batch keys, e.g. ``{"target_x": float32 (6,)}``


LOADER_KEYS = ("batch_size", "num_workers", "pin_memory", "persistent_workers", "cache_dir", "cache_dtype",
               "batch_dtype", "on_bad_file", "report_dir", "check_headers")


@dataclass(frozen=True)
class LoaderConfig:
    """How a file-based data set is read, the same for every one of them: the ``loader`` group of a DataModule
    (``data.init_args.loader.batch_size`` in a config; ``--data.init_args.loader.cache_dir DIR`` on the
    command line).

    Args:
        batch_size: clips per batch.
        num_workers: DataLoader worker processes (also the cache build's decoders).
        pin_memory: page-locked batches; ``auto``: only when training on a GPU.
        persistent_workers: keep the workers between epochs (with ``num_workers > 0``).
        cache_dir: decode every file once into memory-mapped arrays under ``<cache_dir>/<data set>``;
            None: decode per item.
        cache_dtype: the cache's sample type.
        batch_dtype: ``float16`` hands the cached samples over as stored (needs ``cache_dir``); the DataModule
            casts them to float32 on the device.
        on_bad_file: ``error`` stops at the first unreadable file (naming it); ``skip`` drops it and lists it
            in ``skipped_files.csv``.
        report_dir: where that list goes (default ``<cache_dir>/<data set>``, else ``./l2i-reports/<data set>``).
        check_headers: read every file's header at setup (``on_bad_file`` applies before training starts).
    """

    batch_size: int = 32
    num_workers: int = 0
    pin_memory: bool | Literal["auto"] = "auto"
    persistent_workers: bool = False
    cache_dir: str | None = None
    cache_dtype: Literal["float16", "float32"] = "float16"
    batch_dtype: Literal["float32", "float16"] = "float32"
    on_bad_file: OnBadFile = "error"
    report_dir: str | None = None
    check_headers: bool = True

    def __post_init__(self):
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size <= 0:
            raise ValueError(f"loader.batch_size must be a positive integer, got {self.batch_size!r}")
        if self.on_bad_file not in ("error", "skip"):
            raise ValueError(f"loader.on_bad_file must be 'error' or 'skip', got {self.on_bad_file!r}")
        if self.cache_dtype not in ("float16", "float32"):
            raise ValueError(f"loader.cache_dtype must be float16 or float32, got {self.cache_dtype!r}")
        resolve_pin_memory(self.pin_memory)  # refuses anything but true / false / 'auto'
        check_batch_dtype(self.batch_dtype, self.cache_dir or None)

    @classmethod
    def from_any(cls, value: "LoaderConfig | dict | None") -> "LoaderConfig":
        """A ``LoaderConfig`` from itself, a mapping of its fields (a config read as plain YAML) or None
        (the defaults); an unknown key raises naming it and the known ones."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"loader must be a mapping of {', '.join(LOADER_KEYS)}; got {type(value).__name__}")
        unknown = sorted(set(value) - set(LOADER_KEYS))
        if unknown:
            raise ValueError(f"loader: unknown key(s) {unknown}; known: {', '.join(LOADER_KEYS)}")
        return cls(**value)

    @staticmethod
    def group(kwargs: dict) -> dict:
        """``kwargs`` with the loader's keys (``batch_size=…, cache_dir=…``) moved into one ``loader`` entry:
        the flat keyword style of a script, turned into the DataModule's signature."""
        kwargs = dict(kwargs)
        moved = {k: kwargs.pop(k) for k in LOADER_KEYS if k in kwargs}
        if moved:
            base = kwargs.get("loader")
            base = {} if base is None else (dataclasses.asdict(base) if isinstance(base, LoaderConfig) else dict(base))
            kwargs["loader"] = {**base, **moved}
        return kwargs


def with_batch_size(cls: type, init_args: dict, batch_size: int) -> dict:
    """``init_args`` of the DataModule class ``cls`` with its batch size set: in its ``loader`` group when it has
    one (the file-based data sets), else as ``batch_size`` (the generated data sets)."""
    import inspect

    out = dict(init_args)
    if "loader" in inspect.signature(cls.__init__).parameters:
        loader = out.get("loader")
        loader = dataclasses.asdict(loader) if isinstance(loader, LoaderConfig) else dict(loader or {})
        out["loader"] = {**loader, "batch_size": int(batch_size)}
    else:
        out["batch_size"] = int(batch_size)
    return out


# ----------------------------------------------------------------------------------------------------------
# skip report
# ----------------------------------------------------------------------------------------------------------
class SkipReport:
    """Append-only CSV of the files the ``skip`` policy dropped: header ``dataset,split,path,reason``.

    The file exists only once something was skipped (a run without bad files writes nothing). Safe to use
    from DataLoader workers (each row is one small ``O_APPEND`` write). :meth:`reset` removes the report of
    an earlier run (called once per DataModule); every :meth:`add` also logs a warning naming the report.
    """

    HEADER = ("dataset", "split", "path", "reason")

    def __init__(self, path: str | os.PathLike, dataset: str):
        self.path = Path(path)
        self.dataset = dataset
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)
        self._seen.clear()

    def add(self, split: str, path: str, reason: str) -> None:
        key = (split, str(path))
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "w", newline="") as fh:
                    csv.writer(fh).writerow(self.HEADER)
            with open(self.path, "a", newline="") as fh:
                csv.writer(fh).writerow((self.dataset, split, str(path), reason))
        log.warning("%s/%s: skipping %s (%s); listed in %s", self.dataset, split, path, reason, self.path)

    def rows(self) -> list[dict[str, str]]:
        """The report's rows (for tests and summaries)."""
        if not self.path.exists():
            return []
        with open(self.path, newline="") as fh:
            return list(csv.DictReader(fh))

    def __getstate__(self):  # the lock cannot be pickled into DataLoader workers
        state = dict(self.__dict__)
        state.pop("_lock")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


# ----------------------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------------------
def require_root(root: str | os.PathLike, dataset: str, expected: str) -> Path:
    """The data-set root as an absolute path; raises ``FileNotFoundError`` saying what should be there."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset}: root {str(path)!r} does not exist or is not a directory; expected {expected} "
                                f"(on the command line: --data.init_args.root DIR)")
    return path.resolve()


def require_file(path: str | os.PathLike, dataset: str, what: str) -> Path:
    """``path`` if it is an existing non-empty file, else ``FileNotFoundError`` naming it and ``what`` it is."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{dataset}: {what} {str(path)!r} not found")
    if path.stat().st_size == 0:
        raise DatasetFormatError(f"{dataset}: {what} {str(path)!r} is empty (0 bytes)")
    return path


def require_columns(header: Sequence[str], required: Iterable[str], source: str | os.PathLike) -> None:
    """Raise :class:`DatasetFormatError` naming the file, each missing column, and the columns present."""
    present = list(header)
    missing = [c for c in required if c not in present]
    if missing:
        shown = ", ".join(repr(c) for c in present[:60]) + (" ..." if len(present) > 60 else "")
        raise DatasetFormatError(
            f"{source}: missing column(s) {', '.join(repr(c) for c in missing)}; columns present: [{shown}]"
        )


def read_table(
    path: str | os.PathLike, *, delimiter: str = ",", required: Iterable[str] = ()
) -> tuple[list[str], list[dict[str, str]]]:
    """Read a delimited text table with a header row -> ``(header, rows)``; each row a ``{column: text}``.

    Columns are addressed by name only. ``required`` columns are checked with :func:`require_columns`.
    Rows with a different number of fields than the header raise :class:`DatasetFormatError` (line number).
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: a byte-order mark (Excel export) is dropped
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DatasetFormatError(f"{path}: no header row") from None
        if len(header) == 1 and delimiter != "," and "," in header[0]:
            raise DatasetFormatError(f"{path}: expected {delimiter!r}-separated columns but the header looks comma-separated")
        require_columns(header, required, path)
        rows = []
        for lineno, fields in enumerate(reader, start=2):
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if len(fields) != len(header):
                raise DatasetFormatError(f"{path}, line {lineno}: {len(fields)} fields but the header has {len(header)}")
            rows.append(dict(zip(header, fields)))
    return header, rows


def check_duplicates(keys: Sequence[Any], source: str | os.PathLike, what: str) -> None:
    """Raise :class:`DatasetFormatError` listing (up to 5) keys that occur more than once."""
    seen: set = set()
    dups: list = []
    for k in keys:
        if k in seen and k not in dups:
            dups.append(k)
        seen.add(k)
    if dups:
        more = f" (and {len(dups) - 5} more)" if len(dups) > 5 else ""
        raise DatasetFormatError(f"{source}: duplicated rows for {what} {', '.join(map(repr, dups[:5]))}{more}")


def parse_int(value: str, source: str | os.PathLike, column: str, row_id: str) -> int:
    """``int(value)`` (accepting ``"1.0"``) or :class:`DatasetFormatError` naming file, column and row."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{source}: column {column!r} of row {row_id!r} is {value!r}, not a number") from None
    if not f.is_integer():
        raise DatasetFormatError(f"{source}: column {column!r} of row {row_id!r} is {value!r}, not an integer")
    return int(f)


def _bad_file_reason(path: str, check_header: bool) -> str | None:
    p = Path(path)
    if not p.is_file():
        return "file listed in the metadata does not exist"
    if p.stat().st_size == 0:
        return "file is empty (0 bytes)"
    if check_header:
        try:
            info = audio_info(p)
        except AudioFileError as exc:
            return exc.reason
        if info.frames == 0:
            return "file holds no audio samples"
        if info.format == "WAV":
            cut = wav_truncation(p)
            if cut is not None:
                return f"WAV data chunk is truncated ({cut[1]:,} of the {cut[0]:,} bytes its header declares)"
    return None


def check_audio_files(
    items: Sequence[AudioItem],
    *,
    split: str,
    on_bad_file: OnBadFile,
    report: SkipReport | None,
    check_headers: bool = True,
) -> list[AudioItem]:
    """Keep the items whose file exists, is non-empty and (``check_headers``) has a readable audio header.

    ``on_bad_file="error"``: raise :class:`AudioFileError` for the first bad file (name + reason).
    ``"skip"``: drop it, warn, and add it to ``report``.
    """
    kept = []
    for item in items:
        reason = _bad_file_reason(item.path, check_headers)
        if reason is None:
            kept.append(item)
        elif on_bad_file == "error":
            raise AudioFileError(item.path, f"{reason} (split {split!r}; set on_bad_file: skip to drop such files)")
        else:
            _require_report(report).add(split, item.path, reason)
    return kept


def _require_report(report: SkipReport | None) -> SkipReport:
    if report is None:
        raise RuntimeError("on_bad_file='skip' needs a SkipReport")
    return report


# ----------------------------------------------------------------------------------------------------------
# decoding and the dataset
# ----------------------------------------------------------------------------------------------------------
BATCH_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def check_batch_dtype(batch_dtype, cache) -> torch.dtype:
    """The waveform dtype of a dataset's batches: float32, or float16 when the clips come from a cache."""
    dtype = BATCH_DTYPES.get(batch_dtype, batch_dtype) if isinstance(batch_dtype, str) else batch_dtype
    if dtype not in BATCH_DTYPES.values():
        raise ValueError(f"batch_dtype must be float32 or float16, got {batch_dtype!r}")
    if dtype == torch.float16 and cache is None:
        raise ValueError("batch_dtype float16 needs cache_dir: the float16 cache's samples are handed over as "
                         "stored (decoded files are float32)")
    return dtype


def float32_waveform(batch):
    """``batch`` with a float16 ``waveform`` cast to float32 (other batches and keys unchanged)."""
    wave = batch.get("waveform") if isinstance(batch, dict) else None
    if isinstance(wave, torch.Tensor) and wave.dtype == torch.float16:
        batch = type(batch)(batch)
        batch["waveform"] = batch["waveform"].float()
    return batch


class AudioFileDataset(Dataset):
    """Map-style dataset over :class:`AudioItem`; item ``i`` -> ``{"waveform": float32 (num_samples,),
    "target": int | float32 (C,), "sample_rate": int, "id": str}``.

    ``batch_dtype`` float16 (cached data only): waveforms come as the float16 cache stores them (half the
    bytes to hand from a worker and to the device, no conversion in the loader); the DataModule casts them
    to float32 on the device (:meth:`FileDataModule.on_after_batch_transfer`).

    With ``cache`` (a :class:`~datamodules.cache.CachedArray` whose row ``i`` holds item ``i``) the clip is
    read from the memmap and no decoding happens. Without it the file is decoded here (in the DataLoader
    worker). A file that fails to decode raises (``on_bad_file="error"``) or, with ``"skip"``, is reported
    and the item comes back as ``None``; :func:`collate_batch` leaves it out of the batch.
    """

    def __init__(
        self,
        items: Sequence[AudioItem],
        sample_rate: int,
        num_samples: int,
        *,
        cache=None,
        split: str = "",
        on_bad_file: OnBadFile = "error",
        report: SkipReport | None = None,
        batch_dtype: torch.dtype | str = torch.float32,
    ):
        self.items = list(items)
        self.sample_rate = int(sample_rate)
        self.num_samples = int(num_samples)
        self.cache = cache
        self.batch_dtype = check_batch_dtype(batch_dtype, cache)
        self.split = split
        self.on_bad_file = on_bad_file
        self.report = report
        if cache is not None and len(cache) != len(self.items):
            raise ValueError(f"cache holds {len(cache)} rows for {len(self.items)} items")

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> torch.Tensor | None:
        """The fixed-length waveform ``(num_samples,)`` of item ``index`` (``None`` when skipped)."""
        item = self.items[index]
        if self.cache is not None:
            return fix_length(self.cache.read(index, dtype=self.batch_dtype), self.num_samples)
        try:
            return decode.decode_clip(item.path, self.sample_rate, self.num_samples)
        except AudioFileError as exc:
            if self.on_bad_file == "error":
                raise
            _require_report(self.report).add(self.split, item.path, exc.reason)
            return None

    def __getitem__(self, index: int) -> dict | None:
        wav = self.load(index)
        if wav is None:
            return None
        return self._item(index, wav)

    def _item(self, index: int, wav: torch.Tensor) -> dict:
        item = self.items[index]
        out = {"waveform": wav, "target": item.target, "sample_rate": self.sample_rate, "id": item.id}
        if item.extra:
            out.update(item.extra)
        return out

    def __getitems__(self, indices: Sequence[int]) -> "Collated":
        """A whole batch at once (the DataLoader's batched fetch), returned already collated
        (:class:`Collated`, passed through by :func:`collate_batch`): the ``(B, samples)`` waveform is
        written once, into a buffer that a worker hands to the main process without a copy
        (:func:`datamodules.buffers.batch_buffer`), never split and stacked again. Cached: one pass over the
        memmap for all rows. Uncached: each file decoded straight into its row. Items, order and values are
        those of ``[self[i] for i in indices]`` (skipped files left out)."""
        indices = [int(i) for i in indices]
        if self.cache is not None:
            wavs = fix_length(self.cache.read_many(indices, self.batch_dtype), self.num_samples)
        else:
            wavs = batch_buffer((len(indices), self.num_samples))
            kept = [k for k, i in enumerate(indices) if self._decode_into(i, wavs[k]) is not None]
            if len(kept) < len(indices):
                wavs, indices = wavs[kept], [indices[k] for k in kept]  # skipped files (rare): a copy
        return self._collated(indices, wavs)

    def _decode_into(self, index: int, row: torch.Tensor) -> torch.Tensor | None:
        item = self.items[index]
        try:
            return decode.decode_clip(item.path, self.sample_rate, self.num_samples, out=row)
        except AudioFileError as exc:
            if self.on_bad_file == "error":
                raise
            _require_report(self.report).add(self.split, item.path, exc.reason)
            return None

    def _collated(self, indices: Sequence[int], wavs: torch.Tensor) -> "Collated":
        """The batch of ``indices`` (their metadata collated) around their ``(B, samples)`` waveforms."""
        if not indices:
            return Collated()
        rest = collate_batch([{k: v for k, v in self._item(i, None).items() if k != "waveform"} for i in indices])
        return Collated({"waveform": wavs, **rest})


class Collated(dict):
    """A batch dictionary a dataset already assembled (see :meth:`AudioFileDataset.__getitems__`)."""


def collate_batch(samples: Sequence[dict | None]) -> dict:
    """Stack dataset items into the batch dictionary (``None`` items - skipped files - are left out).

    Tensors are stacked; ``target`` becomes int64 ``(B,)`` for ints and float32 ``(B, C)`` for multi-hot
    arrays; other ints -> int64 ``(B,)``; strings -> ``list[str]``.
    """
    if isinstance(samples, Collated):
        return dict(samples)
    samples = [s for s in samples if s is not None]
    if not samples:
        return {}
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        first = values[0]
        if isinstance(first, torch.Tensor):
            if all(v.device.type == "cpu" and not v.requires_grad and v.dtype != torch.bfloat16 for v in values):
                # numpy's stack is several times faster than torch.stack for large CPU tensors
                batch[key] = torch.from_numpy(np.stack([v.numpy() for v in values]))
            else:
                batch[key] = torch.stack(values)
        elif isinstance(first, np.ndarray):
            batch[key] = torch.from_numpy(np.stack(values)).float()
        elif isinstance(first, (bool, np.bool_)):
            batch[key] = torch.tensor(values, dtype=torch.bool)
        elif isinstance(first, (int, np.integer)):
            batch[key] = torch.tensor(values, dtype=torch.int64)
        elif isinstance(first, (float, np.floating)):
            batch[key] = torch.tensor(values, dtype=torch.float32)
        else:
            batch[key] = list(values)
    return batch


# ----------------------------------------------------------------------------------------------------------
# the DataModule skeleton
# ----------------------------------------------------------------------------------------------------------
class FileDataModule(SplitLoaders, L.LightningDataModule, abc.ABC):
    """Common machinery of the file-based DataModules; a subclass implements :meth:`build_items`.

    Subclasses set ``name``, ``task``, ``class_names``, ``num_classes`` and list their splits in
    ``splits`` (``{"train": ..., "val": ..., "test": ...}`` -> the data set's own split names are the
    subclass's business). The waveform length is ``num_samples = round(duration_s * sample_rate)``.
    ``loader`` (a :class:`LoaderConfig`, or a mapping of its keys) says how the files are read: the same group
    for every data set, passed by name; its values are also attributes (``batch_size``, ``cache_dir`` ...).
    ``seed`` draws the seeded splits and the training order.

    ``prepare_data`` (one process per node) fills the cache; ``setup`` builds the items, applies the
    ``on_bad_file`` policy and opens the cache (building it if ``prepare_data`` was not called).

    ``batch_dtype: float16`` (with ``cache_dir`` and the default ``cache_dtype: float16``) hands the cached
    samples over as stored: half the bytes from a worker to the main process and to the device, no
    conversion in the loader; :meth:`on_after_batch_transfer` casts the waveform to float32 on the device, so
    LightningModules still see float32. Code that reads the loaders itself gets float16 waveforms (the
    front-end accepts them; :func:`float32_waveform` converts a batch). Default float32: every batch float32.
    """

    name: str = "files"
    task: str = "multiclass"
    stages = ("train", "val", "test")

    def __init__(self, root: str, sample_rate: int, duration_s: float, loader: LoaderConfig | dict | None = None,
                 seed: int = 0):
        super().__init__()
        loader = LoaderConfig.from_any(loader)
        if sample_rate <= 0 or duration_s <= 0:
            raise ValueError("sample_rate and duration_s must be positive")
        self.root = str(root)
        self.sample_rate = int(sample_rate)
        self.duration_s = float(duration_s)
        self.loader = loader
        self.batch_size = int(loader.batch_size)
        self.num_workers = int(loader.num_workers)
        self.pin_memory = loader.pin_memory if loader.pin_memory == "auto" else bool(loader.pin_memory)
        self.persistent_workers = bool(loader.persistent_workers)
        self.cache_dir = loader.cache_dir
        self.cache_dtype = loader.cache_dtype
        self.on_bad_file = loader.on_bad_file
        self.report_dir = loader.report_dir
        self.check_headers = bool(loader.check_headers)
        self.batch_dtype = loader.batch_dtype
        self.seed = int(seed)
        self.datasets: dict[str, Dataset] = {}
        self.items: dict[str, list[AudioItem]] = {}
        self._report: SkipReport | None = None
        self._report_started = False

    # -- to be provided by subclasses ---------------------------------------------------------------------
    @abc.abstractmethod
    def build_items(self, stage: str) -> list[AudioItem]:
        """The items of ``stage`` (``train``/``val``/``test``) from the metadata, validated (labels, split
        membership, unknown classes and duplicates checked; files not yet opened)."""

    # -- shared -------------------------------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        return int(round(self.duration_s * self.sample_rate))

    @property
    def cache_num_samples(self) -> int:
        """Samples per cached row (subclasses with chunking cache whole clips)."""
        return self.num_samples

    @property
    def report(self) -> SkipReport:
        """Where ``on_bad_file: skip`` lists dropped files: ``report_dir`` or ``cache_dir/<name>`` or
        ``./l2i-reports/<name>``, file ``skipped_files.csv`` (``skipped_files.rank<r>.csv`` for the other
        ranks of a multi-process run, so no process truncates another's report)."""
        if self._report is None:
            base = Path(self.report_dir) if self.report_dir else (
                Path(self.cache_dir) / self.name if self.cache_dir else Path.cwd() / "l2i-reports" / self.name
            )
            rank = getattr(self.trainer, "global_rank", 0) if self.trainer is not None else 0
            self._report = SkipReport(base / ("skipped_files.csv" if rank == 0 else f"skipped_files.rank{rank}.csv"),
                                      self.name)
        return self._report

    def _start_report(self) -> None:
        """Begin a fresh skip report once per DataModule instance: ``setup("fit")`` followed by
        ``setup("test")`` must not erase what the first call reported."""
        if not self._report_started:
            self.report.reset()
            self._report_started = True

    def _cache(self) -> WaveformCache:
        return WaveformCache(
            Path(self.cache_dir) / self.name, self.sample_rate, self.cache_num_samples, dtype=self.cache_dtype
        )

    def _valid_items(self, stage: str) -> list[AudioItem]:
        items = self.build_items(stage)
        return check_audio_files(
            items, split=stage, on_bad_file=self.on_bad_file, report=self.report, check_headers=self.check_headers
        )

    def _cached_items(self, stage: str, items: list[AudioItem]):
        """Build/refresh the cache for ``items``; -> ``(items that decoded, CachedArray aligned with them)``."""
        cache = self._cache()
        array = cache.build([it.path for it in items], tag=stage, num_workers=self.num_workers)
        bad = array.failures()
        if bad:
            if self.on_bad_file == "error":
                path, reason = bad[0]
                more = f" ({len(bad) - 1} more bad file(s) in split {stage!r})" if len(bad) > 1 else ""
                raise AudioFileError(path, f"{reason}{more}; set on_bad_file: skip to drop such files")
            for path, reason in bad:
                self.report.add(stage, path, reason)
            keep = [i for i in range(len(items)) if array.ok[i]]
            return [items[i] for i in keep], array.subset(keep)
        return items, array

    def prepare_data(self) -> None:
        if self.cache_dir:
            self._start_report()
            for stage in self.stages:
                self._cached_items(stage, self._valid_items(stage))

    def _stages_for(self, stage: str | None) -> tuple[str, ...]:
        if stage in (None, "fit"):
            return ("train", "val") if stage == "fit" else self.stages
        if stage == "validate":
            return ("val",)
        if stage in ("test", "predict"):
            return ("test",)
        raise ValueError(f"unknown stage {stage!r}")

    def setup(self, stage: str | None = None) -> None:
        self._start_report()
        for split in self._stages_for(stage):
            if split not in self.stages:  # e.g. no validation set configured
                continue
            items = self._valid_items(split)
            array = None
            if self.cache_dir:
                items, array = self._cached_items(split, items)
            if not items:
                raise DatasetFormatError(f"{self.name}: split {split!r} has no usable items under {self.root}")
            self.items[split] = items
            self.datasets[split] = self.make_dataset(split, items, array)

    def make_dataset(self, split: str, items: list[AudioItem], array) -> Dataset:
        return AudioFileDataset(
            items, self.sample_rate, self.num_samples, cache=array, split=split,
            on_bad_file=self.on_bad_file, report=self.report, batch_dtype=self.batch_dtype,
        )

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """float16 waveforms (``batch_dtype: float16``) become float32 on the device (Lightning calls this)."""
        return float32_waveform(batch)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.stages:
            raise RuntimeError(f"{self.name}: no {split!r} split is configured (splits: {list(self.stages)})")
        if split not in self.datasets:
            raise RuntimeError(f"{self.name}: call setup() before asking for the {split!r} loader")
        dataset = self.datasets[split]
        # order from (seed, epoch) only, resumable mid-epoch (datamodules.sampling / callbacks.resume); the
        # generator seeds the workers (random training chunks) the same way on every run
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochSampler(len(dataset), shuffle, self.seed),
            num_workers=self.num_workers,
            pin_memory=resolve_pin_memory(self.pin_memory, self.trainer),
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            collate_fn=collate_batch,
            generator=torch.Generator().manual_seed(self.seed),
            drop_last=False,
        )
