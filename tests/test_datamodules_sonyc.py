"""SONYCUSTDataModule on official-layout fixtures: annotator rules, coarse / fine / X tags, v2.2 and v2.3
layouts, bad inputs."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from datamodules.files import DatasetFormatError, LoaderConfig
from datamodules.sonyc_ust import SONYCUSTDataModule
from fixtures_datasets import SONYC_COARSE, SONYC_FINE, make_sonyc, sonyc_header, sonyc_row, write_sonyc_csv
from l2i.audio import AudioFileError
from l2i.metrics.sonyc import DEFAULT_TAXONOMY

RATE = 11025


def module(root, **kw):
    kw.setdefault("sample_rate", RATE)
    kw.setdefault("duration_s", 0.25)
    kw.setdefault("batch_size", 8)
    return SONYCUSTDataModule(str(root), **LoaderConfig.group(kw))


@pytest.fixture
def sonyc(tmp_path):
    return make_sonyc(tmp_path, layout="v2.2")


def targets(dm, split):
    """{file name: set of positive class names} from the DataModule's items."""
    return {it.id: {dm.class_names[j] for j in np.flatnonzero(np.asarray(it.target))} for it in dm.items[split]}


def test_coarse_labels_follow_the_annotator_rules(sonyc, caplog):
    dm = module(sonyc.root, level="coarse")
    assert dm.task == "multilabel" and dm.num_classes == 8 and dm.class_names == SONYC_COARSE
    with caplog.at_level("WARNING"):
        dm.setup("fit")
        dm.setup("test")
    coarse = lambda d: {f: {t for t in tags if t in SONYC_COARSE} for f, tags in d.items()}  # noqa: E731
    for split in ("train", "val", "test"):
        assert targets(dm, split) == coarse(sonyc.expected[split]), split
    # train: volunteer rows only -> the team member's siren (-3) does not count; -1 never counts
    assert "5_alert-signal" not in targets(dm, "train")["00_000001.wav"]
    # validate: only annotator 0 -> the volunteer's engine is ignored; 01_000011 (no ground truth) left out
    assert targets(dm, "val")["01_000010.wav"] == {"5_alert-signal", "7_human-voice"}
    assert dm.dropped_unlabelled == {"train": 1, "val": 1, "test": 0}
    assert any("1 train clip(s) have no volunteer" in m for m in caplog.messages)
    batch = next(iter(dm.val_dataloader()))
    assert batch["waveform"].shape == (2, 2756) and batch["target"].dtype == torch.float32
    assert batch["target"].shape == (2, 8) and batch["id"] == ["01_000010.wav", "01_000012.wav"]
    assert batch["target"][0].tolist() == [0, 0, 0, 0, 1, 0, 1, 0]


def test_fine_labels_with_x_tags_as_classes(sonyc):
    dm = module(sonyc.root, level="fine", fine_x_tags=True)
    assert dm.num_classes == 29 and dm.class_names == SONYC_FINE
    dm.setup("fit")
    dm.setup("test")
    fine = lambda d: {f: {t for t in tags if t in SONYC_FINE} for f, tags in d.items()}  # noqa: E731
    for split in ("train", "val", "test"):
        assert targets(dm, split) == fine(sonyc.expected[split]), split
    assert targets(dm, "test")["02_000020.wav"] == {"1-X_engine-of-uncertain-size", "1-2_medium-sounding-engine"}


def test_fine_labels_with_x_tags_apart(sonyc):
    dm = module(sonyc.root, level="fine", fine_x_tags=False)
    assert dm.num_classes == 23 and dm.class_names == DEFAULT_TAXONOMY.fine_tags(with_x=False)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["target"].shape == (2, 23) and batch["target_x"].shape == (2, 6)
    assert batch["id"] == ["02_000020.wav", "02_000021.wav"]
    assert batch["target_x"][0].tolist() == [1, 0, 0, 0, 0, 0]  # 1-X
    assert batch["target"][0].tolist() == [0, 1] + [0] * 21  # 1-2 medium engine
    assert batch["target"][1].sum() == 0 and batch["target_x"][1].sum() == 0


def test_v23_archives(tmp_path):
    fx = make_sonyc(tmp_path, layout="v2.3")
    with pytest.raises(FileNotFoundError, match=r"holds 2 audio archive\(s\) \(audio-0\.tar\.gz, audio-1\.tar\.gz\) "
                                                r"but no audio/ folder\. Unpack them first"):
        module(fx.root).setup("fit")
    with pytest.raises(ValueError, match="unpack_archives: true needs a cache_dir"):
        module(fx.root, unpack_archives=True).setup("fit")
    dm = module(fx.root, unpack_archives=True, cache_dir=str(tmp_path / "cache"))
    dm.setup("fit")
    assert targets(dm, "train") == {f: {t for t in tags if t in SONYC_COARSE} for f, tags in fx.expected["train"].items()}
    assert (tmp_path / "cache" / "sonyc_ust" / "unpacked" / "audio" / "00_000001.wav").is_file()
    assert next(iter(dm.train_dataloader()))["waveform"].abs().max() > 0.1


def test_taxonomy_read_from_yaml(sonyc):
    """A taxonomy YAML that renames a tag changes the expected column: the csv then lacks it."""
    yaml_path = sonyc.root / "dcase-ust-taxonomy.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("8: dog\n", "8: doggo\n", 1))
    with pytest.raises(DatasetFormatError, match=r"missing column\(s\) '8_doggo_presence'"):
        module(sonyc.root).setup("fit")


