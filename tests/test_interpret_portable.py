"""Trained interpreters as a user meets them: loaded from any folder or from one exported file, ``l2i interpret``
results independent of the other files of a call, clear refusals of the wrong checkpoint or config, dotted
overrides, by-design models, what interpret writes and says, and the Python front door of the README.

The models are untrained (random Ψ/Θ on an untrained small CNN): loading, shapes and batch independence do not
depend on training. Each test takes about a second on a 2-core CPU.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from experiments.cli import read_config
from l2i.dictionary import DictionaryArtifact
from lightning_modules.bydesign import ByDesignModule
from lightning_modules.classifier import ClassifierModule
from lightning_modules.posthoc import PostHocInterpreterModule

SR = 8000
FE = dict(sample_rate=SR, n_fft=256, hop_length=128, n_mels=32, top_db=80.0)
CLASSES = ["bird", "car", "dog", "rain"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    """Torch on one thread: on a loaded 2-core machine two fighting threads make tiny convolutions ~6x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _save(module, path: Path) -> Path:
    """Save as training does (``Trainer.save_checkpoint``: the module's ``on_save_checkpoint`` runs)."""
    trainer = L.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu", devices=1, max_epochs=0,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return path


def _old_style(module, path: Path) -> Path:
    """A checkpoint as the previous version wrote it: weights and hyper-parameters only."""
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": L.__version__}, path)
    return path


@pytest.fixture(scope="module")
def _one_thread_module():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _wav(path: Path, seconds: float, rate: int = SR, channels: int = 1, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    x = 0.3 * np.sin(2 * np.pi * (300 + 200 * seed) * t) + 0.05 * rng.standard_normal(n)
    data = np.stack([x, 0.5 * x], axis=1) if channels == 2 else x
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype(np.float32), rate)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory, _one_thread_module):
    """A demo-like run folder written with relative artifact paths from its own working directory."""
    root = tmp_path_factory.mktemp("train")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        torch.manual_seed(0)
        clf = ClassifierModule(backbone_kwargs={"channels": [4, 8, 8, 16]}, frontend=FE, num_classes=4, class_names=CLASSES)
        _save(clf, Path("runs/demo/classifier/classifier.ckpt"))
        DictionaryArtifact(W=torch.rand(129, 12) + 0.01, frontend=clf.frontend.config,
                           meta={"labels": ["noise"] * 4 + [c for c in CLASSES for _ in range(2)]}).save("runs/demo/dictionary/dictionary.pt")
        rel = dict(classifier_checkpoint="runs/demo/classifier/classifier.ckpt", dictionary_path="runs/demo/dictionary/dictionary.pt")
        posthoc = PostHocInterpreterModule(**rel, hidden=16, pooling="max", noise_evidence=False, threshold=0.1)
        _save(posthoc, Path("runs/demo/posthoc/interpreter.ckpt"))
        _old_style(posthoc, Path("runs/demo/posthoc/old.ckpt"))
        bydesign = ByDesignModule(dictionary_path=rel["dictionary_path"], backbone_kwargs={"channels": [4, 8, 8, 16]},
                                  frontend=FE, num_classes=4, class_names=CLASSES, hidden=16)
        _save(bydesign, Path("runs/demo/bydesign/bydesign.ckpt"))
    finally:
        os.chdir(cwd)
    return {"root": root, "posthoc": posthoc.eval(), "clf": clf.eval(), "bydesign": bydesign.eval()}


def _interpret(*args, capsys=None):
    from experiments.cli import main

    rc = main(["interpret", *map(str, args)])
    return rc


# -- 1. portable ---------------------------------------------------------------------------------------------


def test_a_checkpoint_with_relative_artifact_paths_loads_from_another_folder(run, tmp_path, monkeypatch):
    """The previous version's checkpoints name the classifier and dictionary relative to the training folder:
    found relative to the checkpoint now (the old loader raised 'file does not exist' from any other folder)."""
    from l2i import load_interpreter as front_door
    from lightning_modules.artifacts import load_artifact

    monkeypatch.chdir(tmp_path)
    x = torch.randn(1, SR)
    want = run["posthoc"].interpret(x)
    for ckpt in ("runs/demo/posthoc/old.ckpt", "runs/demo/posthoc/interpreter.ckpt"):
        path = run["root"] / ckpt
        got = load_artifact(path, "posthoc").interpret(x)
        assert torch.allclose(got.audio, want.audio, atol=1e-6) and torch.equal(got.components, want.components)
        assert torch.allclose(front_door(path).interpret(x).audio, want.audio, atol=1e-6)
        assert torch.allclose(PostHocInterpreterModule.load_from_checkpoint(path).interpret(x).audio, want.audio, atol=1e-6)


