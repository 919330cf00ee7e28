"""The by-design model: gradients everywhere they should go, H ≥ 0, prediction = Θ(H), a tiny run learns."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from datamodules import SyntheticDataModule
from l2i.dictionary import DictionaryArtifact
from l2i.frontend import AudioFrontEnd, FrontEndConfig
from l2i.nmf import NMF
from lightning_modules import ByDesignModule

FRONTEND = {"sample_rate": 16000, "n_fft": 512, "hop_length": 256, "n_mels": 32}
SMALL = {"channels": [8, 16, 16, 16]}


@pytest.fixture(scope="module")
def dictionary() -> DictionaryArtifact:
    """K = 24 components learnt on 48 synthetic clips (seconds)."""
    dm = SyntheticDataModule(num_classes=4, duration_s=1.0)
    ds = dm.dataset("nmf", 48)
    wav = torch.stack([ds[i]["waveform"] for i in range(len(ds))])
    fe = AudioFrontEnd(FrontEndConfig(**FRONTEND))
    V = fe.nmf_spectrogram(wav)
    result = NMF(24, sparsity=0.0, max_iter=60, seed=0).fit(V)
    return DictionaryArtifact(W=result.dictionary, frontend=fe.config.spectral_params(), meta={"n_components": 24})


def _module(dictionary, **kwargs) -> ByDesignModule:
    return ByDesignModule(dictionary=dictionary, backbone_kwargs=SMALL, frontend=FRONTEND, num_classes=4,
                          hidden=32, attention_dim=32, **kwargs)


def test_gradients_reach_backbone_psi_theta_and_finetuned_dictionary(dictionary):
    module = _module(dictionary, finetune_dictionary=True)
    module.train()
    out = module(torch.randn(3, 16000) * 0.1)
    assert bool((out.activations >= 0).all())
    assert torch.equal(out.classifier_logits, out.logits)  # the prediction is Θ(H)
    pooled_logits = module.model.theta(out.activations)[0]
    assert torch.allclose(out.logits, pooled_logits)
    module.loss_weights()  # epoch 0 weights
    from l2i.interpreter.bydesign import bydesign_losses

    losses = bydesign_losses(out, torch.tensor([0, 1, 2]), "multiclass", "bottleneck")
    assert set(losses) == {"task", "reconstruction", "sparsity"}
    sum(losses.values()).backward()
    m = module.model

    def has_grad(params):
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)

    assert has_grad(m.backbone.block1.parameters()), "backbone"
    assert has_grad(m.psi.parameters()), "Ψ"
    assert has_grad(m.theta.parameters()), "Θ"
    assert m.dictionary_param.grad is not None and m.dictionary_param.grad.abs().sum() > 0, "W"
    assert m.backbone.fc.weight.grad is None  # the unused head is frozen in bottleneck mode
    W = m.dictionary
    assert bool((W >= 0).all()) and torch.allclose(W.norm(dim=0), torch.ones(W.shape[1]), atol=1e-5)


def test_joint_mode_trains_the_head_and_agrees_through_fidelity(dictionary):
    module = _module(dictionary, variant="joint")
    out = module(torch.randn(2, 16000) * 0.1)
    assert not torch.equal(out.classifier_logits, out.logits)
    from l2i.interpreter.bydesign import bydesign_losses

    losses = bydesign_losses(out, torch.tensor([0, 3]), "multiclass", "joint")
    assert set(losses) == {"task", "fidelity", "reconstruction", "sparsity"}
    assert set(module.loss_weights()) == {"task", "fidelity", "reconstruction", "sparsity"}
    losses["task"].backward()
    assert module.model.backbone.fc.weight.grad is not None


def test_interpret_has_the_common_shapes(dictionary):
    module = _module(dictionary).eval()
    interp = module.interpret(torch.randn(2, 16000) * 0.1)
    assert interp.relevance.shape == (2, 4, 24)
    assert interp.audio.shape == (2, 1, 16000) and interp.mask.shape[:2] == (2, 1)
    assert bool((interp.mask >= 0).all()) and bool((interp.mask <= 1 + 1e-6).all())
    clf = module.as_classifier()
    assert clf(torch.zeros(1, 16000)).shape == (1, 4)
    logmel = module.frontend(torch.zeros(1, 16000)).logmel
    assert torch.allclose(clf.backbone(logmel), clf(torch.zeros(1, 16000)), atol=1e-5)


def test_mismatched_dictionary_is_refused(dictionary):
    wrong = DictionaryArtifact(W=torch.rand(513, 8), frontend=FrontEndConfig(n_fft=1024).spectral_params(), meta={})
    with pytest.raises(ValueError, match="n_fft"):
        _module(wrong)
    with pytest.raises(ValueError, match="variant"):
        _module(dictionary, variant="sideways")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["bottleneck", "joint"])
def test_tiny_run_learns_above_chance(dictionary, mode, tmp_path):
    L.seed_everything(0, workers=True)
    dm = SyntheticDataModule(num_classes=4, duration_s=1.0, num_train=320, num_val=32, num_test=96,
                             batch_size=32, distractor_prob=0.3)
    module = _module(dictionary, variant=mode, lr=3e-3, loss_weights={"reconstruction": 1.0, "sparsity": 0.0,
                                                                   "fidelity": 0.5})
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=dm)
    results = trainer.test(module, datamodule=dm, verbose=False)[0]
    assert results["test/accuracy"] >= 0.75  # chance: 0.25 (measured 0.93 with 256 clips, 3 epochs)
    assert results["test/reconstruction_loss"] < 0.5
    if mode == "joint":
        assert results["test/fidelity"] >= 0.75  # Θ(H) agrees with the jointly trained head