# -- bad inputs ---------------------------------------------------------------------------------------
def test_missing_root_and_csv(tmp_path, sonyc):
    with pytest.raises(FileNotFoundError, match=r"SONYC-UST: root .*absent.* does not exist"):
        module(tmp_path / "absent").setup("fit")
    (sonyc.root / "annotations.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"SONYC-UST: annotations csv .*annotations\.csv.* not found"):
        module(sonyc.root).setup("fit")


def test_missing_column(sonyc):
    header = [h for h in sonyc_header() if h != "annotator_id"]
    write_sonyc_csv(sonyc.root, sonyc.rows, header)
    with pytest.raises(DatasetFormatError, match=r"annotations\.csv: missing column\(s\) 'annotator_id'"):
        module(sonyc.root).setup("fit")
    header = [h for h in sonyc_header() if h != "5-3_siren_presence"]
    write_sonyc_csv(sonyc.root, sonyc.rows, header)
    module(sonyc.root, level="coarse").setup("fit")  # coarse level does not need fine columns
    with pytest.raises(DatasetFormatError, match=r"missing column\(s\) '5-3_siren_presence'"):
        module(sonyc.root, level="fine").setup("fit")


def test_unknown_tag_column(sonyc):
    rows = [dict(r, **{"9-1_thunder_presence": "0"}) for r in sonyc.rows]
    write_sonyc_csv(sonyc.root, rows, sonyc_header() + ["9-1_thunder_presence"])
    with pytest.raises(DatasetFormatError, match=r"unknown tag column\(s\) \['9-1_thunder_presence'\]"):
        module(sonyc.root).setup("fit")


def test_bad_values(sonyc):
    rows = [dict(r) for r in sonyc.rows]
    rows[0]["1_engine_presence"] = "2"
    write_sonyc_csv(sonyc.root, rows)
    with pytest.raises(DatasetFormatError, match=r"column '1_engine_presence' of '00_000001\.wav' is 2, expected 1, 0 or -1"):
        module(sonyc.root).setup("fit")
    rows[0]["1_engine_presence"], rows[0]["split"] = "1", "dev"
    write_sonyc_csv(sonyc.root, rows)
    with pytest.raises(DatasetFormatError, match=r"row of '00_000001\.wav' has unknown split 'dev'"):
        module(sonyc.root).setup("fit")


def test_duplicated_rows(sonyc):
    write_sonyc_csv(sonyc.root, sonyc.rows + [sonyc_row("validate", "01_000010.wav", 0, {"8_dog"})])
    with pytest.raises(DatasetFormatError, match=re.escape("duplicated rows for (audio_filename, annotator_id) ('01_000010.wav', '0')")):
        module(sonyc.root).setup("fit")
    team = sonyc.rows[2]  # annotator -3
    write_sonyc_csv(sonyc.root, sonyc.rows + [team])
    with pytest.raises(DatasetFormatError, match="duplicated rows for identical team-member row"):
        module(sonyc.root).setup("fit")
    # a team member may hold several rows per clip (one coarse group at a time): not a duplicate
    other_group = sonyc_row("train", "00_000001.wav", -3, {"8_dog"}, unannotated=set(SONYC_COARSE) - {"8_dog"})
    write_sonyc_csv(sonyc.root, sonyc.rows + [other_group])
    module(sonyc.root).setup("fit")


def test_clip_in_two_splits(sonyc):
    write_sonyc_csv(sonyc.root, sonyc.rows + [sonyc_row("validate", "00_000001.wav", 0, set())])
    with pytest.raises(DatasetFormatError, match=r"clip '00_000001\.wav' is listed in splits 'train' and 'validate'"):
        module(sonyc.root).setup("fit")


def test_listed_file_absent_and_unreadable(sonyc, tmp_path):
    (sonyc.root / "audio" / "01_000012.wav").unlink()
    (sonyc.root / "audio" / "00_000002.wav").write_bytes(b"RIFF....garbage")
    with pytest.raises(AudioFileError, match=r"00_000002\.wav: cannot read audio header"):
        module(sonyc.root).setup("fit")
    with pytest.raises(AudioFileError, match=r"01_000012\.wav: file listed in the metadata does not exist"):
        module(sonyc.root).setup("validate")
    dm = module(sonyc.root, on_bad_file="skip", report_dir=str(tmp_path / "rep"))
    dm.setup("fit")
    assert [it.id for it in dm.items["train"]] == ["00_000001.wav"]
    assert [it.id for it in dm.items["val"]] == ["01_000010.wav"]
    rows = {(r["split"], r["path"].rsplit("/", 1)[1]): r["reason"] for r in dm.report.rows()}
    assert rows[("val", "01_000012.wav")] == "file listed in the metadata does not exist"
    assert rows[("train", "00_000002.wav")].startswith("cannot read audio header")


def test_v1_split_folders(sonyc):
    """v1 kept the audio in train/ and validate/ folders: clips are found there too."""
    audio = sonyc.root / "audio"
    for f in audio.iterdir():
        dest = sonyc.root / ("train" if f.name.startswith("00_") else "validate")
        dest.mkdir(exist_ok=True)
        f.rename(dest / f.name)
    audio.rmdir()
    dm = module(sonyc.root)
    dm.setup("fit")
    assert [it.path.split("/")[-2:] for it in dm.items["train"]] == [["train", "00_000001.wav"], ["train", "00_000002.wav"]]
    assert dm.items["val"][0].path.endswith("validate/01_000010.wav")


def test_taxonomy_file_without_fine_tags_is_refused_naming_it(sonyc):
    """Reading a release's taxonomy file is the data set's job; a file lacking 'fine' is named in the error."""
    from datamodules.sonyc_ust import read_taxonomy

    bad = sonyc.root / "dcase-ust-taxonomy.yaml"
    bad.write_text("coarse:\n  1: engine\n")
    with pytest.raises(DatasetFormatError, match=r"dcase-ust-taxonomy\.yaml: taxonomy needs 'coarse' and 'fine'"):
        read_taxonomy(bad)
