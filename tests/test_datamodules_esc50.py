"""ESC50DataModule on a fixture in the official layout: labels, folds, validation, ESC-10, bad inputs."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
import torch

from datamodules.esc50 import ESC50_CLASSES, ESC50DataModule, summarize_folds
from datamodules.files import DatasetFormatError, FileDataModule, LoaderConfig
from fixtures_datasets import ESC50_HEADER, make_esc50, write_esc50_csv
from l2i.audio import AudioFileError

RATE = 11025  # 44.1 kHz files -> a 4:1 resampling, cheap (44.1 -> 8 kHz costs ~50 ms a clip)


def module(root, **kw):
    kw.setdefault("sample_rate", RATE)
    kw.setdefault("duration_s", 0.25)
    kw.setdefault("batch_size", 4)
    return ESC50DataModule(str(root), **LoaderConfig.group(kw))


@pytest.fixture
def esc(tmp_path):
    return make_esc50(tmp_path, classes=(0, 1, 2, 10), clips_per_class_per_fold=2)


def all_batches(loader):
    wav, tgt, ids = [], [], []
    for b in loader:
        wav.append(b["waveform"])
        tgt.append(b["target"])
        ids += b["id"]
        assert b["sample_rate"].tolist() == [RATE] * len(b["id"])
    return torch.cat(wav), torch.cat(tgt), ids


def test_file_datamodule_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        FileDataModule("x", 8000, 1.0)


def test_folds_labels_counts_and_batches(esc, tmp_path):
    dm = module(esc.root, test_fold=1, val_fold=2, report_dir=str(tmp_path / "rep"))
    assert dm.num_classes == 50 and dm.class_names == list(ESC50_CLASSES) and dm.task == "multiclass"
    dm.setup("fit")
    dm.setup("test")
    assert {s: len(dm.datasets[s]) for s in ("train", "val", "test")} == {"train": 24, "val": 8, "test": 8}
    assert sorted(it.id for it in dm.items["test"]) == esc.files(fold=1)
    assert sorted(it.id for it in dm.items["val"]) == esc.files(fold=2)
    assert sorted(it.id for it in dm.items["train"]) == esc.files(folds=(3, 4, 5))
    wav, tgt, ids = all_batches(dm.test_dataloader())
    assert wav.shape == (8, 2756) and wav.dtype == torch.float32 and tgt.dtype == torch.int64
    # target = the number at the end of the file name = the csv target column
    assert tgt.tolist() == [int(i.rsplit("-", 1)[1][:-4]) for i in ids]
    assert set(tgt.tolist()) == {0, 1, 2, 10}
    assert wav.abs().max() > 0.1  # real audio, resampled 44.1 -> 11.025 kHz
    # the training loader shuffles (seeded) and still covers every clip once per epoch
    _, _, train_ids = all_batches(dm.train_dataloader())
    assert sorted(train_ids) == esc.files(folds=(3, 4, 5)) and train_ids != sorted(train_ids)
    # the order is a function of (seed, epoch): the same again for epoch 0, another one for epoch 1
    loader = dm.train_dataloader()
    assert all_batches(loader)[2] == train_ids
    loader.sampler.set_epoch(1)
    assert all_batches(loader)[2] != train_ids


def test_resampling_matches_the_file_rate(esc):
    """The sample rate is read from each file: a 44.1 kHz 240 Hz tone (class 1) keeps its pitch at 11.025 kHz."""
    dm = module(esc.root, test_fold=1, val_fold=2)
    dm.setup("test")
    ds = dm.datasets["test"]
    i = next(k for k, it in enumerate(ds.items) if it.target == 1)
    x = ds[i]["waveform"].numpy()
    peak = np.argmax(np.abs(np.fft.rfft(x))) * RATE / len(x)
    assert abs(peak - 240.0) < 8.0


def test_val_fraction_groups_by_source_and_keeps_classes(tmp_path):
    esc = make_esc50(tmp_path, classes=(0, 1), clips_per_class_per_fold=3)
    dm = module(esc.root, test_fold=3, val_fold=None, val_fraction=0.25, seed=1)
    dm.setup("fit")
    train, val = dm.items["train"], dm.items["val"]
    assert len(train) + len(val) == 24 and len(val) == 6  # per class 12 clips: ceil(3) -> one source of 3
    src = lambda it: it.id.split("-")[1]  # noqa: E731
    assert not {src(i) for i in train} & {src(i) for i in val}  # fragments of a source never straddle
    assert {i.target for i in val} == {0, 1} and {i.target for i in train} == {0, 1}
    assert all(not i.id.startswith("3-") for i in train + val)
    other = module(esc.root, test_fold=3, val_fold=None, val_fraction=0.25, seed=2)
    other.setup("fit")
    assert len(other.items["val"]) == 6
    no_val = module(esc.root, test_fold=3, val_fold=None, val_fraction=0.0)
    no_val.setup("fit")
    assert "val" not in no_val.datasets and len(no_val.items["train"]) == 24
    with pytest.raises(RuntimeError, match="no 'val' split"):
        no_val.val_dataloader()


def test_esc10_only(esc):
    dm = module(esc.root, esc10_only=True, test_fold=1, val_fold=2)
    assert dm.num_classes == 10 and dm.class_names[:3] == ["dog", "rooster", "rain"]
    dm.setup("test")
    # pig (2) is not in ESC-10; dog -> 0, rooster -> 1, rain -> 2
    assert sorted(it.target for it in dm.items["test"]) == [0, 0, 1, 1, 2, 2]


def test_cross_validation_folds():
    folds = ESC50DataModule.cross_validation_folds()
    assert [(f["test_fold"], f["val_fold"]) for f in folds] == [(1, 2), (2, 3), (3, 4), (4, 5), (5, 1)]
    assert all(f["val_fold"] is None for f in ESC50DataModule.cross_validation_folds("fraction"))
    s = summarize_folds([{"acc": 0.5}, {"acc": 0.7}, {"acc": 0.9}])
    assert s["acc"]["mean"] == pytest.approx(0.7) and s["acc"]["std"] == pytest.approx(np.std([0.5, 0.7, 0.9]))
    assert s["acc"]["text"] == "0.7000 ± 0.1633"
    with pytest.raises(KeyError, match="fold 1 lacks"):
        summarize_folds([{"acc": 1.0}, {"loss": 1.0}])


def test_bad_arguments(esc):
    with pytest.raises(ValueError, match="test_fold must be one of"):
        module(esc.root, test_fold=6)
    with pytest.raises(ValueError, match="val_fold must be one of"):
        module(esc.root, test_fold=2, val_fold=2)
    with pytest.raises(ValueError, match="on_bad_file must be"):
        module(esc.root, on_bad_file="ignore")


# -- bad inputs: each has its message ---------------------------------------------------------------------
def test_missing_root(tmp_path):
    dm = module(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"ESC-50: root .*nowhere.* does not exist"):
        dm.setup("fit")


def test_missing_csv(esc):
    (esc.root / "meta" / "esc50.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"ESC-50: metadata csv .*esc50\.csv.* not found"):
        module(esc.root).setup("fit")


def test_missing_column(esc):
    header = [h for h in ESC50_HEADER if h != "fold"]
    write_esc50_csv(esc.root, esc.rows, header)
    with pytest.raises(DatasetFormatError, match=r"esc50\.csv: missing column\(s\) 'fold'; columns present"):
        module(esc.root).setup("fit")


def test_columns_are_selected_by_name(esc):
    header = list(reversed(ESC50_HEADER))
    write_esc50_csv(esc.root, esc.rows, header)
    dm = module(esc.root, test_fold=1, val_fold=2)
    dm.setup("test")
    assert sorted(it.id for it in dm.items["test"]) == esc.files(fold=1)


def test_unknown_class(esc):
    rows = [dict(r) for r in esc.rows]
    rows[0]["category"] = "unicorn"
    write_esc50_csv(esc.root, rows)
    with pytest.raises(DatasetFormatError, match=r"unknown class 'unicorn' for target 0"):
        module(esc.root).setup("fit")
    rows[0]["category"], rows[0]["target"] = "dog", 57
    write_esc50_csv(esc.root, rows)
    with pytest.raises(DatasetFormatError, match=r"unknown class target 57"):
        module(esc.root).setup("fit")


def test_duplicated_rows(esc):
    write_esc50_csv(esc.root, esc.rows + [esc.rows[3]])
    with pytest.raises(DatasetFormatError, match=rf"duplicated rows for filename '{esc.rows[3]['filename']}'"):
        module(esc.root).setup("fit")


def test_listed_file_absent_error_and_skip(esc, tmp_path):
    gone = esc.root / "audio" / esc.files(fold=1)[0]
    gone.unlink()
    with pytest.raises(AudioFileError, match=rf"{gone.name}: file listed in the metadata does not exist"):
        module(esc.root, test_fold=1, val_fold=2).setup("test")
    dm = module(esc.root, test_fold=1, val_fold=2, on_bad_file="skip", report_dir=str(tmp_path / "rep"))
    dm.setup("fit")
    dm.setup("test")  # a second setup must not erase the report
    assert len(dm.items["test"]) == 7
    rows = dm.report.rows()
    assert [(r["split"], r["path"], r["reason"]) for r in rows] == [
        ("test", str(gone), "file listed in the metadata does not exist")]
    assert (tmp_path / "rep" / "skipped_files.csv").read_text().startswith("dataset,split,path,reason")


@pytest.mark.parametrize("damage", ["empty", "garbage", "no_samples", "truncated"])
def test_unreadable_or_empty_file_error_and_skip(esc, tmp_path, damage, caplog):
    bad = esc.root / "audio" / esc.files(fold=1)[1]
    if damage == "empty":
        bad.write_bytes(b"")
        reason = "file is empty (0 bytes)"
    elif damage == "garbage":
        bad.write_bytes(b"this is not a wav file at all" * 10)
        reason = "cannot read audio header"
    elif damage == "truncated":  # a cut copy: libsndfile decodes what is there without a word
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 3])
        reason = f"WAV data chunk is truncated ({len(data) // 3 - 44:,} of the {len(data) - 44:,} bytes its header declares)"
    else:
        import soundfile as sf

        sf.write(str(bad), np.zeros((0,), dtype=np.float32), 44100)
        reason = "file holds no audio samples"
    with pytest.raises(AudioFileError, match=re.escape(f"{bad.name}: {reason}")):
        module(esc.root, test_fold=1, val_fold=2).setup("test")
    dm = module(esc.root, test_fold=1, val_fold=2, on_bad_file="skip", report_dir=str(tmp_path / "rep"))
    with caplog.at_level("WARNING"):
        dm.setup("test")
    assert len(dm.items["test"]) == 7 and bad.name not in {it.id for it in dm.items["test"]}
    (row,) = dm.report.rows()
    assert row["path"] == str(bad) and row["reason"].startswith(reason)
    assert any(bad.name in m and "skipping" in m for m in caplog.messages)  # logged, not silent


def test_decode_failure_at_load_time_is_reported(esc, tmp_path, monkeypatch):
    """A file whose header reads but whose samples do not decode: error names it, skip drops the item."""
    from datamodules import decode

    dm = module(esc.root, test_fold=1, val_fold=2, on_bad_file="skip", report_dir=str(tmp_path / "rep"))
    dm.setup("test")
    victim = dm.items["test"][0]
    real = decode.load_audio

    def flaky(path, *a, **k):
        if path == victim.path:
            raise AudioFileError(path, "cannot decode audio (truncated)")
        return real(path, *a, **k)

    monkeypatch.setattr(decode, "load_audio", flaky)
    batches = list(dm.test_dataloader())
    assert sum(len(b["id"]) for b in batches) == 7
    assert [r["reason"] for r in dm.report.rows()] == ["cannot decode audio (truncated)"]
    strict = module(esc.root, test_fold=1, val_fold=2)
    strict.setup("test")
    with pytest.raises(AudioFileError, match=rf"{victim.id}: cannot decode audio"):
        list(strict.test_dataloader())


def test_csv_with_a_byte_order_mark_is_read(esc):
    """Excel's "CSV UTF-8" export starts with a BOM; the first column must still be 'filename'."""
    csv_path = esc.root / "meta" / "esc50.csv"
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    dm = module(esc.root, test_fold=1, val_fold=2)
    dm.setup("test")
    assert len(dm.items["test"]) == 8


