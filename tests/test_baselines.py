"""Baseline interpreters: every interpreter honours the one verb and its shape contract; the pieces of
the baselines (mel -> linear mapping, masks, oracle selection, L-MAC loss) do what their docstrings say.

Tiny untrained models on 1 s clips at 8 kHz: seconds on a 2-core CPU.
"""

from __future__ import annotations

import pytest
import torch

from datamodules import SyntheticDataModule
from l2i.baselines import (
    AllComponents,
    LMACInterpreter,
    OracleComponents,
    RandomComponents,
    attribution_mask,
    build_baseline,
    mel_to_linear_matrix,
    oracle_components,
)
from l2i.dictionary import DictionaryArtifact
from l2i.evaluation import si_sdr
from l2i.frontend import AudioFrontEnd, FrontEndConfig
from l2i.interpreter import Interpretation, Interpreter
from l2i.nmf import NMF
from lightning_modules import ByDesignModule, ClassifierModule, PostHocInterpreterModule

FE = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32, top_db=80.0)
C, K, N = 4, 12, 8000
SMALL = {"channels": [4, 8, 8, 8]}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    dm = SyntheticDataModule(num_classes=C, sample_rate=8000, duration_s=1.0, distractor_prob=0.8, seed=0)
    nmf_clips = dm.dataset("nmf", 16)
    fe = AudioFrontEnd(FrontEndConfig(**FE))
    V = fe.nmf_spectrogram(torch.stack([nmf_clips[i]["waveform"] for i in range(len(nmf_clips))]))
    art = DictionaryArtifact(W=NMF(K, max_iter=20, seed=0).fit(V).dictionary, frontend=fe.config.spectral_params(), meta={})
    clf = ClassifierModule(backbone_kwargs=SMALL, frontend=FE, num_classes=C).eval()
    clf.requires_grad_(False)
    posthoc = PostHocInterpreterModule(classifier=clf, dictionary=art, hidden=8, attention_dim=8).eval()
    bydesign = ByDesignModule(dictionary=art, backbone_kwargs=SMALL, frontend=FE, num_classes=C, hidden=8, attention_dim=8).eval()
    test = dm.dataset("test", 3)
    batch = {k: torch.stack([test[i][k] for i in range(3)]) for k in ("waveform", "target", "sources", "source_labels")}
    interpreters = {"posthoc": posthoc, "bydesign": bydesign}
    for name, kw in (("saliency", {}), ("integrated_gradients", {"n_steps": 2}), ("gradcam", {"layer": "block3"}),
                     ("occlusion", {"patch": (16, 16)})):
        interpreters[name] = build_baseline(name, classifier=clf, **kw)
    interpreters["lmac"] = LMACInterpreter(clf.frontend, clf.backbone, "multiclass", C, hidden=8)
    interpreters["random_components"] = RandomComponents(posthoc, seed=0)
    interpreters["all_components"] = AllComponents(posthoc)
    oracle = OracleComponents(posthoc)
    oracle.observe(batch)
    interpreters["oracle_components"] = oracle
    irm = build_baseline("ideal_ratio_mask", classifier=clf)
    irm.observe(batch)
    interpreters["ideal_ratio_mask"] = irm
    return {"clf": clf, "posthoc": posthoc, "interpreters": interpreters, "batch": batch}


COMPONENT_FREE = {"saliency", "integrated_gradients", "gradcam", "occlusion", "lmac", "ideal_ratio_mask"}


@pytest.mark.parametrize("name", ["posthoc", "bydesign", "saliency", "integrated_gradients", "gradcam", "occlusion",
                                  "lmac", "random_components", "all_components", "oracle_components", "ideal_ratio_mask"])
