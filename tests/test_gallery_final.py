"""The final model is heard on the test clips: after ``trainer.fit`` alone (no ``trainer.test``, as ``l2i fit`` and
the demo's post-hoc stage run it) the gallery has a ``test-final`` section with the test split's fixed clips,
for a post-hoc interpreter and for a by-design model; ``trainer.test`` refreshes the same section."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import soundfile as sf

from callbacks.interpretation_logger import FINAL_TEST, InterpretationLogger, select_clips
from evaluation_helpers import FRONTEND, NUM_CLASSES, SR, datamodule, dictionary, one_thread, trained_classifier


def _posthoc():
    from l2i.dictionary import DictionaryArtifact
    from lightning_modules.posthoc import PostHocInterpreterModule

    clf = trained_classifier()
    return PostHocInterpreterModule(
        classifier=clf, dictionary=DictionaryArtifact(W=dictionary(), frontend=clf.frontend.config),
        layers=["block3", "block4"], hidden=8, attention_dim=8, num_classes=NUM_CLASSES, task="multiclass")


def _bydesign():
    from l2i.dictionary import DictionaryArtifact
    from lightning_modules import ByDesignModule

    art = DictionaryArtifact(W=dictionary(), frontend=trained_classifier().frontend.config)
    return ByDesignModule(dictionary=art, backbone_kwargs={"channels": [4, 4, 8, 8]}, frontend=FRONTEND,
                          num_classes=NUM_CLASSES, hidden=8, attention_dim=8)


def _fit(tmp: Path, module, test: bool = False):
    dm = datamodule(num_train=16, num_val=8, num_test=12, batch_size=8)
    gallery = InterpretationLogger(every_n_epochs=1, max_clips=NUM_CLASSES, images=False, log_to_wandb=False)
    trainer = L.Trainer(max_epochs=1, logger=False, callbacks=[gallery], default_root_dir=str(tmp),
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", devices=1, num_sanity_val_steps=0, limit_train_batches=1)
    with one_thread():
        trainer.fit(module, datamodule=dm)
        if test:
            trainer.test(module, datamodule=dm, verbose=False)
    return dm, gallery


def _check_final_section(tmp: Path, dm) -> list[dict]:
    root = tmp / "interpretations"
    sections = sorted(p.parent.name for p in root.glob("*/index.html"))
    assert sections == [FINAL_TEST, "val-epoch000"]
    folder = root / FINAL_TEST
    rows = json.loads((folder / "rows.json").read_text())
    test_set = dm.dataset("test")
    expected = [str(test_set[i]["id"]) for i in select_clips(test_set, NUM_CLASSES, 1, NUM_CLASSES)]
    assert sorted({r["id"] for r in rows}) == sorted(expected) and len(expected) == NUM_CLASSES
    val_ids = {r["id"] for r in json.loads((root / "val-epoch000" / "rows.json").read_text())}
    assert not val_ids & set(expected)  # the test clips, not the validation clips again
    for r in rows:
        data, rate = sf.read(folder / r["files"]["interpretation_audio"])
        assert rate == SR and data.shape == (SR,) and np.isfinite(data).all()
    page = (folder / "index.html").read_text()
    assert "final model" in page and "test clips" in page
    top = (root / "index.html").read_text()
    assert top.index(f"{FINAL_TEST}/index.html") < top.index("val-epoch000/index.html")  # listed first
    return rows


def test_posthoc_fit_alone_leaves_the_final_model_on_test_clips(tmp_path):
    dm, gallery = _fit(tmp_path, _posthoc())
    _check_final_section(tmp_path, dm)
    assert [p.parent.name for p in gallery.galleries] == ["val-epoch000", FINAL_TEST]


def test_bydesign_fit_then_test_refreshes_the_one_final_section(tmp_path):
    dm, gallery = _fit(tmp_path, _bydesign(), test=True)
    _check_final_section(tmp_path, dm)
    # written at the end of fit, then again by trainer.test into the same section (no second test gallery)
    assert [p.parent.name for p in gallery.galleries] == ["val-epoch000", FINAL_TEST, FINAL_TEST]


def test_the_gallery_index_says_what_each_section_holds(tmp_path):
    """The top page explains what a page plays and names each section with its clips (not two bare links)."""
    from callbacks.interpretation_logger import FINAL_TEST, write_gallery_index

    for name, clips in ((FINAL_TEST, 2), ("val-epoch002", 3)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "index.html").write_text("<html></html>")
        for i in range(clips):
            (tmp_path / name / f"c{i}_input.wav").write_bytes(b"")
    text = write_gallery_index(tmp_path).read_text()
    assert "the trained model on fixed test clips, 2 clip(s)" in text
    assert "fixed validation clips after epoch 2, 3 clip(s)" in text
    assert text.index(FINAL_TEST) < text.index("val-epoch002") and "residual" in text