def test_a_missing_artifact_is_named_with_its_relative_path_and_the_fix(run, tmp_path, monkeypatch):
    from l2i.bundle import read_interpreter
    from l2i.checkpoints import CheckpointError

    lone = tmp_path / "alone" / "old.ckpt"
    lone.parent.mkdir()
    shutil.copy(run["root"] / "runs/demo/posthoc/old.ckpt", lone)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError) as err:
        read_interpreter(lone)
    msg = str(err.value)
    assert "runs/demo/classifier/classifier.ckpt" in msg and "relative to the folder training ran in" in msg
    assert "--classifier" in msg and "classifier=" in msg


def test_checkpoints_now_carry_their_classifier_and_dictionary(run, tmp_path):
    """A checkpoint written by training now loads alone: the classifier's architecture and the dictionary travel in it."""
    from l2i import load_interpreter

    lone = tmp_path / "interpreter.ckpt"
    shutil.copy(run["root"] / "runs/demo/posthoc/interpreter.ckpt", lone)
    x = torch.randn(1, SR)
    assert torch.allclose(load_interpreter(lone).interpret(x).audio, run["posthoc"].interpret(x).audio, atol=1e-6)


def test_export_writes_one_weights_only_file_that_every_entry_point_loads_alone(run, tmp_path, monkeypatch, capsys):
    from experiments.cli import main
    from l2i import load_interpreter

    monkeypatch.chdir(run["root"])
    out = tmp_path / "shared" / "interpreter.l2i.pt"
    assert main(["export", "--ckpt", "runs/demo/posthoc/old.ckpt", "--out", str(out)]) == 0
    state = torch.load(out, weights_only=True)
    assert state["format"] == "l2i.interpreter" and state["kind"] == "posthoc"
    assert set(state) >= {"classifier", "dictionary", "interpreter", "state_dict"}
    assert state["classifier"]["backbone"] == "small_cnn" and state["dictionary"]["dictionary"].shape == (129, 12)
    monkeypatch.chdir(tmp_path / "shared")  # nothing else here
    x = torch.randn(1, SR)
    assert torch.allclose(load_interpreter("interpreter.l2i.pt").interpret(x).audio, run["posthoc"].interpret(x).audio, atol=1e-6)
    _wav(Path("clip.wav"), 0.5)
    assert main(["interpret", "--ckpt", "interpreter.l2i.pt", "--input", "clip.wav", "--out_dir", "o", "--no_plots"]) == 0
    assert len(list(Path("o").glob("clip__*.json"))) == 1
    cfg = {"model": {"class_path": "lightning_modules.PostHocInterpreterModule"},
           "data": {"class_path": "datamodules.SyntheticDataModule",
                    "init_args": {"num_classes": 4, "sample_rate": SR, "duration_s": 1.0, "num_test": 4, "batch_size": 4}}}
    Path("posthoc.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["evaluate", "--config", "posthoc.yaml", "--ckpt", "interpreter.l2i.pt", "--noise_snr_db", "",
                 "--device", "cpu", "--out_dir", "e"]) == 0
    assert json.loads(Path("e/evaluation.json").read_text())["results"]["clips"] == 4


# -- 2. batch independence, lengths, short clips, names ------------------------------------------------------


