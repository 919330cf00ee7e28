"""ESC-50 (environmental sounds, 50 classes, multiclass) from the official release.

Tree (the root may be renamed)::

    ESC-50-master/
      audio/1-100032-A-0.wav ...        5 s, 44.1 kHz mono, 2,000 clips
      meta/esc50.csv                    filename,fold,target,category,esc10,src_file,take

Splits: ``test_fold`` (default 1, as in the L2I paper) is the test set; validation is either ``val_fold``
or, when ``val_fold`` is None, a ``val_fraction`` of the training folds drawn per class and grouped by
``src_file`` (fragments of one source clip never straddle train and val). ``esc10_only`` keeps the ESC-10
subset (10 classes, re-indexed 0-9 in the order of their ESC-50 targets). Class names come from the csv,
ordered by target.

Five-fold cross-validation: :meth:`ESC50DataModule.cross_validation_folds` gives the per-fold overrides;
:func:`summarize_folds` turns the per-fold metric dicts into mean +- std.

The config of every stage (a LightningCLI ``data`` group; the loader's keys in ``init_args.loader``):
experiments/esc50/data.yaml.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Literal, Sequence

import numpy as np

from datamodules.files import (
    AudioItem,
    DatasetFormatError,
    FileDataModule,
    LoaderConfig,
    check_duplicates,
    parse_int,
    read_table,
    require_file,
    require_root,
)

__all__ = ["ESC50_CLASSES", "ESC10_CLASSES", "ESC50DataModule", "summarize_folds"]

#: target 0-49, in order (the official ``target`` column)
ESC50_CLASSES = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind", "pouring_water", "toilet_flush", "thunderstorm",
    "crying_baby", "sneezing", "clapping", "breathing", "coughing", "footsteps", "laughing", "brushing_teeth", "snoring", "drinking_sipping",
    "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks", "can_opening", "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick", "glass_breaking",
    "helicopter", "chainsaw", "siren", "car_horn", "engine", "train", "church_bells", "airplane", "fireworks", "hand_saw",
)  # fmt: skip
ESC10_CLASSES = ("dog", "rooster", "rain", "sea_waves", "crackling_fire", "crying_baby", "sneezing", "clock_tick", "helicopter", "chainsaw")
COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
FOLDS = (1, 2, 3, 4, 5)


class ESC50DataModule(FileDataModule):
    """ESC-50 as a LightningDataModule (batch contract of :mod:`datamodules.files`).

    Batches: ``waveform`` float32 ``(B, round(duration_s * sample_rate))``, ``target`` int64 ``(B,)`` in
    ``[0, num_classes)``, ``sample_rate`` int64 ``(B,)``, ``id`` = file names.

    Args (besides those of :class:`~datamodules.files.FileDataModule`):
        test_fold: fold 1-5 held out for testing.
        val_fold: fold 1-5 (not ``test_fold``) for validation; None = ``val_fraction`` of the train folds.
        val_fraction: share of each class's training clips (grouped by ``src_file``) used for validation
            when ``val_fold`` is None; 0 leaves no validation set (``val_dataloader`` then raises).
        esc10_only: keep the ESC-10 subset (10 classes).
    """

    name = "esc50"
    task = "multiclass"

    def __init__(
        self,
        root: str,
        sample_rate: int = 22050,
        duration_s: float = 5.0,
        loader: LoaderConfig | None = None,
        seed: int = 0,
        test_fold: int = 1,
        val_fold: int | None = None,
        val_fraction: float = 0.1,
        esc10_only: bool = False,
    ):
        super().__init__(root, sample_rate, duration_s, loader=loader, seed=seed)
        if test_fold not in FOLDS:
            raise ValueError(f"test_fold must be one of {FOLDS}, got {test_fold}")
        if val_fold is not None and (val_fold not in FOLDS or val_fold == test_fold):
            raise ValueError(f"val_fold must be one of {FOLDS} other than test_fold={test_fold}, got {val_fold}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.test_fold = int(test_fold)
        self.val_fold = val_fold
        self.val_fraction = float(val_fraction)
        self.esc10_only = bool(esc10_only)
        self.stages = ("train", "val", "test") if (val_fold is not None or val_fraction > 0) else ("train", "test")
        self._meta: list[dict] | None = None
        self.class_names = list(ESC10_CLASSES if esc10_only else ESC50_CLASSES)
        self.num_classes = len(self.class_names)

    # -- metadata -------------------------------------------------------------------------------------
    def read_metadata(self) -> list[dict]:
        """Validated rows of ``meta/esc50.csv``: dicts with ``path, filename, fold, target (ESC-50 index),
        category, esc10 (bool), src_file``. Sets ``class_names`` from the csv (ordered by target)."""
        if self._meta is not None:
            return self._meta
        root = require_root(self.root, "ESC-50", "the ESC-50 tree with audio/ and meta/esc50.csv")
        csv_path = require_file(root / "meta" / "esc50.csv", "ESC-50", "metadata csv")
        audio_dir = root / "audio"
        if not audio_dir.is_dir():
            raise FileNotFoundError(f"ESC-50: audio folder {str(audio_dir)!r} not found")
        _, rows = read_table(csv_path, required=COLUMNS)
        check_duplicates([r["filename"] for r in rows], csv_path, "filename")
        names: dict[int, str] = {}
        meta = []
        for r in rows:
            fname = r["filename"]
            fold = parse_int(r["fold"], csv_path, "fold", fname)
            target = parse_int(r["target"], csv_path, "target", fname)
            category = r["category"].strip()
            if fold not in FOLDS:
                raise DatasetFormatError(f"{csv_path}: row {fname!r} has fold {fold}, expected 1-5")
            if not 0 <= target < len(ESC50_CLASSES):
                raise DatasetFormatError(f"{csv_path}: row {fname!r}: unknown class target {target} (expected 0-49)")
            if category != ESC50_CLASSES[target]:
                raise DatasetFormatError(
                    f"{csv_path}: row {fname!r}: unknown class {category!r} for target {target} "
                    f"(ESC-50 target {target} is {ESC50_CLASSES[target]!r})"
                )
            esc10 = r["esc10"].strip()
            if esc10 not in ("True", "False"):
                raise DatasetFormatError(f"{csv_path}: row {fname!r}: esc10 is {esc10!r}, expected True or False")
            names[target] = category
            meta.append({"path": str(audio_dir / fname), "filename": fname, "fold": fold, "target": target,
                         "category": category, "esc10": esc10 == "True", "src_file": r["src_file"]})
        if not self.esc10_only:
            self.class_names = [names.get(t, ESC50_CLASSES[t]) for t in range(len(ESC50_CLASSES))]
        self._meta = meta
        return meta

    def _split_rows(self) -> dict[str, list[dict]]:
        meta = self.read_metadata()
        if self.esc10_only:
            meta = [m for m in meta if m["esc10"]]
            bad = sorted({m["category"] for m in meta} - set(ESC10_CLASSES))
            if bad:
                raise DatasetFormatError(f"ESC-50: rows marked esc10=True with non-ESC-10 class(es) {bad}")
        test = [m for m in meta if m["fold"] == self.test_fold]
        rest = [m for m in meta if m["fold"] != self.test_fold]
        if self.val_fold is not None:
            val = [m for m in rest if m["fold"] == self.val_fold]
            train = [m for m in rest if m["fold"] != self.val_fold]
        else:
            val_src = self._val_groups(rest)
            val = [m for m in rest if (m["target"], m["src_file"]) in val_src]
            train = [m for m in rest if (m["target"], m["src_file"]) not in val_src]
        return {"train": train, "val": val, "test": test}

    def _val_groups(self, rows: list[dict]) -> set[tuple[int, str]]:
        """Per class, whole ``src_file`` groups (seeded shuffle) until >= ``val_fraction`` of the class."""
        if self.val_fraction <= 0:
            return set()
        rng = random.Random(self.seed)
        by_class: dict[int, dict[str, int]] = defaultdict(dict)
        for m in rows:
            groups = by_class[m["target"]]
            groups[m["src_file"]] = groups.get(m["src_file"], 0) + 1
        chosen = set()
        for target in sorted(by_class):
            groups = by_class[target]
            total = sum(groups.values())
            order = sorted(groups)
            rng.shuffle(order)
            want, got = math.ceil(self.val_fraction * total), 0
            for src in order:
                if got >= want:
                    break
                if got + groups[src] >= total:  # never move a whole class out of training
                    continue
                chosen.add((target, src))
                got += groups[src]
        return chosen

    def build_items(self, stage: str) -> list[AudioItem]:
        rows = self._split_rows()[stage]
        remap = {ESC50_CLASSES.index(c): i for i, c in enumerate(ESC10_CLASSES)} if self.esc10_only else None
        return [AudioItem(m["path"], remap[m["target"]] if remap else m["target"], m["filename"]) for m in rows]

    # -- cross-validation -----------------------------------------------------------------------------
    @staticmethod
    def cross_validation_folds(val: Literal["next_fold", "fraction"] = "next_fold") -> list[dict]:
        """Constructor overrides for the official 5-fold cross-validation, one dict per run.

        ``val="next_fold"``: test fold k, validation fold k+1 (5 -> 1), training on the other three;
        ``"fraction"``: test fold k, validation = ``val_fraction`` of the four others.
        E.g. ``[ESC50DataModule(root, **cfg) for cfg in ESC50DataModule.cross_validation_folds()]``.
        """
        if val not in ("next_fold", "fraction"):
            raise ValueError(f"val must be 'next_fold' or 'fraction', got {val!r}")
        return [{"test_fold": k, "val_fold": (k % 5) + 1 if val == "next_fold" else None} for k in FOLDS]


def summarize_folds(metrics: Sequence[dict[str, float]], ddof: int = 0) -> dict[str, dict[str, float | str]]:
    """Mean +- std over folds for every metric name present in all fold dicts.

    ``metrics``: one ``{name: value}`` per fold (values: float or 0-d tensor). Returns ``{name: {"mean",
    "std", "n", "text"}}`` with ``text`` like ``"0.8125 ± 0.0210"``; ``std`` uses ``ddof`` (0 = population
    std, numpy's default). Names missing from some fold raise ``KeyError`` naming them.
    """
    if not metrics:
        raise ValueError("summarize_folds needs at least one fold's metrics")
    names = list(metrics[0])
    for i, m in enumerate(metrics):
        missing = [n for n in names if n not in m]
        if missing:
            raise KeyError(f"fold {i} lacks metric(s) {missing}")
    out = {}
    for n in names:
        values = np.array([float(m[n]) for m in metrics], dtype=np.float64)
        std = float(values.std(ddof=ddof)) if len(values) > ddof else float("nan")
        mean = float(values.mean())
        out[n] = {"mean": mean, "std": std, "n": len(values), "text": f"{mean:.4f} ± {std:.4f}"}
    return out