def test_every_interpreter_has_the_same_api_and_shapes(models, name):
    interp = models["interpreters"][name]
    x = models["batch"]["waveform"]
    B = x.shape[0]
    assert isinstance(interp, Interpreter)
    F, T = FE["n_fft"] // 2 + 1, N // FE["hop_length"] + 1
    padded = torch.tensor([[1, -1], [0, 2], [3, -1]])  # (B, C') with -1 padding, as multilabel explanations come
    for target, Cp in ((None, 1), (models["batch"]["target"], 1), (2, 1), (padded, 2)):
        out = interp.interpret(x, target=target, threshold=0.2)
        assert isinstance(out, Interpretation)
        k = 0 if name in COMPONENT_FREE else K
        assert out.classes.shape == (B, Cp) and out.classes.dtype == torch.long
        assert out.relevance.shape == (B, C, k) and out.components.shape == (B, C, k)
        assert out.components.dtype == torch.bool
        assert out.mask.shape == (B, Cp, F, T)
        assert out.audio.shape == (B, Cp, N) and out.residual.shape == (B, Cp, N)
        assert out.activations.shape[:2] == (B, k)
        assert out.logits.shape == (B, C)
        assert out.sample_rate == FE["sample_rate"]
        for field in ("relevance", "mask", "audio", "residual", "logits"):
            assert bool(torch.isfinite(getattr(out, field)).all()), f"{name}: {field} not finite"
        assert float(out.mask.min()) >= 0.0 and float(out.mask.max()) <= 1.0 + 1e-6
        if target is not None and not isinstance(target, int):
            expected = target if target.dim() == 2 else target[:, None]
            assert torch.equal(out.classes, expected)
        pad = out.classes < 0
        assert float(out.mask[pad].abs().sum()) == 0.0 and float(out.audio[pad].abs().sum()) == 0.0


def test_audio_plus_residual_is_the_input(models):
    x = models["batch"]["waveform"]
    for name in ("saliency", "lmac", "random_components"):
        out = models["interpreters"][name].interpret(x)
        total = (out.audio + out.residual)[:, 0]
        assert torch.allclose(total[:, 256:-256], x[:, 256:-256], atol=1e-4), name


def test_all_components_give_back_the_input(models):
    x = models["batch"]["waveform"]
    out = models["interpreters"]["all_components"].interpret(x)
    assert bool(out.components.all())
    assert float(si_sdr(out.audio[:, 0], x).min()) > 30.0


def test_random_components_match_the_count_and_are_reproducible(models):
    posthoc, x = models["posthoc"], models["batch"]["waveform"]
    ref = posthoc.interpret(x, threshold=0.1)
    a = RandomComponents(posthoc, seed=3).interpret(x, threshold=0.1)
    b = RandomComponents(posthoc, seed=3).interpret(x, threshold=0.1)
    assert torch.equal(a.components.sum(-1), ref.components.sum(-1))
    assert torch.equal(a.components, b.components) and torch.equal(a.audio, b.audio)
    # among the clip's active components only (the harder null model); same counts
    act = RandomComponents(posthoc, seed=3, among="active").interpret(x, threshold=0.1)
    assert torch.equal(act.components.sum(-1), ref.components.sum(-1))
    active = posthoc.interpreter(x).pooled > 0  # (B, K)
    n_active = active.sum(-1, keepdim=True)
    inside = (act.components & active[:, None, :]).sum(-1)
    assert torch.equal(inside, torch.minimum(act.components.sum(-1), n_active)), "drew a silent component first"
    with pytest.raises(ValueError, match="among must be"):
        RandomComponents(posthoc, among="loud")


def test_random_components_among_an_eligible_set():
    from l2i.interpreter.interpretation import random_components

    chosen = torch.tensor([[True, True, False, False, False, False]])
    among = torch.tensor([[False, False, False, True, True, True]])
    for seed in range(5):
        got = random_components(chosen, torch.Generator().manual_seed(seed), among)
        assert int(got.sum()) == 2 and not bool((got & ~among).any())
    few = torch.tensor([[False, False, False, False, False, True]])  # one eligible, two to draw: tops up
    got = random_components(chosen, torch.Generator().manual_seed(0), few)
    assert int(got.sum()) == 2 and bool(got[0, 5])


def test_oracle_selection_keeps_the_components_inside_the_source():
    # two components on disjoint frequency bands; the source owns the band of component 0
    W = torch.zeros(6, 2)
    W[:3, 0], W[3:, 1] = 1.0, 1.0
    H = torch.ones(1, 2, 5)
    V = torch.einsum("fk,bkt->bft", W, H)
    src = torch.zeros(1, 1, 6, 5)
    src[..., :3, :] = 2.0
    rest = torch.zeros(1, 1, 6, 5)
    rest[..., 3:, :] = 2.0
    chosen = oracle_components(W, H, V, src, rest)
    assert chosen.tolist() == [[[True, False]]]