def test_a_clip_is_interpreted_the_same_alone_or_with_longer_clips(run, tmp_path, monkeypatch):
    """The old command zero-padded every input to the longest and never trimmed: a clip's probabilities, chosen
    components and output length changed with its neighbours. (``--out``: the old name of ``--out_dir``, kept.)"""
    monkeypatch.chdir(run["root"])  # the training folder: the old loader needed it
    ckpt = run["root"] / "runs/demo/posthoc/interpreter.ckpt"
    short, long = _wav(tmp_path / "short.wav", 0.6, seed=1), _wav(tmp_path / "long.wav", 2.3, rate=16000, seed=2)
    assert _interpret("--ckpt", ckpt, "--input", short, "--out", tmp_path / "alone", "--no_plots") == 0
    assert _interpret("--ckpt", ckpt, "--input", long, short, "--out", tmp_path / "batch", "--no_plots") == 0
    (alone,) = (tmp_path / "alone").glob("short__*.json")
    batched = tmp_path / "batch" / alone.name
    a, b = json.loads(alone.read_text()), json.loads(batched.read_text())
    for key in ("classifier_probability", "interpreter_probability"):
        assert abs(a[key] - b[key]) <= 1e-5, key
    assert np.allclose(a["relevance"], b["relevance"], atol=1e-5) and a["chosen_components"] == b["chosen_components"]
    wa, _ = sf.read(tmp_path / "alone" / a["interpretation_wav"])
    wb, _ = sf.read(tmp_path / "batch" / b["interpretation_wav"])
    assert wa.shape == wb.shape == (int(0.6 * SR),) and np.allclose(wa, wb, atol=1e-5)
    for rec in map(lambda p: json.loads(p.read_text()), (tmp_path / "batch").glob("long__*.json")):
        for key in ("interpretation_wav", "residual_wav", "input_wav"):
            assert sf.info(tmp_path / "batch" / rec[key]).frames == int(2.3 * SR), key  # 2.3 s at the model's 8 kHz


def test_a_clip_shorter_than_the_model_minimum_is_padded_and_trimmed_back(run, tmp_path, capsys, monkeypatch):
    """0.05 s is below SmallCNN's 16 frames: the old command crashed inside torch (avg_pool2d)."""
    monkeypatch.chdir(run["root"])
    ckpt = run["root"] / "runs/demo/posthoc/interpreter.ckpt"
    clip = _wav(tmp_path / "blip.wav", 0.05)
    assert _interpret("--ckpt", ckpt, "--input", clip, "--out", tmp_path / "o", "--no_plots") == 0
    assert "shorter than the model's minimum 1921" in capsys.readouterr().err
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "o").glob("blip__*.json")]
    assert sf.info(tmp_path / "o" / rec["interpretation_wav"]).frames == 400 and rec["padded_from_samples"] == 400