def test_truncated_wav_warns_when_decoded_directly(esc):
    from l2i.audio import load_audio

    bad = esc.root / "audio" / esc.files(fold=1)[0]
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match=rf"{bad.name}: WAV data chunk is truncated"):
        wav, _ = load_audio(bad)
    assert wav.shape[0] == (len(data) // 2 - 44) // 2


def test_csv_with_wrong_field_count(esc):
    path = esc.root / "meta" / "esc50.csv"
    with open(path, "a", newline="") as fh:
        csv.writer(fh).writerow(["5-1-A-0.wav", "5", "0"])
    with pytest.raises(DatasetFormatError, match=r"esc50\.csv, line 42: 3 fields but the header has 7"):
        module(esc.root).setup("fit")


def test_skip_report_per_rank(esc, tmp_path):
    """Other ranks of a multi-process run write their own report (no process truncates another's)."""
    from types import SimpleNamespace

    (esc.root / "audio" / esc.files(fold=1)[0]).unlink()
    dm = module(esc.root, test_fold=1, val_fold=2, on_bad_file="skip", report_dir=str(tmp_path / "rep"))
    dm.trainer = SimpleNamespace(global_rank=1)
    dm.setup("test")
    assert dm.report.path.name == "skipped_files.rank1.csv" and len(dm.report.rows()) == 1
    assert not (tmp_path / "rep" / "skipped_files.csv").exists()


def test_no_report_file_without_skips(esc, tmp_path, monkeypatch):
    """A clean run writes no report; a stale report of an earlier run is removed at setup."""
    monkeypatch.chdir(tmp_path)
    dm = module(esc.root, test_fold=1, val_fold=2, on_bad_file="skip")
    stale = tmp_path / "l2i-reports" / "esc50" / "skipped_files.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("dataset,split,path,reason\nesc50,test,/old/file.wav,file is empty (0 bytes)\n")
    dm.setup("test")
    assert dm.report.path == stale and not stale.exists() and dm.report.rows() == []


def test_loader_group_is_passed_by_name_and_checked(esc, tmp_path):
    """The loader settings are one typed group: a mapping (a config read as YAML) or a LoaderConfig give the same
    module; a misspelt key or a bad value is refused naming it."""
    as_dict = ESC50DataModule(str(esc.root), loader={"batch_size": 3, "num_workers": 1, "cache_dir": str(tmp_path)})
    typed = ESC50DataModule(str(esc.root), loader=LoaderConfig(batch_size=3, num_workers=1, cache_dir=str(tmp_path)))
    assert as_dict.loader == typed.loader
    assert (typed.batch_size, typed.num_workers, typed.cache_dir, typed.on_bad_file) == (3, 1, str(tmp_path), "error")
    with pytest.raises(ValueError, match=r"loader: unknown key\(s\) \['batchsize'\]"):
        ESC50DataModule(str(esc.root), loader={"batchsize": 3})
    with pytest.raises(ValueError, match="loader.batch_size must be a positive integer, got 0"):
        LoaderConfig(batch_size=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'batch_size'"):
        ESC50DataModule(str(esc.root), batch_size=3)  # the flat style is gone: nothing is passed by position