def test_oracle_beats_random_against_the_true_source(models):
    batch = models["batch"]
    oracle = models["interpreters"]["oracle_components"]
    oracle.observe(batch)
    out = oracle.interpret(batch["waveform"], target=batch["target"])
    rnd = RandomComponents(models["posthoc"], seed=0).interpret(batch["waveform"], target=batch["target"])
    from l2i.evaluation import class_sources

    src = class_sources(batch["sources"], batch["source_labels"], out.classes)[:, 0]
    assert float(si_sdr(out.audio[:, 0], src).mean()) > float(si_sdr(rnd.audio[:, 0], src).mean())


def test_oracle_without_sources_is_refused_clearly(models):
    oracle = OracleComponents(models["posthoc"])
    with pytest.raises(ValueError, match="sources"):
        oracle.interpret(models["batch"]["waveform"])


def test_mel_to_linear_and_attribution_masks():
    fb = AudioFrontEnd(FrontEndConfig(**FE)).mel_fbanks
    P = mel_to_linear_matrix(fb, "transpose")
    covered = fb.sum(-1) > 0
    assert torch.allclose(P.sum(-1)[covered], torch.ones(int(covered.sum())), atol=1e-5)
    pinv = mel_to_linear_matrix(fb, "pinv")
    mel = torch.rand(FE["n_mels"], 7)
    assert torch.allclose(fb.t() @ (pinv @ mel), mel, atol=1e-3)  # a right inverse of the mel projection
    attr = torch.randn(2, 1, FE["n_mels"], 7)
    attr[1] = 0.0  # no evidence at all: an all-zero mask, never NaN
    soft = attribution_mask(attr, P, "soft")
    assert soft.shape == (2, 1, fb.shape[0], 7) and float(soft.max()) <= 1.0 and float(soft[1].abs().sum()) == 0.0
    hard = attribution_mask(attr, pinv, "threshold", threshold=0.3)
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="mel_to_linear"):
        mel_to_linear_matrix(fb, "inverse")


def test_lmac_loss_trains_the_decoder_only(models):
    lmac = models["interpreters"]["lmac"]
    lmac.train()
    losses = lmac.losses(models["batch"]["waveform"])
    assert set(losses) >= {"loss", "in", "out", "l1", "tv", "fid_in", "mask_mean"}
    assert all(bool(torch.isfinite(v)) for v in losses.values())
    losses["loss"].backward()
    assert all(p.grad is not None for p in lmac.trainable_parameters())
    assert all(p.grad is None for p in lmac.backbone.parameters())
    assert not lmac.backbone.training  # the classifier stays in eval mode
    lmac.decoder.zero_grad()
    lmac.eval()


def test_bad_settings_are_named(models):
    clf = models["clf"]
    with pytest.raises(ValueError, match="layer 'nope'"):
        build_baseline("gradcam", classifier=clf, layer="nope")
    with pytest.raises(ValueError, match="unknown baseline"):
        build_baseline("lime", classifier=clf)
    with pytest.raises(ValueError, match="post-hoc"):
        build_baseline("random_components", classifier=clf)
    with pytest.raises(ValueError, match="threshold"):
        models["interpreters"]["saliency"].interpret(models["batch"]["waveform"], threshold=1.5)


def test_ideal_ratio_mask_is_the_reports_oracle_and_needs_sources(models):
    """The IdealRatioMask interpreter gives exactly the ground-truth report's oracle estimate (one definition),
    beats the mixture on every sounding class, and refuses clips whose sources it was not given."""
    from l2i.evaluation import class_sources, ideal_ratio_mask, present_classes

    batch = models["batch"]
    irm = models["interpreters"]["ideal_ratio_mask"]
    x = batch["waveform"]
    classes = present_classes(batch["sources"], batch["source_labels"])
    out = irm.interpret(x, target=classes)
    fe = models["clf"].frontend
    mask = ideal_ratio_mask(fe, x, batch["sources"], batch["source_labels"], classes)
    assert torch.allclose(out.mask, mask)
    src = class_sources(batch["sources"], batch["source_labels"], classes)
    ok = classes >= 0
    assert bool((si_sdr(out.audio, src)[ok] > si_sdr(x[:, None].expand_as(src), src)[ok]).all())
    with pytest.raises(ValueError, match="sources"):
        irm.interpret(x + 0.01)
