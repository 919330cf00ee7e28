"""``l2i evaluate --protocol authors`` and ``l2i interpret --protocol authors`` on a checkpointed post-hoc
interpreter trained with the ``authors`` preset (untrained weights are enough for the contract)."""

from __future__ import annotations

import json
import math

import lightning as L
import pytest
import torch
import yaml

from l2i.dictionary import DictionaryArtifact
from lightning_modules.classifier import ClassifierModule
from lightning_modules.posthoc import PostHocInterpreterModule

pytestmark = pytest.mark.slow

SR = 8000
FRONTEND = dict(sample_rate=SR, n_fft=256, hop_length=128, n_mels=32, top_db=80.0, duration_s=1.0)


def _save(module, path) -> None:
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": L.__version__}, path)


@pytest.fixture()
def artifacts(tmp_path):
    torch.manual_seed(0)
    clf = ClassifierModule(backbone="small_cnn", backbone_kwargs={"channels": [4, 8, 8, 8]}, frontend=FRONTEND,
                           task="multiclass", num_classes=4)
    W = torch.rand(129, 12) + 0.01
    clf_path, dict_path, ckpt = tmp_path / "classifier.ckpt", tmp_path / "dictionary.pt", tmp_path / "posthoc.ckpt"
    _save(clf, clf_path)
    DictionaryArtifact(W=W / W.norm(dim=0), frontend=clf.frontend.config).save(dict_path)
    init = {"classifier_checkpoint": str(clf_path), "dictionary_path": str(dict_path), "hidden": 8, "attention_dim": 8,
            "protocol": "authors"}
    module = PostHocInterpreterModule(**init)
    with torch.no_grad():  # every class: positive evidence on 9 of the 12 components (centring keeps this)
        k, c = torch.meshgrid(torch.arange(12), torch.arange(4), indexing="xy")
        module.interpreter.theta.classifier.weight.copy_(torch.where((k + c) % 4 == 0, -3.0, 1.0))
        module.interpreter.psi.head[2].bias.fill_(0.5)  # every component active: H > 0
    _save(module, ckpt)
    config = {
        "model": {"class_path": "lightning_modules.PostHocInterpreterModule", "init_args": init},
        "data": {"class_path": "datamodules.SyntheticDataModule",
                 "init_args": {"num_classes": 4, "sample_rate": SR, "duration_s": 1.0, "num_test": 8, "batch_size": 4}},
    }
    cfg = tmp_path / "posthoc.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return {"ckpt": ckpt, "config": cfg}


def test_l2i_evaluate_protocol_authors_prints_the_authors_figures(artifacts, tmp_path, capsys):
    from experiments.evaluate import main

    out = tmp_path / "eval"
    assert main(["--config", str(artifacts["config"]), "--ckpt", str(artifacts["ckpt"]), "--noise_snr_db", "",
                 "--device", "cpu", "--protocol", "authors", "--out_dir", str(out)]) == 0
    res = json.loads((out / "evaluation.json").read_text())["results"]
    for key in ("authors.fidelity.top1", "authors.fidelity.top3", "authors.fidelity.top5",
                "authors.faithfulness.relevant_logit_drop_median", "authors.faithfulness.random_prob_drop_median",
                "authors.lmac.AI", "authors.lmac.FF", "authors.lmac.SPS", "authors.lmac.COMP", "fidelity.top1"):
        assert key in res, key
    assert all(math.isfinite(v) for v in res.values())
    assert res["authors.faithfulness.count"] == 8 and res["authors.lmac.count"] == 8
    assert res["authors.fidelity.top1"] == pytest.approx(res["fidelity.top1"])  # the same agreement, two suites
    assert "authors.lmac.AD" in capsys.readouterr().out


def test_l2i_interpret_protocol_authors_caps_at_five_components(artifacts, tmp_path):
    import soundfile as sf

    from experiments.interpret import main

    wav = tmp_path / "clip.wav"
    sf.write(wav, (torch.randn(SR) * 0.1).numpy(), SR)
    out = tmp_path / "out"
    # τ = 0: every component with positive relevance is above it; the preset keeps the top 5
    assert main(["--ckpt", str(artifacts["ckpt"]), "--input", str(wav), "--out", str(out), "--threshold", "0.0",
                 "--no_plots", "--protocol", "authors"]) == 0
    rec = json.loads(next(out.glob("*.json")).read_text())
    positive = sum(1 for r in rec["relevance"] if r > 0)
    assert len(rec["chosen_components"]) == min(5, positive) and positive > 5
    assert main(["--ckpt", str(artifacts["ckpt"]), "--input", str(wav), "--out", str(out / "all"), "--threshold", "0.0",
                 "--no_plots", "--top_k", "0"]) == 0
    rec = json.loads(next((out / "all").glob("*.json")).read_text())
    assert len(rec["chosen_components"]) == positive
