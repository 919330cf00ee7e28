"""``l2i evaluate --config … --ckpt …``: one JSON + one markdown table for a checkpointed interpreter."""

from __future__ import annotations

import json
import math

import lightning as L
import pytest
import torch
import yaml
from torch import nn

from l2i.interpreter.interpretation import build_interpretation, select_classes
from lightning_modules.classifier import ClassifierModule
from evaluation_helpers import NUM_CLASSES, SR, dictionary, one_thread, trained_classifier

pytestmark = pytest.mark.slow


class CheckpointedNMFInterpreter(L.LightningModule):
    """A minimal checkpointable interpreter: H = relu(Wᵀ V), Θ = mean pooling + bias-free linear (untrained)."""

    def __init__(self, classifier_checkpoint: str, n_components: int = 24, threshold: float = 0.2):
        super().__init__()
        self.save_hyperparameters()
        self.classifier = ClassifierModule.load_frozen(classifier_checkpoint)
        self.task, self.num_classes = self.classifier.task, self.classifier.num_classes
        self.register_buffer("W", torch.rand(self.classifier.frontend.config.n_freq, n_components))
        self.theta = nn.Linear(n_components, self.num_classes, bias=False)

    @torch.no_grad()
    def interpret(self, waveform, target=None, threshold=None, components=None):
        fe = self.classifier.frontend
        feats = fe(waveform)
        H = torch.einsum("fk,bft->bkt", self.W, feats.nmf).clamp_min(0)
        pooled = H.mean(-1)
        clf_logits = self.classifier(waveform)
        return build_interpretation(
            frontend=fe, features=feats, dictionary=self.W, activations=H, pooled=pooled,
            class_weights=self.theta.weight, logits=self.theta(pooled), classes=select_classes(clf_logits, self.task, target),
            classifier_logits=clf_logits, threshold=self.hparams.threshold if threshold is None else threshold,
            components=components,
        )


def _lightning_checkpoint(module, path) -> None:
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": L.__version__}, path)


def test_l2i_evaluate_writes_json_and_markdown(tmp_path):
    from experiments.cli import main

    clf_path = tmp_path / "classifier.ckpt"
    _lightning_checkpoint(trained_classifier(), clf_path)
    interp = CheckpointedNMFInterpreter(str(clf_path))
    interp.W.copy_(dictionary())
    ckpt = tmp_path / "interpreter.ckpt"
    _lightning_checkpoint(interp, ckpt)
    config = {
        "model": {"class_path": "test_evaluation_cli.CheckpointedNMFInterpreter", "init_args": {"classifier_checkpoint": str(clf_path)}},
        "data": {"class_path": "datamodules.SyntheticDataModule",
                 "init_args": {"num_classes": NUM_CLASSES, "sample_rate": SR, "duration_s": 1.0, "num_test": 16, "batch_size": 8}},
    }
    cfg = tmp_path / "posthoc.yaml"
    cfg.write_text(yaml.safe_dump(config))
    out = tmp_path / "eval"
    with one_thread():
        rc = main(["evaluate", "--config", str(cfg), "--ckpt", str(ckpt), "--noise_snr_db", "10", "--overlap", "1.0",
                   "--max_batches", "1", "--device", "cpu", "--out_dir", str(out)])
    assert rc == 0
    data = json.loads((out / "evaluation.json").read_text())
    res = data["results"]
    for key in ("fidelity.top1", "faithfulness.frac_prob_relevant_gt_random", "lmac.FidIn", "ground_truth.all.interpretation_mean",
                "noise_10dB.relevance_change", "overlap.ground_truth.all.mixture_mean", "overlap.fidelity.top1"):
        assert key in res, key
    assert all(math.isfinite(v) for v in res.values())
    assert res["clips"] == 8 and res["threshold"] == 0.2 and data["settings"]["overlap"] == 1.0
    md = (out / "evaluation.md").read_text()
    assert md.count("\n| `") == len(res) and "ground_truth" in md
    # the ground-truth report opens the page as one table, for the clips and for the overlap mixtures
    assert md.index("## ground truth: SI-SDR") < md.index("## ground truth on overlap") < md.index("| metric |")
    assert "| ideal ratio mask (oracle) |" in md and "| specificity:" in md and "| (clip, class present) pairs |" in md

    # the same as a pipeline stage: the figures land in the demo report with their descriptions
    from experiments.pipeline import PipelineContext, write_report
    from experiments.stages.evaluation import evaluation_stage

    ctx = PipelineContext(out_dir=tmp_path / "demo", artifacts={"interpreter": str(ckpt)})
    with one_thread():
        figures = evaluation_stage(ctx, {"config": str(cfg), "max_batches": 1, "noise_snr_db": [10.0], "overlap": None, "device": "cpu"})
    assert figures["fidelity.top1"] == res["fidelity.top1"] and "overlap.fidelity.top1" not in figures
    ctx.report.update({f"evaluation.{k}": v for k, v in figures.items()})
    _, report = write_report(ctx)
    assert "`evaluation.lmac.FF`" in report.read_text() and (tmp_path / "demo" / "evaluation" / "evaluation.md").is_file()
    assert "L-MAC" in ctx.descriptions["evaluation.lmac.FF"]


