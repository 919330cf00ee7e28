"""Your own labelled clips: one folder per class, or a CSV / TSV listing path, label(s) and split.

Two layouts, both multiclass or multilabel through the same machinery as the official data sets (decode
cache, ``on_bad_file`` policy, skip report, batch contract of :mod:`datamodules.files`):

**Folder per class** (``csv: null``, multiclass)::

    <root>/dog/a.wav, <root>/dog/sub/b.flac, <root>/rain/c.wav ...

Class names are the folder names (sorted), or ``classes`` (then every folder must be one of them and every
class must have a folder). Audio files are those with an audio suffix (``extensions``), searched below each
class folder; other files are ignored; an audio file directly in ``<root>`` or a class folder without audio
is an error naming it. Splits: a seeded ``val_fraction`` / ``test_fraction`` per class.

**A table** (``csv: meta.csv`` relative to ``root``, or an absolute path; ``.tsv`` files are tab-separated
unless ``delimiter`` says otherwise)::

    path,label,split                   path,labels,fold
    clips/a.wav,dog,train              clips/a.wav,dog;rain,1
    clips/b.wav,rain,test              clips/b.wav,,2          (multilabel: no tag is allowed)

``path_column`` (relative to ``root`` or absolute), ``label_column`` (multilabel: several labels joined by
``label_separator``), and the split from, in order: a ``split_column`` (values ``train``, ``val`` /
``valid`` / ``validation`` / ``validate``, ``test``; a column named ``split`` is used when present), a
``fold_column`` with ``test_fold`` and ``val_fold`` (``val_fold: null``: a seeded ``val_fraction`` of the
training folds; works with ``l2i crossval``), or else a seeded ``val_fraction`` / ``test_fraction`` (per
class for multiclass). Classes: ``classes``, or the labels found (sorted).

Every problem in the table is one :class:`~datamodules.files.DatasetFormatError` naming the file, the row
(its line number, the header being row 1) and the column: an empty path, a path listed twice, an unknown
split value, a label not in ``classes``, several labels in a multiclass table, a missing column. A listed
file that does not exist is an error naming the row too (``on_bad_file: skip``: dropped and reported).

The config of every stage (a LightningCLI ``data`` group; the loader's keys in ``init_args.loader``):
experiments/custom/data.yaml.
"""

from __future__ import annotations

import csv
import logging
import math
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from datamodules.files import (
    AudioItem,
    DatasetFormatError,
    FileDataModule,
    LoaderConfig,
    check_duplicates,
    require_columns,
    require_file,
    require_root,
)

__all__ = ["AudioFolderDataModule", "AUDIO_EXTENSIONS", "SPLIT_VALUES"]

log = logging.getLogger(__name__)

#: suffixes taken for audio in the folder-per-class layout (anything libsndfile reads)
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".au", ".w64")
#: accepted values of a split column (case-insensitive) -> our stage
SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "validate": "val", "test": "test"}
STAGES = ("train", "val", "test")


@dataclass
class _Row:
    path: Path
    labels: list[str]
    split: str | None  # train / val / test from the table, else None (seeded split)
    fold: str | None
    where: str  # "file, row n" for messages
    id: str


