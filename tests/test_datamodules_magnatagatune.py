"""MagnaTagATune / MTG-Jamendo DataModules on official-layout fixtures (MP3): split by folder, top-50 tags,
dropped untagged clips, chunking and chunk averaging, cache == uncached, bad inputs."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from datamodules.files import DatasetFormatError, LoaderConfig
from datamodules.magnatagatune import MTAT_TOP50, MagnaTagATuneDataModule, MTGJamendoDataModule
from fixtures_datasets import MTAT_ALL_TAGS, make_mtat, make_mtg_jamendo, write_mtat_csv
from l2i.audio import AudioFileError
from l2i.metrics.tagging import average_chunks

RATE = 16000


def mtat(root, **kw):
    kw.setdefault("sample_rate", RATE)
    kw.setdefault("chunk_s", 0.5)
    kw.setdefault("clip_s", 1.5)
    kw.setdefault("batch_size", 4)
    return MagnaTagATuneDataModule(str(root), **LoaderConfig.group(kw))


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return make_mtat(tmp_path_factory.mktemp("mtat"))


def tags_of(dm, split):
    return {it.id: {dm.class_names[j] for j in np.flatnonzero(it.target)} for it in dm.items[split]}


def test_top50_list_is_explicit():
    assert len(MTAT_TOP50) == 50 and len(set(MTAT_TOP50)) == 50
    assert MTAT_TOP50[:5] == ("guitar", "classical", "slow", "techno", "strings") and MTAT_TOP50[-1] == "choral"


def test_splits_labels_and_dropped_clips(fx):
    dm = mtat(fx.root)
    assert dm.task == "multilabel" and dm.num_classes == 50 and dm.class_names == list(MTAT_TOP50)
    dm.setup("fit")
    dm.setup("test")
    for split in ("train", "val", "test"):
        assert tags_of(dm, split) == fx.expected[split], split
    assert {s: len(dm.items[s]) for s in ("train", "val", "test")} == {"train": 3, "val": 2, "test": 2}
    assert dm.dropped_no_tag == {"train": 1, "val": 0, "test": 0}  # clip 10 has only jazz / blues
    assert "hard rock" not in dm.class_names and tags_of(dm, "val")["32"] == {"opera", "female", "singing"}


def test_chunks_for_training_and_evaluation(fx):
    dm = mtat(fx.root)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 3  # one random chunk per clip and visit
    b = next(iter(dm.train_dataloader()))
    assert b["waveform"].shape[1] == 8000 and b["target"].shape[1] == 50 and b["target"].dtype == torch.float32
    val = dm.datasets["val"]
    assert len(val) == 6  # 1.5 s clips, 0.5 s chunks, hop 0.5 s -> 3 chunks each
    batches = list(dm.val_dataloader())
    clip_index = torch.cat([x["clip_index"] for x in batches])
    chunk_index = torch.cat([x["chunk_index"] for x in batches])
    ids = sum((x["id"] for x in batches), [])
    assert clip_index.tolist() == [0, 0, 0, 1, 1, 1] and chunk_index.tolist() == [0, 1, 2, 0, 1, 2]
    assert ids == ["31"] * 3 + ["32"] * 3
    # chunk-averaged predictions: one row per clip, the mean of its chunks
    outputs = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    clip_out, clip_ids = average_chunks(outputs, ids)
    assert clip_ids == ["31", "32"] and clip_out.tolist() == [[2.0, 3.0], [8.0, 9.0]]
    assert torch.equal(average_chunks(outputs, clip_index)[0], clip_out)
    overlapping = mtat(fx.root, eval_hop_s=0.25)
    overlapping.setup("validate")
    assert len(overlapping.datasets["val"]) == 10  # 1 + (24000 - 8000) // 4000 = 5 per clip


def test_cached_chunks_equal_decoded_chunks(fx, tmp_path):
    plain = mtat(fx.root)
    cached = mtat(fx.root, cache_dir=str(tmp_path / "cache"), cache_dtype="float32")
    plain.setup("validate")
    cached.prepare_data()
    cached.setup("validate")
    assert np.array_equal(cached.datasets["val"].lengths, [24000, 24000])
    for i in range(len(plain.datasets["val"])):
        a, b = plain.datasets["val"][i], cached.datasets["val"][i]
        assert a["id"] == b["id"] and a["chunk_index"] == b["chunk_index"]
        # MP3 chunks decoded from the file (not seeked: libsndfile's MP3 seek is off by up to a frame)
        torch.testing.assert_close(a["waveform"], b["waveform"], atol=1e-4, rtol=0)


def test_tab_separated_without_quotes_reads_the_same(tmp_path):
    fx2 = make_mtat(tmp_path, quote_all=False)
    dm = mtat(fx2.root)
    dm.setup("fit")
    assert tags_of(dm, "train") == fx2.expected["train"]


# -- bad inputs ---------------------------------------------------------------------------------------
def test_missing_root_and_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MagnaTagATune: root .*nope.* does not exist"):
        mtat(tmp_path / "nope").setup("fit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"MagnaTagATune: annotations csv .*annotations_final\.csv.* not found"):
        mtat(tmp_path / "empty").setup("fit")


def test_missing_tag_column_and_wrong_separator(fx, tmp_path):
    root = tmp_path / "m"
    write_mtat_csv(root, fx.rows, header=["clip_id", *[t for t in MTAT_ALL_TAGS if t != "no voice"], "mp3_path"])
    with pytest.raises(DatasetFormatError, match=r"annotations_final\.csv: missing column\(s\) 'no voice'"):
        mtat(root).setup("fit")
    path = root / "annotations_final.csv"
    path.write_text(path.read_text().replace("\t", ","))
    with pytest.raises(DatasetFormatError, match=r"expected '\\t'-separated columns but the header looks comma-separated"):
        mtat(root).setup("fit")


def test_duplicated_rows_and_bad_values(fx, tmp_path):
    root = tmp_path / "m"
    write_mtat_csv(root, fx.rows + [fx.rows[1]])
    with pytest.raises(DatasetFormatError, match=r"duplicated rows for clip_id '6'"):
        mtat(root).setup("fit")
    rows = [dict(r) for r in fx.rows]
    rows[0] = dict(rows[0], mp3_path="g/x.mp3")
    write_mtat_csv(root, rows)
    with pytest.raises(DatasetFormatError, match=r"clip '2' has mp3_path 'g/x\.mp3', expected '<0-9a-f>/<name>\.mp3'"):
        mtat(root).setup("fit")
    path = root / "annotations_final.csv"
    write_mtat_csv(root, fx.rows)
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"0"', '"yes"', 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=r"column 'guitar' of row '2' is 'yes', not a number"):
        mtat(root).setup("fit")


def test_absent_and_empty_mp3_error_and_skip(fx, tmp_path):
    import shutil

    root = tmp_path / "m"
    shutil.copytree(fx.root, root)
    val = [r["mp3_path"] for r in fx.rows if r["mp3_path"].startswith("c/")]
    (root / val[0]).write_bytes(b"")  # the release has a few 0-byte MP3s
    (root / val[1]).unlink()
    with pytest.raises(AudioFileError, match=re.escape(f"{val[0].split('/')[1]}: file is empty (0 bytes)")):
        mtat(root).setup("validate")
    dm = mtat(root, on_bad_file="skip", report_dir=str(tmp_path / "rep"))
    with pytest.raises(DatasetFormatError, match=r"split 'val' has no usable items"):
        dm.setup("validate")
    reasons = sorted((r["split"], r["reason"]) for r in dm.report.rows())
    assert reasons == [("val", "file is empty (0 bytes)"), ("val", "file listed in the metadata does not exist")]


# -- MTG-Jamendo --------------------------------------------------------------------------------------
def test_mtg_jamendo_splits_and_tags(tmp_path):
    fj = make_mtg_jamendo(tmp_path)
    dm = MTGJamendoDataModule(str(fj.root), audio_dir=str(fj.audio_dir), split=0, chunk_s=0.5, clip_s=1.0,
                              sample_rate=RATE, loader={"batch_size": 2})
    assert dm.class_names == ["genre---pop", "genre---rock", "instrument---guitar", "instrument---piano",
                              "mood/theme---energetic"] and dm.num_classes == 5
    dm.setup("fit")
    dm.setup("test")
    for split in ("train", "val", "test"):
        assert tags_of(dm, split) == fj.expected[split], split
    b = next(iter(dm.test_dataloader()))
    assert b["waveform"].shape == (2, 8000) and b["id"] == ["track_0000414"] * 2 and b["chunk_index"].tolist() == [0, 1]


def test_mtg_jamendo_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MTG-Jamendo: root .*missing.* does not exist"):
        MTGJamendoDataModule(str(tmp_path / "missing"))
    fj = make_mtg_jamendo(tmp_path)
    split_dir = fj.root / "data" / "splits" / "split-0"
    with pytest.raises(FileNotFoundError, match=r"MTG-Jamendo: split file .*split-3/autotagging_top50tags-train\.tsv.* not found"):
        MTGJamendoDataModule(str(fj.root), split=3)
    test_tsv = split_dir / "autotagging_top50tags-test.tsv"
    test_tsv.write_text(test_tsv.read_text().replace("instrument---guitar", "instrument---theremin"))
    dm = MTGJamendoDataModule(str(fj.root), audio_dir=str(fj.audio_dir), chunk_s=0.5, sample_rate=RATE)
    with pytest.raises(DatasetFormatError, match=r"track 'track_0000414' has unknown tag\(s\) \['instrument---theremin'\]"):
        dm.setup("test")
    val_tsv = split_dir / "autotagging_top50tags-validation.tsv"
    val_tsv.write_text(val_tsv.read_text() + val_tsv.read_text().splitlines()[1] + "\n")
    dm = MTGJamendoDataModule(str(fj.root), audio_dir=str(fj.audio_dir), chunk_s=0.5, sample_rate=RATE)
    with pytest.raises(DatasetFormatError, match=r"duplicated rows for TRACK_ID 'track_0000314'"):
        dm.setup("validate")
    train_tsv = split_dir / "autotagging_top50tags-train.tsv"
    train_tsv.write_text(train_tsv.read_text().replace("PATH", "FILE"))
    with pytest.raises(DatasetFormatError, match=r"missing column\(s\) 'PATH'"):
        MTGJamendoDataModule(str(fj.root))