def test_l2i_evaluate_refuses_a_config_without_model(tmp_path, capsys):
    from experiments.evaluate import main

    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"class_path": "datamodules.SyntheticDataModule"}}))
    assert main(["--config", str(cfg), "--ckpt", str(tmp_path / "x.ckpt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "'model' section" in err and len(err.splitlines()) == 1, err


def test_l2i_evaluate_a_posthoc_interpreter_checkpoint(tmp_path):
    """The real PostHocInterpreterModule (untrained Ψ/Θ is enough for the contract), loaded from its checkpoint
    with the classifier and dictionary named by path, as `l2i fit --config experiments/synthetic/posthoc.yaml` saves it."""
    from experiments.evaluate import main
    from l2i.dictionary import DictionaryArtifact
    from lightning_modules.posthoc import PostHocInterpreterModule

    clf = trained_classifier()
    clf_path, dict_path, ckpt = tmp_path / "classifier.ckpt", tmp_path / "dictionary.pt", tmp_path / "posthoc.ckpt"
    _lightning_checkpoint(clf, clf_path)
    DictionaryArtifact(W=dictionary(), frontend=clf.frontend.config).save(dict_path)
    init = {"classifier_checkpoint": str(clf_path), "dictionary_path": str(dict_path), "layers": ["block2", "block3", "block4"], "hidden": 16}
    _lightning_checkpoint(PostHocInterpreterModule(**init), ckpt)
    config = {
        "model": {"class_path": "lightning_modules.PostHocInterpreterModule", "init_args": init},
        "data": {"class_path": "datamodules.SyntheticDataModule",
                 "init_args": {"num_classes": NUM_CLASSES, "sample_rate": SR, "duration_s": 1.0, "num_test": 8, "batch_size": 8}},
    }
    cfg = tmp_path / "posthoc.yaml"
    cfg.write_text(yaml.safe_dump(config))
    with one_thread():
        assert main(["--config", str(cfg), "--ckpt", str(ckpt), "--noise_snr_db", "", "--device", "cpu", "--out_dir", str(tmp_path / "e")]) == 0
    res = json.loads((tmp_path / "e" / "evaluation.json").read_text())["results"]
    assert res["clips"] == 8 and res["random_baseline"] == 1.0 and "ground_truth.all.random_mean" in res
    assert all(math.isfinite(v) for v in res.values())


def test_l2i_evaluate_multilabel_with_tuned_thresholds(tmp_path):
    from experiments.evaluate import main
    from evaluation_helpers import FRONTEND

    torch.manual_seed(0)
    clf = ClassifierModule(backbone="small_cnn", backbone_kwargs={"channels": [4, 8, 8, 16]}, frontend=FRONTEND,
                           task="multilabel", num_classes=NUM_CLASSES)
    clf_path, ckpt = tmp_path / "classifier.ckpt", tmp_path / "interpreter.ckpt"
    _lightning_checkpoint(clf, clf_path)
    interp = CheckpointedNMFInterpreter(str(clf_path))
    interp.W.copy_(dictionary())
    _lightning_checkpoint(interp, ckpt)
    config = {
        "model": {"class_path": "test_evaluation_cli.CheckpointedNMFInterpreter", "init_args": {"classifier_checkpoint": str(clf_path)}},
        "data": {"class_path": "datamodules.SyntheticDataModule",
                 "init_args": {"mode": "multilabel", "num_classes": NUM_CLASSES, "sample_rate": SR, "duration_s": 1.0,
                               "num_val": 8, "num_test": 8, "batch_size": 8}},
    }
    cfg = tmp_path / "ml.yaml"
    cfg.write_text(yaml.safe_dump(config))
    with one_thread():
        assert main(["--config", str(cfg), "--ckpt", str(ckpt), "--noise_snr_db", "", "--tune_thresholds", "true",
                     "--classifier_thresholds", "0.5", "--device", "cpu", "--out_dir", str(tmp_path / "e")]) == 0
    res = json.loads((tmp_path / "e" / "evaluation.json").read_text())["results"]
    assert {f"tuned_threshold.{c}" for c in range(NUM_CLASSES)} <= res.keys()
    assert "fidelity.f1" in res and all(math.isfinite(v) for v in res.values())