class AudioFolderDataModule(FileDataModule):
    """Own labelled audio as a LightningDataModule (batch contract of :mod:`datamodules.files`).

    Batches: ``waveform`` float32 ``(B, round(duration_s * sample_rate))``, ``target`` int64 ``(B,)``
    (multiclass) or float32 multi-hot ``(B, num_classes)`` (multilabel, order ``class_names``),
    ``sample_rate`` int64 ``(B,)``, ``id`` = the file's path relative to ``root``.

    Args (besides those of :class:`~datamodules.files.FileDataModule`):
        csv: the metadata table (relative to ``root`` or absolute); None: one folder per class.
        task: ``multiclass`` or ``multilabel`` (the latter needs ``csv``).
        classes: the class list (its order is the target order); None: folder names / labels found, sorted.
        name: the data set's name (cache sub-folder, skip report, W&B), default ``custom``.
        path_column, label_column: columns of the table.
        label_separator: multilabel: what separates several labels in one cell (default ``;``).
        delimiter: the table's field separator (default: tab for ``.tsv`` / ``.tab``, else comma).
        split_column: column holding train / val / test (None: ``split`` if the table has one).
        fold_column, test_fold, val_fold: folds instead of a split column (values compared as text).
        val_fraction, test_fraction: seeded share per class (multilabel: of all clips) for validation and
            test when the table gives no split; ``val_fraction`` also applies to the training folds when
            ``val_fold`` is None. 0 leaves that split out.
        extensions: audio suffixes of the folder layout.
    """

    task: str = "multiclass"

    def __init__(
        self,
        root: str,
        sample_rate: int = 32000,
        duration_s: float = 5.0,
        loader: LoaderConfig | None = None,
        seed: int = 0,
        csv: str | None = None,
        task: Literal["multiclass", "multilabel"] = "multiclass",
        classes: list[str] | None = None,
        name: str = "custom",
        path_column: str = "path",
        label_column: str = "label",
        label_separator: str = ";",
        delimiter: str | None = None,
        split_column: str | None = None,
        fold_column: str | None = None,
        test_fold: int | str | None = None,
        val_fold: int | str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        extensions: Sequence[str] = AUDIO_EXTENSIONS,
    ):
        super().__init__(root, sample_rate, duration_s, loader=loader, seed=seed)
        if task not in ("multiclass", "multilabel"):
            raise ValueError(f"task must be 'multiclass' or 'multilabel', got {task!r}")
        if task == "multilabel" and csv is None:
            raise ValueError("task: multilabel needs csv (a table whose label column lists each clip's labels); "
                             "the folder-per-class layout is multiclass")
        for what, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= frac < 1.0:
                raise ValueError(f"{what} must be in [0, 1), got {frac}")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
        if fold_column is not None and test_fold is None:
            raise ValueError("fold_column needs test_fold (the fold held out for testing)")
        if fold_column is None and (test_fold is not None or val_fold is not None):
            raise ValueError("test_fold / val_fold need fold_column (the table's column holding the folds)")
        if fold_column is not None and split_column is not None:
            raise ValueError("give either split_column or fold_column, not both")
        if not label_separator:
            raise ValueError("label_separator must not be empty")
        if classes is not None:
            if not classes:
                raise ValueError("classes must list at least one class (or be null: the labels found)")
            check_duplicates(list(classes), "classes", "class")
        self.csv = csv
        self.task = task
        self.name = str(name)
        self.path_column, self.label_column = path_column, label_column
        self.label_separator = label_separator
        self.delimiter = delimiter
        self.split_column, self.fold_column = split_column, fold_column
        self.test_fold, self.val_fold = test_fold, val_fold  # as given; compared as text (_fold_text)
        if val_fold is not None and _fold_text(val_fold) == _fold_text(test_fold):
            raise ValueError(f"val_fold must differ from test_fold ({test_fold})")
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
        self._classes_given = list(classes) if classes is not None else None
        self._class_names: list[str] | None = None
        self._splits: dict[str, list[AudioItem]] | None = None

    # -- the label space (read from the data on first use) ----------------------------------------------
    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            self.read_items()
        return list(self._class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # -- reading ----------------------------------------------------------------------------------------
    def _root(self) -> Path:
        expected = "a folder per class with the audio files" if self.csv is None else f"the audio files listed in {self.csv}"
        return require_root(self.root, self.name, expected)

    def _folder_rows(self, root: Path) -> list[_Row]:
        stray = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in self.extensions)
        if stray:
            raise DatasetFormatError(
                f"{self.name}: {stray[0]} is not inside a class folder (folder-per-class layout: "
                f"<root>/<class>/<file>; or list the files in a csv)"
            )
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise DatasetFormatError(f"{self.name}: {root} has no class folders (expected <root>/<class>/<audio files>)")
        if self._classes_given is not None:
            unknown = [f.name for f in folders if f.name not in self._classes_given]
            if unknown:
                raise DatasetFormatError(f"{self.name}: folder {str(root / unknown[0])!r} is not in classes "
                                         f"{self._classes_given}")
            missing = [c for c in self._classes_given if not (root / c).is_dir()]
            if missing:
                raise DatasetFormatError(f"{self.name}: class {missing[0]!r} has no folder {str(root / missing[0])!r}")
        rows = []
        for folder in folders:
            files = sorted(p for p in folder.rglob("*")
                           if p.is_file() and p.suffix.lower() in self.extensions and not p.name.startswith("."))
            if not files:
                raise DatasetFormatError(
                    f"{self.name}: class folder {str(folder)!r} holds no audio files ({', '.join(self.extensions)})"
                )
            for p in files:
                rel = p.relative_to(root).as_posix()
                rows.append(_Row(p, [folder.name], None, None, str(p), rel))
        return rows

    def _table_path(self, root: Path) -> Path:
        path = Path(self.csv).expanduser()
        return require_file(path if path.is_absolute() else root / path, self.name, "metadata table")

    def _delimiter(self, path: Path) -> str:
        if self.delimiter is not None:
            return "\t" if self.delimiter in ("\\t", "tab") else self.delimiter
        return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","

    def _table_rows(self, root: Path) -> list[_Row]:
        path = self._table_path(root)
        split_col, raw = self._read_table(path)
        seen: dict[str, int] = {}
        rows = [self._table_row(root, f"{path}, row {lineno}", r, split_col, seen, lineno) for lineno, r in raw]
        if self.fold_column:
            folds = sorted({r.fold for r in rows})
            for what, value in (("test_fold", self.test_fold), ("val_fold", self.val_fold)):
                if value is not None and _fold_text(value) not in folds:
                    raise DatasetFormatError(f"{path}: {what} {value!r} does not occur in column {self.fold_column!r} "
                                             f"(folds present: {folds})")
        return rows

    def _read_table(self, path: Path) -> tuple[str | None, list[tuple[int, dict[str, str]]]]:
        """The split column (``split`` when the table has one and no fold column is set) and the non-empty rows as
        ``(line number, {column: text})``; a header in another delimiter, a missing column or a row of another
        length is refused naming the file and row."""
        delim = self._delimiter(path)
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, delimiter=delim)
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                raise DatasetFormatError(f"{path}: no header row") from None
            if len(header) == 1 and delim != "," and "," in header[0]:
                raise DatasetFormatError(f"{path}: expected {delim!r}-separated columns but the header looks "
                                         f"comma-separated (set delimiter: ',')")
            if len(header) == 1 and delim == "," and "\t" in header[0]:
                raise DatasetFormatError(f"{path}: the header looks tab-separated; set delimiter: tab")
            split_col = self.split_column
            if split_col is None and self.fold_column is None and "split" in header:
                split_col = "split"
            required = [self.path_column, self.label_column] + [c for c in (split_col, self.fold_column) if c]
            require_columns(header, required, path)
            raw = []
            for lineno, fields in enumerate(reader, start=2):
                if not fields or all(not f.strip() for f in fields):
                    continue
                if len(fields) != len(header):
                    raise DatasetFormatError(f"{path}, row {lineno}: {len(fields)} fields but the header has {len(header)}")
                raw.append((lineno, dict(zip(header, fields))))
        if not raw:
            raise DatasetFormatError(f"{path}: no rows below the header")
        return split_col, raw

    def _table_row(self, root: Path, where: str, r: dict[str, str], split_col: str | None, seen: dict[str, int],
                   lineno: int) -> _Row:
        """One table row as a :class:`_Row` (``seen``: the files listed so far, by resolved path -> row number)."""
        rel = r[self.path_column].strip()
        if not rel:
            raise DatasetFormatError(f"{where}, column {self.path_column!r}: empty path")
        file = Path(rel).expanduser()
        file = file if file.is_absolute() else root / file
        key = str(file.resolve())
        if key in seen:
            raise DatasetFormatError(f"{where}, column {self.path_column!r}: {rel!r} is already listed in row {seen[key]}")
        seen[key] = lineno
        if self.on_bad_file == "error" and not file.is_file():
            raise DatasetFormatError(f"{where}, column {self.path_column!r}: file {str(file)!r} does not exist "
                                     f"(set on_bad_file: skip to drop such rows)")
        labels = self._cell_labels(r[self.label_column].strip(), where)
        split = fold = None
        if split_col:
            value = r[split_col].strip()
            split = SPLIT_VALUES.get(value.lower())
            if split is None:
                raise DatasetFormatError(f"{where}, column {split_col!r}: unknown split {value!r} "
                                         f"(expected one of {sorted(SPLIT_VALUES)})")
        if self.fold_column:
            fold = _fold_text(r[self.fold_column])
            if not fold:
                raise DatasetFormatError(f"{where}, column {self.fold_column!r}: empty fold")
        try:
            ident = file.relative_to(root).as_posix()
        except ValueError:
            ident = str(file)
        return _Row(file, labels, split, fold, where, ident)

    def _cell_labels(self, cell: str, where: str) -> list[str]:
        """The labels of one label cell (several, split at ``label_separator``, for a multilabel task)."""
        if self.task == "multilabel":
            labels = [x.strip() for x in cell.split(self.label_separator) if x.strip()]
            dup = [x for i, x in enumerate(labels) if x in labels[:i]]
            if dup:
                raise DatasetFormatError(f"{where}, column {self.label_column!r}: label {dup[0]!r} given twice in {cell!r}")
            return labels
        if not cell:
            raise DatasetFormatError(f"{where}, column {self.label_column!r}: empty label")
        if self.label_separator in cell and (self._classes_given is None or cell not in self._classes_given):
            raise DatasetFormatError(
                f"{where}, column {self.label_column!r}: {cell!r} holds several labels but task is multiclass "
                f"(set task: multilabel, or label_separator to a character the labels do not use)"
            )
        return [cell]

    def _classes_of(self, rows: list[_Row]) -> list[str]:
        found = sorted({lab for r in rows for lab in r.labels})
        if self._classes_given is None:
            if not found:
                raise DatasetFormatError(f"{self.name}: no labels found under {self.root}")
            return found
        known = set(self._classes_given)
        for r in rows:
            for lab in r.labels:
                if lab not in known:
                    col = f", column {self.label_column!r}" if self.csv is not None else ""
                    raise DatasetFormatError(f"{r.where}{col}: label {lab!r} is not in classes {self._classes_given}")
        return list(self._classes_given)

    def _assign(self, rows: list[_Row], class_index: dict[str, int]) -> dict[str, list[_Row]]:
        """Rows per stage: from the split column, the folds, or the seeded fractions."""
        if self.fold_column:
            test_fold = _fold_text(self.test_fold)
            val_fold = None if self.val_fold is None else _fold_text(self.val_fold)
            out = {"test": [r for r in rows if r.fold == test_fold],
                   "val": [r for r in rows if val_fold is not None and r.fold == val_fold]}
            rest = [r for r in rows if r.fold != test_fold and (val_fold is None or r.fold != val_fold)]
            if val_fold is None:
                val = self._draw(rest, self.val_fraction, 0.0, class_index)
                out["val"], rest = val["val"], val["train"]
            out["train"] = rest
            return out
        if rows and rows[0].split is not None:
            return {s: [r for r in rows if r.split == s] for s in STAGES}
        return self._draw(rows, self.val_fraction, self.test_fraction, class_index)

    def _draw(self, rows: list[_Row], val: float, test: float, class_index: dict[str, int]) -> dict[str, list[_Row]]:
        """Seeded split: per class (multiclass) or over all rows (multilabel), ``ceil(fraction * n)`` clips
        each to test and validation, at least one clip per group left for training."""
        rng = random.Random(self.seed)
        groups: dict[str, list[_Row]] = defaultdict(list)
        for r in rows:
            groups[r.labels[0] if self.task == "multiclass" else ""].append(r)
        out: dict[str, list[_Row]] = {s: [] for s in STAGES}
        for key in sorted(groups):
            members = sorted(groups[key], key=lambda r: r.id)
            rng.shuffle(members)
            n = len(members)
            n_test = min(math.ceil(test * n), n - 1) if test > 0 else 0
            n_val = min(math.ceil(val * n), n - 1 - n_test) if val > 0 else 0
            out["test"] += members[:n_test]
            out["val"] += members[n_test:n_test + n_val]
            out["train"] += members[n_test + n_val:]
        return out

    def read_items(self) -> dict[str, list[AudioItem]]:
        """Validated items per stage (cached); sets ``class_names`` and ``stages`` (the non-empty splits)."""
        if self._splits is not None:
            return self._splits
        root = self._root()
        rows = self._folder_rows(root) if self.csv is None else self._table_rows(root)
        names = self._classes_of(rows)
        index = {c: i for i, c in enumerate(names)}
        splits = self._assign(rows, index)
        items: dict[str, list[AudioItem]] = {}
        for stage in STAGES:
            items[stage] = [AudioItem(str(r.path), self._target(r, index), r.id)
                            for r in sorted(splits[stage], key=lambda r: r.id)]
        if not items["train"]:
            raise DatasetFormatError(f"{self.name}: no training clips under {self.root} "
                                     f"(split sizes: {({s: len(v) for s, v in items.items()})})")
        for stage in ("val", "test"):
            if not items[stage]:
                log.warning("%s: no %s clips (set %s, or give the split in the table); that split is left out",
                            self.name, stage, f"{stage}_fraction")
        self._class_names = names
        self.stages = tuple(s for s in STAGES if items[s])
        self._splits = items
        return items

    def _target(self, row: _Row, index: dict[str, int]):
        if self.task == "multiclass":
            return index[row.labels[0]]
        target = np.zeros(len(index), dtype=np.float32)
        for lab in row.labels:
            target[index[lab]] = 1.0
        return target

    def prepare_data(self) -> None:
        self.read_items()
        super().prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self.read_items()  # decides which splits exist
        super().setup(stage)

    def build_items(self, stage: str) -> list[AudioItem]:
        return list(self.read_items()[stage])


def _fold_text(value) -> str:
    """A fold value as text, ``"1.0"`` and ``1`` read as ``"1"``."""
    text = str(value).strip()
    try:
        f = float(text)
    except ValueError:
        return text
    return str(int(f)) if f.is_integer() else text
