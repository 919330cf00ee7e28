"""SONYC-UST v2 (urban sound tagging, multilabel) from the official release.

Tree::

    <root>/annotations.csv            one row per annotation (several per clip), columns selected by name
    <root>/dcase-ust-taxonomy.yaml    coarse / fine tag names (optional: the v2 taxonomy is built in)
    <root>/audio/00_026884.wav ...    v2.2: flat audio/;  v2.3: unpacked from audio-0.tar.gz ... audio-18.tar.gz
    (v1: <root>/train/, <root>/validate/ - also accepted)

If ``audio/`` is absent but ``audio-*.tar.gz`` are present, setup stops and says how to unpack them, or,
with ``unpack_archives: true``, extracts them once into ``<cache_dir>/sonyc_ust/unpacked/``.

Labels follow the official baselines: **train** clips use the volunteer rows (``annotator_id > 0``), a tag
is positive if at least one volunteer marked it 1 (team rows, ``annotator_id < 0``, and -1 "not
annotated" values never make a positive); **validate / test** clips use only the ``annotator_id == 0``
(agreed ground truth) row. Clips without such rows are left out of that split (logged with the count).

Label sets (``level``): ``coarse`` - 8 tags ``1_engine`` ... ``8_dog``; ``fine`` - the 23 fine tags, plus
the 6 ``c-X`` "incomplete" tags as extra classes when ``fine_x_tags: true`` (29 classes, as the DCASE
baseline trains), or as a separate batch key ``target_x`` float32 ``(B, 6)`` when false (23 classes).
Evaluate with :class:`l2i.metrics.sonyc.SONYCUSTMetric` at the same level.

The config of every stage (a LightningCLI ``data`` group; the loader's keys in ``init_args.loader``):
experiments/sonyc_ust/data.yaml.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
from collections import defaultdict
from pathlib import Path
from typing import Literal

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
from l2i.metrics.sonyc import DEFAULT_TAXONOMY, SONYCTaxonomy

__all__ = ["SONYCUSTDataModule", "SPLIT_NAMES", "read_taxonomy"]

log = logging.getLogger(__name__)

#: our stage -> the value of the ``split`` column
SPLIT_NAMES = {"train": "train", "val": "validate", "test": "test"}
ID_COLUMNS = ("split", "sensor_id", "audio_filename", "annotator_id")


def read_taxonomy(path: str | os.PathLike) -> SONYCTaxonomy:
    """The taxonomy of a release's ``dcase-ust-taxonomy.yaml``: ``coarse: {id: name}``, ``fine: {coarse id:
    {fine id or X: name}}``. A file without both mappings, or whose fine groups are not the coarse ids, raises
    :class:`~datamodules.files.DatasetFormatError` naming it."""
    import yaml

    with open(path) as fh:
        d = yaml.safe_load(fh)
    if not isinstance(d, dict) or not isinstance(d.get("coarse"), dict) or not isinstance(d.get("fine"), dict):
        raise DatasetFormatError(f"{path}: taxonomy needs 'coarse' and 'fine' mappings")
    coarse = {int(k): str(v) for k, v in d["coarse"].items()}
    fine = {int(c): {(k if k == "X" else int(k)): str(v) for k, v in d["fine"][c].items()} for c in d["fine"]}
    if set(fine) != set(coarse):
        raise DatasetFormatError(f"{path}: fine groups {sorted(fine)} do not match coarse ids {sorted(coarse)}")
    return SONYCTaxonomy(coarse=coarse, fine=fine)


def _annotations_per_clip(rows: list[dict], csv_path: Path, label_cols: list[str]):
    """``(split_of, volunteer, truth)`` from the annotation rows: each clip's split, its volunteers' label vectors
    (annotator_id > 0) and its ground-truth vector (annotator_id == 0), each value 1, 0 or -1; a clip in two splits,
    an unknown split or another value is refused naming the file, the clip and the column."""
    split_of: dict[str, str] = {}
    volunteer: dict[str, list[np.ndarray]] = defaultdict(list)
    truth: dict[str, np.ndarray] = {}
    for r in rows:
        fname = r["audio_filename"].strip()
        split = r["split"].strip()
        if split not in SPLIT_NAMES.values():
            raise DatasetFormatError(f"{csv_path}: row of {fname!r} has unknown split {split!r}")
        if split_of.setdefault(fname, split) != split:
            raise DatasetFormatError(f"{csv_path}: clip {fname!r} is listed in splits {split_of[fname]!r} and {split!r}")
        annotator = parse_int(r["annotator_id"], csv_path, "annotator_id", fname)
        values = np.empty(len(label_cols), dtype=np.int8)
        for j, col in enumerate(label_cols):
            v = parse_int(r[col], csv_path, col, fname)
            if v not in (-1, 0, 1):
                raise DatasetFormatError(f"{csv_path}: column {col!r} of {fname!r} is {v}, expected 1, 0 or -1")
            values[j] = v
        if annotator > 0:
            volunteer[fname].append(values)
        elif annotator == 0:
            truth[fname] = values
    return split_of, volunteer, truth


class SONYCUSTDataModule(FileDataModule):
    """SONYC-UST v2 as a LightningDataModule (batch contract of :mod:`datamodules.files`).

    Batches: ``waveform`` float32 ``(B, round(duration_s * sample_rate))``, ``target`` float32 multi-hot
    ``(B, num_classes)`` (order: ``class_names``), ``sample_rate`` int64 ``(B,)``, ``id`` = audio file
    names; with ``level="fine", fine_x_tags=False`` also ``target_x`` float32 ``(B, 6)``.

    Args (besides those of :class:`~datamodules.files.FileDataModule`):
        level: ``coarse`` (8 classes) or ``fine`` (23 or 29 classes, see ``fine_x_tags``).
        fine_x_tags: fine level: include the 6 ``c-X`` tags as classes (True) or as ``target_x`` (False).
        unpack_archives: extract ``audio-*.tar.gz`` into ``cache_dir`` when ``audio/`` is missing.
    """

    name = "sonyc_ust"
    task = "multilabel"

    def __init__(
        self,
        root: str,
        sample_rate: int = 22050,
        duration_s: float = 10.0,
        loader: LoaderConfig | None = None,
        seed: int = 0,
        level: Literal["coarse", "fine"] = "coarse",
        fine_x_tags: bool = True,
        unpack_archives: bool = False,
    ):
        super().__init__(root, sample_rate, duration_s, loader=loader, seed=seed)
        if level not in ("coarse", "fine"):
            raise ValueError(f"level must be 'coarse' or 'fine', got {level!r}")
        self.level = level
        self.fine_x_tags = bool(fine_x_tags)
        self.unpack_archives = bool(unpack_archives)
        self.taxonomy: SONYCTaxonomy = DEFAULT_TAXONOMY
        self._set_classes()
        self._clips: dict[str, list[AudioItem]] | None = None

    def _set_classes(self) -> None:
        tx = self.taxonomy
        if self.level == "coarse":
            self.class_names = tx.coarse_tags()
        else:
            self.class_names = tx.fine_tags(with_x=self.fine_x_tags)
        self.num_classes = len(self.class_names)

    # -- audio location ---------------------------------------------------------------------------------
    def _audio_dirs(self, root: Path) -> list[Path]:
        """Folders searched for a clip, in order: audio/, the unpacked-archive folder, v1 split folders."""
        archives = sorted(root.glob("audio-*.tar.gz"))
        dirs = [d for d in (root / "audio",) if d.is_dir()]
        if archives:
            unpacked = self._unpacked_dir()
            if unpacked is not None and (unpacked / "audio").is_dir():
                dirs.append(unpacked / "audio")
            elif not dirs:
                if self.unpack_archives:
                    dirs.append(self._unpack(archives))
                else:
                    names = ", ".join(a.name for a in archives[:3]) + (" ..." if len(archives) > 3 else "")
                    raise FileNotFoundError(
                        f"SONYC-UST: {root} holds {len(archives)} audio archive(s) ({names}) but no audio/ folder. "
                        f"Unpack them first: cd {root} && for f in audio-*.tar.gz; do tar -xzf \"$f\"; done "
                        f"(they all unpack into audio/), or set unpack_archives: true with a cache_dir to extract "
                        f"them into the cache."
                    )
        dirs += [root / v1 for v1 in ("train", "validate") if (root / v1).is_dir()]
        if not dirs:
            raise FileNotFoundError(f"SONYC-UST: no audio/ folder (nor audio-*.tar.gz archives) under {root}")
        return dirs

    def _unpacked_dir(self) -> Path | None:
        return Path(self.cache_dir) / self.name / "unpacked" if self.cache_dir else None

    def _unpack(self, archives: list[Path]) -> Path:
        dest = self._unpacked_dir()
        if dest is None:
            raise ValueError("SONYC-UST: unpack_archives: true needs a cache_dir to extract into")
        dest.mkdir(parents=True, exist_ok=True)
        marker = dest / "unpacked.json"
        wanted = {a.name: a.stat().st_size for a in archives}
        if marker.exists() and json.loads(marker.read_text()) == wanted:
            return dest / "audio"
        for a in archives:
            log.warning("SONYC-UST: extracting %s into %s", a, dest)
            with tarfile.open(a, "r:gz") as tf:
                tf.extractall(dest, filter="data")
        marker.write_text(json.dumps(wanted))
        if not (dest / "audio").is_dir():
            raise DatasetFormatError(f"SONYC-UST: the archives in {archives[0].parent} did not unpack into audio/")
        return dest / "audio"

    # -- annotations -------------------------------------------------------------------------------------
    def read_annotations(self) -> dict[str, list[AudioItem]]:
        """Items per stage (``train``/``val``/``test``) after the official label rules (cached)."""
        if self._clips is not None:
            return self._clips
        root = require_root(self.root, "SONYC-UST", "the SONYC-UST tree with annotations.csv and audio/")
        csv_path = require_file(root / "annotations.csv", "SONYC-UST", "annotations csv")
        label_cols, rows = self._annotation_rows(root, csv_path)
        audio_dirs = self._audio_dirs(root)
        split_of, volunteer, truth = _annotations_per_clip(rows, csv_path, label_cols)
        clips, dropped = self._items_per_stage(split_of, volunteer, truth, audio_dirs)
        for stage, n in dropped.items():
            if n:
                rule = "volunteer (annotator_id > 0)" if stage == "train" else "ground-truth (annotator_id == 0)"
                log.warning("SONYC-UST: %d %s clip(s) have no %s annotation and are left out", n, SPLIT_NAMES[stage], rule)
        self.dropped_unlabelled = dropped
        self.stages = tuple(s for s in SPLIT_NAMES if clips[s])
        self._clips = clips
        return clips

    def _annotation_rows(self, root: Path, csv_path: Path) -> tuple[list[str], list[dict]]:
        """The label columns of :attr:`level` and the csv's rows, the taxonomy read from the tree when it has one;
        a tag column outside the taxonomy or a duplicated annotation is refused naming the file."""
        yaml_path = root / "dcase-ust-taxonomy.yaml"
        if yaml_path.is_file():
            self.taxonomy = read_taxonomy(yaml_path)
            self._set_classes()
        tx = self.taxonomy
        coarse_cols = [f"{t}_presence" for t in tx.coarse_tags()]
        fine_cols = [f"{t}_presence" for t in tx.fine_tags(with_x=True)]
        label_cols = coarse_cols if self.level == "coarse" else fine_cols
        header, rows = read_table(csv_path, required=(*ID_COLUMNS, *label_cols))
        unknown = [c for c in header if c.endswith("_presence") and c not in coarse_cols and c not in fine_cols]
        if unknown:
            raise DatasetFormatError(
                f"{csv_path}: unknown tag column(s) {unknown} - not in the taxonomy "
                f"({'dcase-ust-taxonomy.yaml' if yaml_path.is_file() else 'built-in v2 taxonomy'})"
            )
        # a volunteer annotates a clip once and there is one ground-truth row per clip; team members
        # (annotator_id < 0) may hold several rows per clip (one coarse group at a time), so for them
        # only byte-identical rows count as duplicates
        check_duplicates([(r["audio_filename"].strip(), r["annotator_id"].strip()) for r in rows
                          if not r["annotator_id"].strip().startswith("-")], csv_path, "(audio_filename, annotator_id)")
        check_duplicates([tuple(r.values()) for r in rows if r["annotator_id"].strip().startswith("-")], csv_path,
                         "identical team-member row")
        return label_cols, rows

    def _items_per_stage(self, split_of: dict[str, str], volunteer: dict[str, list[np.ndarray]],
                         truth: dict[str, np.ndarray], audio_dirs: list[Path]):
        """``({stage: [AudioItem]}, {stage: clips left out})``: train clips labelled by any volunteer's 1, val / test
        clips by the ground truth; a clip without such an annotation is left out (counted)."""
        tx = self.taxonomy
        x_idx = [x for _, x in tx.fine_groups() if x is not None]
        complete_idx = [i for c, _ in tx.fine_groups() for i in c]
        clips: dict[str, list[AudioItem]] = {s: [] for s in SPLIT_NAMES}
        dropped: dict[str, int] = {s: 0 for s in SPLIT_NAMES}
        for stage, split in SPLIT_NAMES.items():
            for fname in sorted(f for f, s in split_of.items() if s == split):
                if stage == "train":
                    if not volunteer.get(fname):
                        dropped[stage] += 1
                        continue
                    target = (np.stack(volunteer[fname]) == 1).any(axis=0)
                else:
                    if fname not in truth:
                        dropped[stage] += 1
                        continue
                    target = truth[fname] == 1
                target = target.astype(np.float32)
                extra = None
                if self.level == "fine" and not self.fine_x_tags:
                    extra = {"target_x": target[x_idx]}
                    target = target[complete_idx]
                path = next((d / fname for d in audio_dirs if (d / fname).is_file()), audio_dirs[0] / fname)
                clips[stage].append(AudioItem(str(path), target, fname, extra))
        return clips, dropped

    def prepare_data(self) -> None:
        self.read_annotations()
        super().prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self.read_annotations()  # decides which splits exist (v2.2 has no test split)
        super().setup(stage)

    def build_items(self, stage: str) -> list[AudioItem]:
        clips = self.read_annotations()
        if not clips[stage]:
            raise DatasetFormatError(
                f"SONYC-UST: no labelled clips with split == {SPLIT_NAMES[stage]!r} in {Path(self.root) / 'annotations.csv'}"
            )
        return clips[stage]
