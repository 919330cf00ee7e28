"""AudioFolderDataModule on generated trees: folder per class, CSV / TSV with split, folds or seeded
fractions, multiclass and multilabel; the batch contract; one-line errors naming file, row and column."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import AudioFolderDataModule
from datamodules.files import DatasetFormatError, LoaderConfig
from datamodules.sampling import resolve_pin_memory
from fixtures_datasets import write_wav
from l2i.audio import AudioFileError

RATE = 8000
FREQ = {"dog": 300.0, "rain": 700.0, "siren": 1500.0}


def module(root, **kw):
    kw.setdefault("sample_rate", RATE)
    kw.setdefault("duration_s", 0.25)
    kw.setdefault("batch_size", 4)
    return AudioFolderDataModule(str(root), **LoaderConfig.group(kw))


def make_folder_tree(tmp: Path, per_class: int = 5, classes=("dog", "rain", "siren")) -> Path:
    """``tmp/sounds/<class>/<class><i>.wav`` (16 kHz, 0.3 s; rain's files one folder deeper)."""
    root = tmp / "sounds"
    for c in classes:
        for i in range(per_class):
            sub = Path(c) / ("night" if c == "rain" and i % 2 else "") / f"{c}{i}.wav"
            write_wav(root / sub, 0.3, 16000, FREQ[c] + 10 * i, seed=i)
    (root / "README.txt").write_text("not audio: ignored")
    return root


def write_table(path: Path, header: list[str], rows: list[list[str]], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


#: (labels, split) per clip of the multilabel table
ML_ROWS = [("dog;rain", "train"), ("rain", "train"), ("", "train"), ("siren", "train"), ("dog", "train"),
           ("dog;siren", "validation"), ("rain", "val"), ("siren;dog", "test"), ("rain;siren", "test")]


def make_multilabel_tree(tmp: Path, delimiter: str = ",", name: str = "meta.csv") -> Path:
    root = tmp / "tags"
    rows = []
    for i, (labels, split) in enumerate(ML_ROWS):
        write_wav(root / "clips" / f"c{i}.wav", 0.3, 16000, 250.0 + 120 * i, seed=i)
        rows.append([f"clips/c{i}.wav", labels, split])
    write_table(root / name, ["path", "labels", "split"], rows, delimiter)
    return root


def batches(loader):
    out = {"waveform": [], "target": [], "id": []}
    for b in loader:
        assert set(b) == {"waveform", "target", "sample_rate", "id"}
        assert b["sample_rate"].tolist() == [RATE] * len(b["id"])
        out["waveform"].append(b["waveform"])
        out["target"].append(b["target"])
        out["id"] += b["id"]
    return torch.cat(out["waveform"]), torch.cat(out["target"]), out["id"]


def test_folder_per_class_splits_labels_and_batches(tmp_path):
    root = make_folder_tree(tmp_path)
    dm = module(root, val_fraction=0.2, test_fraction=0.2, report_dir=str(tmp_path / "rep"))
    assert dm.class_names == ["dog", "rain", "siren"] and dm.num_classes == 3 and dm.task == "multiclass"
    dm.setup("fit")
    dm.setup("test")
    sizes = {s: len(dm.items[s]) for s in ("train", "val", "test")}
    assert sizes == {"train": 9, "val": 3, "test": 3}  # ceil(0.2 * 5) = 1 per class each
    ids = {s: {it.id for it in dm.items[s]} for s in sizes}
    assert set.union(*ids.values()) == {p.relative_to(root).as_posix() for p in root.rglob("*.wav")}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    assert "rain/night/rain1.wav" in set.union(*ids.values())  # files below sub-folders of a class count
    wav, tgt, names = batches(dm.test_dataloader())
    assert wav.shape == (3, 2000) and wav.dtype == torch.float32 and tgt.dtype == torch.int64
    assert [dm.class_names[t] for t in tgt.tolist()] == [n.split("/")[0] for n in names]
    # the clip is the file: a 16 kHz sine resampled to 8 kHz keeps its frequency
    for w, n in zip(wav, names):
        spec = torch.fft.rfft(w).abs()
        peak_hz = float(spec.argmax()) * RATE / w.shape[0]
        expected = FREQ[n.split("/")[0]] + 10 * int(re.search(r"(\d+)\.wav", n).group(1))
        assert abs(peak_hz - expected) <= 4.0
    # the seeded split is a function of the seed only
    again = module(root, val_fraction=0.2, test_fraction=0.2, report_dir=str(tmp_path / "rep"))
    again.setup("fit")
    assert [it.id for it in again.items["val"]] == [it.id for it in dm.items["val"]]
    other = module(root, val_fraction=0.2, test_fraction=0.2, seed=3, report_dir=str(tmp_path / "rep"))
    other.setup("fit")
    assert {it.id for it in other.items["train"]} != ids["train"]


def test_multilabel_csv_with_split_column_and_cache(tmp_path):
    root = make_multilabel_tree(tmp_path)
    dm = module(root, csv="meta.csv", task="multilabel", label_column="labels", cache_dir=str(tmp_path / "cache"))
    assert dm.class_names == ["dog", "rain", "siren"] and dm.task == "multilabel"
    dm.setup("fit")
    dm.setup("test")
    assert {s: len(dm.items[s]) for s in ("train", "val", "test")} == {"train": 5, "val": 2, "test": 2}
    wav, tgt, names = batches(dm.train_dataloader())
    assert tgt.dtype == torch.float32 and tgt.shape == (5, 3) and wav.shape == (5, 2000)
    expected = {f"clips/c{i}.wav": labels for i, (labels, _) in enumerate(ML_ROWS)}
    for row, name in zip(tgt, names):
        want = {x for x in expected[name].split(";") if x}
        assert {dm.class_names[j] for j in torch.nonzero(row).flatten().tolist()} == want
    assert (tmp_path / "cache" / "custom").is_dir()  # decoded once into the shared cache
    # a TSV is read with tabs; classes given fix the order
    tsv_root = make_multilabel_tree(tmp_path / "t", delimiter="\t", name="meta.tsv")
    dm2 = module(tsv_root, csv="meta.tsv", task="multilabel", label_column="labels", classes=["siren", "rain", "dog"])
    dm2.setup("test")
    _, tgt2, names2 = batches(dm2.test_dataloader())
    assert names2 == ["clips/c7.wav", "clips/c8.wav"]
    assert tgt2.tolist() == [[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]


def test_fold_column_and_seeded_fraction_for_a_table_without_split(tmp_path):
    root = tmp_path / "folds"
    rows = []
    for i in range(12):
        label = ("dog", "rain")[i % 2]
        write_wav(root / f"{i}.wav", 0.3, 16000, FREQ[label], seed=i)
        rows.append([f"{i}.wav", label, str(1 + i % 3) + ".0" * (i == 0)])  # "1.0" reads as fold 1
    write_table(root / "meta.csv", ["file", "class", "fold"], rows)
    dm = module(root, csv="meta.csv", path_column="file", label_column="class", fold_column="fold",
                test_fold=1, val_fold=2)
    dm.setup("fit")
    dm.setup("test")
    assert sorted(int(it.id[:-4]) for it in dm.items["test"]) == [0, 3, 6, 9]
    assert sorted(int(it.id[:-4]) for it in dm.items["val"]) == [1, 4, 7, 10]
    assert sorted(int(it.id[:-4]) for it in dm.items["train"]) == [2, 5, 8, 11]
    # no split column: seeded fractions per class
    write_table(root / "nosplit.csv", ["path", "label"], [r[:2] for r in rows])
    dm = module(root, csv="nosplit.csv", val_fraction=0.15, test_fraction=0.15)  # ceil(0.15 * 6) = 1
    dm.setup("fit")
    dm.setup("test")
    assert {s: len(dm.items[s]) for s in ("train", "val", "test")} == {"train": 8, "val": 2, "test": 2}
    for s in ("val", "test"):
        assert sorted(it.target for it in dm.items[s]) == [0, 1]  # one per class
    # val_fraction 0 and test_fraction 0: only a training split, and its loaders say so
    dm = module(root, csv="nosplit.csv", val_fraction=0.0, test_fraction=0.0)
    dm.setup("fit")
    assert dm.stages == ("train",) and len(dm.items["train"]) == 12
    with pytest.raises(RuntimeError, match="no 'val' split"):
        dm.val_dataloader()


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("case", ["unknown_split", "label_not_in_classes", "missing_path", "empty_path",
                                  "duplicate", "several_labels_multiclass", "missing_column", "empty_label"])
def test_table_errors_name_file_row_and_column(tmp_path, case):
    root = tmp_path / "d"
    for i in range(3):
        write_wav(root / f"{i}.wav", 0.3, 16000, 400.0)
    rows = [["0.wav", "dog", "train"], ["1.wav", "rain", "train"], ["2.wav", "dog", "test"]]
    header = ["path", "label", "split"]
    kw = {}
    expect = None
    if case == "unknown_split":
        rows[1][2] = "holdout"
        expect = r"meta\.csv, row 3, column 'split': unknown split 'holdout'"
    elif case == "label_not_in_classes":
        kw["classes"] = ["dog", "cat"]
        expect = r"meta\.csv, row 3, column 'label': label 'rain' is not in classes \['dog', 'cat'\]"
    elif case == "missing_path":
        rows[2][0] = "gone.wav"
        expect = r"meta\.csv, row 4, column 'path': file '.*gone\.wav' does not exist"
    elif case == "empty_path":
        rows[0][0] = " "
        expect = r"meta\.csv, row 2, column 'path': empty path"
    elif case == "duplicate":
        rows[2][0] = "./0.wav"
        expect = r"meta\.csv, row 4, column 'path': '\./0\.wav' is already listed in row 2"
    elif case == "several_labels_multiclass":
        rows[1][1] = "rain;dog"
        expect = r"meta\.csv, row 3, column 'label': 'rain;dog' holds several labels but task is multiclass"
    elif case == "missing_column":
        kw["label_column"] = "category"
        expect = r"meta\.csv: missing column\(s\) 'category'; columns present: \['path', 'label', 'split'\]"
    elif case == "empty_label":
        rows[0][1] = ""
        expect = r"meta\.csv, row 2, column 'label': empty label"
    write_table(root / "meta.csv", header, rows)
    with pytest.raises(DatasetFormatError) as exc:
        module(root, csv="meta.csv", **kw).setup("fit")
    assert re.search(expect, _one_line(exc)), str(exc.value)


def test_folder_errors_and_bad_files(tmp_path):
    root = make_folder_tree(tmp_path, per_class=3)
    (root / "cat").mkdir()
    (root / "cat" / "notes.txt").write_text("x")
    with pytest.raises(DatasetFormatError) as exc:
        module(root).setup("fit")
    assert re.search(r"class folder '.*sounds/cat' holds no audio files", _one_line(exc))
    (root / "cat" / "notes.txt").unlink()
    (root / "cat").rmdir()
    with pytest.raises(DatasetFormatError) as exc:
        module(root, classes=["dog", "rain"]).class_names
    assert re.search(r"folder '.*sounds/siren' is not in classes \['dog', 'rain'\]", _one_line(exc))
    write_wav(root / "loose.wav", 0.3, 16000, 400.0)
    with pytest.raises(DatasetFormatError) as exc:
        module(root).setup("fit")
    assert re.search(r"loose\.wav is not inside a class folder", _one_line(exc))
    (root / "loose.wav").unlink()
    with pytest.raises(FileNotFoundError, match="root '.*nowhere' does not exist"):
        module(tmp_path / "nowhere").setup("fit")
    with pytest.raises(ValueError, match="multilabel needs csv"):
        module(root, task="multilabel")
    with pytest.raises(ValueError, match="test_fold / val_fold need fold_column"):
        module(root, test_fold=1)  # e.g. l2i crossval on a table without a fold column
    # an unreadable file: error by default (naming it), listed in the skip report with on_bad_file: skip
    (root / "dog" / "dog1.wav").write_bytes(b"RIFF junk that is no wave file")
    with pytest.raises(AudioFileError, match="dog1.wav"):
        module(root, val_fraction=0.0, test_fraction=0.0).setup("fit")
    dm = module(root, val_fraction=0.0, test_fraction=0.0, on_bad_file="skip", report_dir=str(tmp_path / "rep"))
    dm.setup("fit")
    assert len(dm.items["train"]) == 8
    rows = dm.report.rows()
    assert [Path(r["path"]).name for r in rows] == ["dog1.wav"] and rows[0]["dataset"] == "custom"


def test_missing_file_is_skipped_and_reported_with_skip_policy(tmp_path):
    root = make_multilabel_tree(tmp_path)
    with open(root / "meta.csv", "a", newline="") as fh:
        csv.writer(fh).writerow(["clips/absent.wav", "dog", "train"])
    dm = module(root, csv="meta.csv", task="multilabel", label_column="labels", on_bad_file="skip",
                report_dir=str(tmp_path / "rep"))
    dm.setup("fit")
    assert len(dm.items["train"]) == 5
    assert [(Path(r["path"]).name, r["reason"]) for r in dm.report.rows()] == [
        ("absent.wav", "file listed in the metadata does not exist")]


def test_pin_memory_follows_the_accelerator():
    class _Strategy:
        def __init__(self, kind):
            self.root_device = torch.device(kind)

    class _Trainer:
        def __init__(self, kind):
            self.strategy = _Strategy(kind)

    assert resolve_pin_memory("auto", _Trainer("cpu")) is False
    assert resolve_pin_memory("auto", _Trainer("cuda")) is True
    assert resolve_pin_memory("auto") is torch.cuda.is_available()
    assert resolve_pin_memory(False, _Trainer("cuda")) is False
    assert resolve_pin_memory(True) is torch.cuda.is_available() or torch.accelerator.is_available()
    with pytest.raises(ValueError, match="pin_memory must be true, false or 'auto'"):
        resolve_pin_memory("yes")


def test_folder_module_loader_does_not_pin_on_a_cpu_trainer(tmp_path, recwarn):
    import lightning as L

    root = make_folder_tree(tmp_path, per_class=3)
    dm = module(root, pin_memory="auto")
    dm.trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.pin_memory is False
    next(iter(loader))
    assert not [w for w in recwarn if "pin_memory" in str(w.message)]
    np.testing.assert_equal(dm.num_samples, 2000)