def test_two_inputs_with_the_same_name_get_two_outputs(run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(run["root"])
    ckpt = run["root"] / "runs/demo/posthoc/interpreter.ckpt"
    a, b = _wav(tmp_path / "a" / "take1.wav", 0.5, seed=1), _wav(tmp_path / "b" / "take1.wav", 0.5, seed=2)
    assert _interpret("--ckpt", ckpt, "--input", a, b, "--out", tmp_path / "o", "--no_plots") == 0
    names = sorted(p.name for p in (tmp_path / "o").glob("*.json"))
    assert len(names) == 2 and names[0].startswith("a_take1__") and names[1].startswith("b_take1__")
    from experiments.interpret import unique_stems

    assert unique_stems(["x/y.wav", "x/y.wav", "z.wav"]) == ["y", "y_2", "z"]  # one file given twice
    assert unique_stems(["/d/a/z.wav", "/d/b/z.wav", "/e/b/z.wav"]) == ["a_z", "d_b_z", "e_b_z"]


# -- 3 / 7. refusals ---------------------------------------------------------------------------------------------


def test_evaluate_without_a_checkpoint_refuses(tmp_path, capsys):
    from experiments.cli import main

    assert main(["evaluate", "--config", "experiments/synthetic/posthoc.yaml", "--max_batches", "1",
                 "--out_dir", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "needs --ckpt" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e").exists()
    assert main(["evaluate", "--config", "experiments/synthetic/posthoc.yaml", "--ckpt", str(tmp_path / "nope.ckpt")]) == 2
    assert "--ckpt" in capsys.readouterr().err and not (tmp_path / "evaluation").exists()


def test_the_wrong_checkpoint_or_config_is_named_in_one_line(run, tmp_path, capsys):
    from experiments.cli import main

    root = run["root"]
    clip = _wav(tmp_path / "c.wav", 0.5)
    rc = _interpret("--ckpt", root / "runs/demo/classifier/classifier.ckpt", "--input", clip, "--out_dir", tmp_path / "o")
    err = capsys.readouterr().err
    assert rc == 2 and "this is a ClassifierModule checkpoint; l2i interpret needs a post-hoc interpreter's" in err
    assert len(err.strip().splitlines()) == 1
    # a config whose model is another size than the checkpoint's (the ESC-50 config with the demo's interpreter)
    cfg = read_config(REPO / "experiments/esc50/posthoc.yaml")  # its data file read in: the copy stands alone
    cfg["model"]["init_args"]["hidden"] = 256
    (tmp_path / "esc50.yaml").write_text(yaml.safe_dump(cfg))
    rc = _interpret("--ckpt", root / "runs/demo/posthoc/interpreter.ckpt", "--config", tmp_path / "esc50.yaml",
                    "--input", clip, "--out_dir", tmp_path / "o")
    err = capsys.readouterr().err
    assert rc == 2 and "your --config's model differs from the checkpoint's (hidden: config 256, checkpoint 16" in err
    assert "drop --config" in err and "size mismatch" not in err
    # a classifier's config with an interpreter's checkpoint: not Lightning's arbitrary-code message
    rc = main(["evaluate", "--config", "experiments/synthetic/classifier.yaml", "--ckpt",
               str(root / "runs/demo/posthoc/interpreter.ckpt"), "--out_dir", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert rc == 2 and "--config's model is lightning_modules.ClassifierModule but" in err and "PostHocInterpreterModule" in err
    assert "arbitrary code" not in err and len(err.strip().splitlines()) == 1
    # evaluate with a classifier's checkpoint
    rc = main(["evaluate", "--config", "experiments/synthetic/posthoc.yaml", "--ckpt",
               str(root / "runs/demo/classifier/classifier.ckpt"), "--out_dir", str(tmp_path / "e")])
    assert rc == 2 and "this is a ClassifierModule checkpoint; evaluate needs" in capsys.readouterr().err


def test_user_mistakes_are_one_line(run, tmp_path, capsys):
    ckpt = run["root"] / "runs/demo/posthoc/interpreter.ckpt"
    clip = _wav(tmp_path / "c.wav", 0.5)
    cases = [
        (["--ckpt", ckpt.with_name("interpeter.ckpt"), "--input", clip], f"file does not exist (did you mean {ckpt}?)"),
        (["--ckpt", ckpt, "--input", tmp_path / "c2.wav"], "no such file"),
        (["--ckpt", ckpt, "--input", tmp_path], "is a directory"),
        (["--ckpt", ckpt, "--input", clip, "--target", "cat"], "unknown class 'cat'"),
    ]
    for args, expected in cases:
        assert _interpret(*args, "--out_dir", tmp_path / "o") == 2, expected
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_an_unwritable_or_full_output_folder_is_found_before_any_work(run, tmp_path, capsys, monkeypatch):
    ckpt = run["root"] / "runs/demo/posthoc/interpreter.ckpt"
    clip = _wav(tmp_path / "c.wav", 0.5)
    (tmp_path / "file").write_text("x")
    assert _interpret("--ckpt", ckpt, "--input", clip, "--out_dir", tmp_path / "file" / "o") == 2
    assert f"--out_dir {tmp_path / 'file' / 'o'}" in capsys.readouterr().err

    class Usage:
        free = 1000

    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage)
    assert _interpret("--ckpt", ckpt, "--input", clip, "--out_dir", tmp_path / "full") == 2
    err = capsys.readouterr().err
    assert "0.0 MB free, the outputs need about" in err and str(tmp_path / "full") in err
    assert list((tmp_path / "full").iterdir()) == []


# -- 8. overrides ------------------------------------------------------------------------------------------------


def test_overrides_are_parsed_and_applied_like_fit():
    from experiments.cli import apply_overrides, split_overrides

    rest, ov = split_overrides(["--config", "c.yaml", "--data.init_args.root", "/data", "--model.init_args.threshold=0.3",
                                "--max_batches", "2"])
    assert rest == ["--config", "c.yaml", "--max_batches", "2"]
    cfg = apply_overrides({"data": {"class_path": "X", "init_args": {"root": "old", "batch_size": 4}}}, ov)
    assert cfg == {"data": {"class_path": "X", "init_args": {"root": "/data", "batch_size": 4}},
                   "model": {"init_args": {"threshold": 0.3}}}


def test_evaluate_and_interpret_take_dotted_overrides(run, tmp_path, capsys):
    from experiments.cli import main

    ckpt = run["root"] / "runs/demo/posthoc/interpreter.ckpt"
    rc = main(["evaluate", "--config", "experiments/synthetic/posthoc.yaml", "--ckpt", str(ckpt),
               "--data.init_args.num_classes", "4", "--data.init_args.sample_rate", str(SR),
               "--data.init_args.duration_s", "1.0", "--data.init_args.num_test", "6", "--data.init_args.batch_size", "6",
               "--noise_snr_db", "", "--device", "cpu", "--out_dir", str(tmp_path / "e")])
    assert rc == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "e/evaluation.json").read_text())
    assert data["results"]["clips"] == 6 and data["settings"]["overrides"]["data.init_args.num_test"] == "6"
    clip = _wav(tmp_path / "c.wav", 0.5)
    assert _interpret("--ckpt", ckpt, "--input", clip, "--out_dir", tmp_path / "o", "--no_plots",
                      "--model.init_args.threshold", "0.0") == 0
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "o").glob("*.json")]
    assert rec["threshold"] == 0.0
    assert _interpret("--ckpt", ckpt, "--input", clip, "--out_dir", tmp_path / "o", "--data.init_args.root", "/x") == 2
    assert "interpret reads no data set" in capsys.readouterr().err


# -- 9 / 11. by-design models, and what interpret says ------------------------------------------------------------


def test_interpret_takes_a_by_design_checkpoint(run, tmp_path):
    ckpt = run["root"] / "runs/demo/bydesign/bydesign.ckpt"
    clip = _wav(tmp_path / "c.wav", 0.7)
    assert _interpret("--ckpt", ckpt, "--input", clip, "--out_dir", tmp_path / "o", "--no_plots") == 0
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "o").glob("*.json")]
    model = run["bydesign"]
    x = torch.from_numpy(sf.read(clip, dtype="float32")[0])[None]
    want = model.interpret(x)
    assert rec["model"] == "bydesign" and rec["class"] == CLASSES[int(want.classes[0, 0])]
    assert rec["interpreter_agrees"] is True  # a by-design model explains its own prediction
    assert np.allclose(rec["relevance"], want.relevance[0, want.classes[0, 0]].numpy(), atol=1e-5)


def test_evaluate_scores_a_by_design_model_against_its_own_prediction(run, tmp_path, capsys, monkeypatch):
    """Its prediction is Θ(H) (bottleneck): fidelity 1 by construction. The old command stopped with
    "ByDesignModule exposes no classifier"."""
    from experiments.cli import main

    monkeypatch.chdir(run["root"])  # the training folder: the old loader needed it

    cfg = {"model": {"class_path": "lightning_modules.ByDesignModule"},
           "data": {"class_path": "datamodules.SyntheticDataModule",
                    "init_args": {"num_classes": 4, "sample_rate": SR, "duration_s": 1.0, "num_test": 8, "batch_size": 8}}}
    (tmp_path / "bydesign.yaml").write_text(yaml.safe_dump(cfg))
    rc = main(["evaluate", "--config", str(tmp_path / "bydesign.yaml"), "--ckpt", str(run["root"] / "runs/demo/bydesign/bydesign.ckpt"),
               "--noise_snr_db", "", "--device", "cpu", "--out_dir", str(tmp_path / "e")])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((tmp_path / "e/evaluation.json").read_text())["results"]
    assert res["clips"] == 8 and res["fidelity.top1"] == 1.0


def test_interpret_records_the_input_writes_it_and_warns_on_disagreement(run, tmp_path, capsys):
    module = run["posthoc"]
    clip = _wav(tmp_path / "st.wav", 0.8, rate=16000, channels=2)
    x = torch.from_numpy(sf.read(tmp_path / "st.wav", dtype="float32")[0].T.copy())
    from l2i.audio import resample

    mono = resample(x.mean(0, keepdim=True), 16000, SR)
    predicted = int(module.interpreter.classify(module.interpreter.frontend(mono))[0].argmax())
    other = (predicted + 1) % 4
    with torch.no_grad():  # Θ made to prefer another class than the classifier's
        w = module.interpreter.theta.classifier.weight
        saved = w.clone()
        w.fill_(-1.0)
        w[other] = 1.0
    try:
        ckpt = _save(module, tmp_path / "disagree.ckpt")
    finally:
        with torch.no_grad():
            module.interpreter.theta.classifier.weight.copy_(saved)
    assert _interpret("--ckpt", ckpt, "--input", clip, "--out_dir", tmp_path / "o", "--mask_mode", "share") == 0
    err = capsys.readouterr().err
    assert f"the interpreter's own prediction ({CLASSES[other]}" in err and f"classifier's it explains ({CLASSES[predicted]}" in err
    rec = json.loads((tmp_path / "o" / f"st__{CLASSES[predicted]}.json").read_text())
    assert rec["input_sample_rate"] == 16000 and rec["input_channels"] == 2 and rec["sample_rate"] == SR
    assert rec["mask_mode"] == "share" and rec["interpreter_agrees"] is False
    heard, rate = sf.read(tmp_path / "o" / rec["input_wav"], dtype="float32")
    assert rate == SR and np.allclose(heard, mono[0].numpy(), atol=1e-4)  # the resampled mono input
    assert (tmp_path / "o" / rec["png"]).is_file()


def test_windowed_mode_interprets_a_long_recording_along_its_timeline(run, tmp_path):
    ckpt = run["root"] / "runs/demo/posthoc/interpreter.ckpt"
    clip = _wav(tmp_path / "field.wav", 2.5)
    assert _interpret("--ckpt", ckpt, "--input", clip, "--out_dir", tmp_path / "o", "--window_s", "1.0") == 0
    tl = json.loads((tmp_path / "o" / "field__timeline.json").read_text())
    assert [w["start_s"] for w in tl["windows"]] == [0.0, 1.0, 2.0] and tl["windows"][-1]["end_s"] == 2.5
    for wav in tl["interpretation_wavs"].values():
        assert sf.info(tmp_path / "o" / wav).frames == int(2.5 * SR)


def test_help_lists_the_output_files_and_the_mask_mode(capsys):
    from experiments.interpret import _parser

    text = _parser().format_help()
    for word in ("<stem>__<class>.wav", "__residual.wav", "<stem>__input.wav", "__timeline.json", "--mask_mode", "--window_s"):
        assert word in text, word


# -- the Python front door, as the README prints it ------------------------------------------------------------


def _readme_snippet() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_snippet_runs_as_printed(run, tmp_path, monkeypatch):
    """The snippet names runs/demo/posthoc/interpreter.ckpt and recording.wav: both are made here."""
    code = _readme_snippet()
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "runs/demo/posthoc/interpreter.ckpt"
    target.parent.mkdir(parents=True)
    shutil.copy(run["root"] / "runs/demo/posthoc/interpreter.ckpt", target)
    _wav(tmp_path / "recording.wav", 1.5, rate=22050, channels=2)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    written = sorted(p.name for p in (tmp_path / "interpretations").iterdir())
    assert any(n.endswith("__input.wav") for n in written) and any(n.endswith(".json") for n in written)
    clip = namespace["clip"]
    assert clip.audio.shape[-1] == int(1.5 * SR) and clip.input_sample_rate == 22050 and clip.input_channels == 2


def test_the_front_door_does_not_import_lightning(run):
    import subprocess
    import sys

    code = ("import sys; from l2i import load_interpreter; import torch; "
            f"it = load_interpreter({str(run['root'] / 'runs/demo/posthoc/interpreter.ckpt')!r}); "
            "c = it.explain(torch.randn(2, 4000), sample_rate=8000); "
            "assert c.audio.shape[-1] == 4000 and c.input_channels == 2, c.audio.shape; "
            "exec('try:\\n it.explain(torch.randn(4000))\\nexcept ValueError as e:\\n assert \\'sample_rate=\\' in str(e)\\nelse:\\n raise SystemExit(3)'); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'pytorch_lightning'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
