"""Pure-torch parts of the interpreter: Ψ, Θ, the interpretation math, the loss schedule, the metrics.

No training here (see tests/test_posthoc.py); every test runs in well under a second.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from l2i.dictionary import DictionaryArtifact, DictionaryMismatchError
from l2i.frontend import AudioFrontEnd, FrontEndConfig
from l2i.interpreter import (
    Interpretation,
    Interpreter,
    build_interpretation,
    component_share,
    magnitude_mask,
    random_components,
    relevance_scores,
    select_classes,
)
from l2i.interpreter.posthoc import AUTHORS_ESC50_SCHEDULE, LossSchedule, PostHocInterpreter, interpreter_losses
from l2i.interpreter.psi import Psi
from l2i.interpreter.theta import Theta
from l2i.evaluation import Faithfulness, GroundTruth, class_sources, present_classes, removal_drops, si_sdr

FE = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32, duration_s=1.0)


def _dictionary(F: int = 129, K: int = 12) -> torch.Tensor:
    W = torch.rand(F, K) + 0.01
    return W / W.norm(dim=0)


def _classifier(backbone: str = "small_cnn", num_classes: int = 4, task: str = "multiclass"):
    from lightning_modules.classifier import ClassifierModule

    kwargs = {"channels": [4, 8, 8, 8]} if backbone == "small_cnn" else {"channels": [4, 4, 4, 4, 4, 8]}
    clf = ClassifierModule(backbone=backbone, backbone_kwargs=kwargs, frontend=FE, num_classes=num_classes, task=task)
    return clf.eval().requires_grad_(False)


# -- relevance, classes, components ------------------------------------------------------------------------


def test_relevance_shape_normalised_and_nan_free():
    pooled = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    theta = torch.tensor([[1.0, 1.0, 1.0], [-1.0, 0.5, 2.0]])
    r = relevance_scores(pooled, theta)
    assert r.shape == (2, 2, 3)
    assert torch.allclose(r[0, 0], torch.tensor([0.5, 1.0, 0.0]))
    assert torch.allclose(r[0, 1], torch.tensor([0.0, 1.0, 0.0]))  # negative evidence clipped
    assert torch.equal(r[1], torch.zeros(2, 3))  # no evidence: zeros, not NaN
    with pytest.raises(ValueError, match="same K"):
        relevance_scores(pooled, theta[:, :2])


def test_select_classes_multiclass_multilabel_and_padding():
    logits = torch.tensor([[2.0, -1.0, 3.0], [-3.0, -2.0, -4.0]])
    assert select_classes(logits, "multiclass").tolist() == [[2], [1]]
    # multilabel: every class above 0.5; a clip with none explains its most probable class
    assert select_classes(logits, "multilabel").tolist() == [[0, 2], [1, -1]]
    assert select_classes(logits, "multiclass", target=1).tolist() == [[1], [1]]
    assert select_classes(logits, "multilabel", target=torch.tensor([[1.0, 0, 1], [0, 0, 0]])).tolist() == [[0, 2], [-1, -1]]
    with pytest.raises(ValueError, match="out of range"):
        select_classes(logits, "multiclass", target=torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="entries for a batch"):
        select_classes(logits, "multiclass", target=torch.tensor([0, 1, 2]))


def test_component_share_gathers_the_same_as_a_loop_and_stays_in_unit_range():
    W = _dictionary(20, 9)
    H = torch.rand(3, 9, 7)
    chosen = torch.rand(3, 2, 9) > 0.6
    chosen[1, 1] = False  # an explanation with no component
    share = component_share(W, H, chosen)
    assert share.shape == (3, 2, 20, 7)
    for b in range(3):
        for c in range(2):
            S = chosen[b, c].nonzero().flatten()
            ref = (W[:, S] @ H[b, S]) / (W @ H[b] + 1e-8)
            assert torch.allclose(share[b, c], ref, atol=1e-5)
    assert float(share.min()) >= 0 and float(share.max()) <= 1
    full = component_share(W, H, torch.ones(3, 1, 9, dtype=torch.bool))
    assert torch.allclose(full, torch.ones_like(full), atol=1e-4)


def test_random_components_keep_the_count():
    chosen = torch.rand(4, 3, 10) > 0.5
    rnd = random_components(chosen, torch.Generator().manual_seed(0))
    assert torch.equal(rnd.sum(-1), chosen.sum(-1))
    assert not torch.equal(rnd, chosen)


def test_interpretation_plus_residual_reconstructs_the_input():
    fe = AudioFrontEnd(FE)
    x = torch.randn(2, 8000) * 0.1
    feats = fe(x)
    K = 12
    W = _dictionary(129, K)
    H = torch.rand(2, K, feats.nmf.shape[-1])
    pooled = H.mean(-1)
    theta = torch.randn(4, K)
    classes = torch.tensor([[1, 3], [0, -1]])
    it = build_interpretation(frontend=fe, features=feats, dictionary=W, activations=H, pooled=pooled,
                              class_weights=theta, logits=pooled @ theta.T, classes=classes, threshold=0.2)
    assert isinstance(it, Interpretation)
    assert it.relevance.shape == (2, 4, K) and it.components.dtype == torch.bool
    assert it.mask.shape == (2, 2, 129, feats.nmf.shape[-1]) and it.audio.shape == (2, 2, 8000)
    rebuilt = it.audio + it.residual
    assert float((rebuilt[0, 0] - x[0]).abs().max()) < 1e-4
    assert float((rebuilt[0, 1] - x[0]).abs().max()) < 1e-4
    assert float((rebuilt[1, 0] - x[1]).abs().max()) < 1e-4
    assert float(it.audio[1, 1].abs().max()) == 0.0  # padding slot is silent
    assert it.num_chosen[1, 1] == 0 and it.num_chosen[0, 0] == it.components[0, 1].sum()
    assert torch.isfinite(it.audio).all() and torch.isfinite(it.mask).all()


def test_magnitude_mask_modes():
    share = torch.rand(1, 1, 5, 4)
    mag = torch.rand(1, 5, 4) * 10
    mag[0, 0, 0] = 0.0  # silent bin: finite mask
    V = torch.log1p(mag)
    m = magnitude_mask(share, V, mag, "log1p")
    assert torch.isfinite(m).all() and float(m.max()) <= 1 and float(m.min()) >= 0
    assert torch.allclose((m * mag)[0, 0, 1:], torch.expm1(share * V)[0, 0, 1:], atol=1e-5)
    assert torch.equal(magnitude_mask(share, V, mag, "share"), share)
    with pytest.raises(ValueError, match="mask mode"):
        magnitude_mask(share, V, mag, "nope")


# -- Ψ and Θ ---------------------------------------------------------------------------------------------


def test_psi_handles_conv_maps_in_both_layouts_and_1d_maps():
    maps = {
        "a": torch.randn(2, 4, 8, 20),  # BCFT
        "b": torch.randn(2, 6, 10),  # 1-D, coarser time
        "c": torch.randn(2, 5),  # clip-level vector
    }
    psi = Psi({"a": 32, "b": 6, "c": 5}, n_components=7, hidden=8, conv_map_axes="BCFT")
    H = psi(maps, 50)
    assert H.shape == (2, 7, 50) and float(H.detach().min()) >= 0
    psi_t = Psi({"a": 4 * 20}, n_components=3, hidden=8, conv_map_axes="BCTF")  # (B, C, T=8, F=20)
    assert psi_t({"a": maps["a"]}, 16).shape == (2, 3, 16)
    with pytest.raises(ValueError, match="channels"):
        psi({"a": torch.randn(2, 3, 8, 20), "b": maps["b"], "c": maps["c"]}, 50)
    with pytest.raises(KeyError, match="missing"):
        psi({"a": maps["a"]}, 50)


@pytest.mark.parametrize("pooling", ["attention", "max", "mean"])
def test_theta_pooling_and_bias_free_linear(pooling):
    theta = Theta(6, 3, pooling=pooling, attention_dim=16)
    H = torch.rand(2, 6, 9)
    logits, pooled = theta(H)
    assert logits.shape == (2, 3) and pooled.shape == (2, 6)
    assert theta.classifier.bias is None
    assert torch.allclose(logits, pooled @ theta.class_weights.T, atol=1e-6)
    centred = Theta(6, 3, pooling=pooling, attention_dim=16, center=True)
    centred.load_state_dict(theta.state_dict())
    shift = centred(H)[0] - logits  # same softmax: the logits move by one constant per clip
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-5)
    assert torch.allclose(centred.class_weights.sum(0), torch.zeros(6), atol=1e-6)
    if pooling == "attention":
        a = theta.attention(H)
        assert torch.allclose(a.sum(-1), torch.ones(2))
    with pytest.raises(ValueError, match="pooling"):
        Theta(6, 3, pooling="median")


def test_theta_evidence_zeroes_the_weights_and_relevance_of_excluded_components():
    evidence = torch.tensor([False, False, True, True, True, True])  # two "noise" components
    theta = Theta(6, 3, pooling="max", center=True, evidence=evidence)
    torch.nn.init.normal_(theta.classifier.weight)
    w = theta.class_weights
    assert torch.equal(w[:, :2], torch.zeros(3, 2)) and bool((w[:, 2:] != 0).all())
    H = torch.rand(4, 6, 9)
    logits, pooled = theta(H)
    # the noise components can be as loud as they like: the logits do not move
    H2 = H.clone()
    H2[:, :2] *= 100
    assert torch.allclose(theta(H2)[0], logits, atol=1e-5)
    assert torch.equal((pooled[:, None, :] * w[None])[..., :2], torch.zeros(4, 3, 2))
    # the same weights without the mask: the logits do depend on them
    free = Theta(6, 3, pooling="max", center=True)
    free.load_state_dict(theta.state_dict())
    assert not torch.allclose(free(H2)[0], free(H)[0], atol=1e-3)
    with pytest.raises(ValueError, match="5 entries for K = 6"):
        Theta(6, 3, evidence=torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="excludes every component"):
        Theta(6, 3, evidence=torch.zeros(6, dtype=torch.bool))


def test_sparsity_loss_skips_the_components_without_evidence():
    from l2i.interpreter.posthoc import PostHocOutput, interpreter_losses

    H = torch.zeros(2, 4, 5)
    H[:, 0] = 3.0  # a loud noise component
    H[:, 2] = 1.0
    features = SimpleNamespace(nmf=torch.zeros(2, 6, 5))  # only V is read
    out = PostHocOutput(features, torch.randn(2, 3), H, torch.randn(2, 3), H.amax(-1), torch.zeros(2, 6, 5))
    assert float(interpreter_losses(out, "multiclass")["sparsity"]) == pytest.approx(1.0)  # (3 + 1) / 4
    evidence = torch.tensor([False, True, True, True])
    assert float(interpreter_losses(out, "multiclass", evidence=evidence)["sparsity"]) == pytest.approx(1 / 3)


# -- the post-hoc model, untrained ------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["small_cnn", "cnn14"])
def test_posthoc_interpreter_any_backbone_and_frozen_in_train_mode(backbone):
    clf = _classifier(backbone)
    net = PostHocInterpreter(clf.frontend, clf.backbone, _dictionary(), num_classes=4, hidden=8, attention_dim=16)
    assert len(net.layers) == 3
    net.train()
    assert not net.backbone.training and not net.frontend.training and net.psi.training
    assert all(not p.requires_grad for p in net.backbone.parameters())
    x = torch.randn(3, 8000) * 0.1
    out = net(x)
    T = out.features.nmf.shape[-1]
    assert out.activations.shape == (3, 12, T) and out.logits.shape == (3, 4)
    losses = interpreter_losses(out, "multiclass")
    assert set(losses) == {"fidelity", "reconstruction", "sparsity"} and all(torch.isfinite(v) for v in losses.values())
    # the optional L1 on Θ's (centred) class weights: the module always reports it, weighted by the schedule
    losses = net.losses(out)
    assert torch.allclose(losses["theta_sparsity"], net.theta.class_weights.abs().mean())
    losses["theta_sparsity"].backward()
    assert net.theta.classifier.weight.grad is not None and float(net.theta.classifier.weight.grad.abs().sum()) > 0
    it = net.interpret(x)
    assert isinstance(net, Interpreter)
    assert it.classes.shape == (3, 1) and it.relevance.shape == (3, 4, 12)
    assert torch.equal(it.classes[:, 0], it.classifier_logits.argmax(-1))
    assert net.psi.training  # interpret() restores the mode


def test_posthoc_interpreter_multilabel_and_clear_errors():
    clf = _classifier(task="multilabel")
    net = PostHocInterpreter(clf.frontend, clf.backbone, _dictionary(), num_classes=4, task="multilabel", hidden=8)
    out = net(torch.randn(2, 8000) * 0.1)
    assert torch.isfinite(interpreter_losses(out, "multilabel")["fidelity"])
    it = net.interpret(torch.randn(2, 8000) * 0.1, target=torch.tensor([[1, 1, 0, 1], [0, 1, 0, 0]]).bool())
    assert it.classes.tolist() == [[0, 1, 3], [1, -1, -1]]
    with pytest.raises(ValueError, match=r"dictionary W must be \(F=129"):
        PostHocInterpreter(clf.frontend, clf.backbone, _dictionary(100), num_classes=4)
    with pytest.raises(ValueError, match="outputs, num_classes"):
        PostHocInterpreter(clf.frontend, clf.backbone, _dictionary(), num_classes=5)
    with pytest.raises(KeyError, match="unknown layer"):
        PostHocInterpreter(clf.frontend, clf.backbone, _dictionary(), num_classes=4, layers=["nope"])


def test_module_refuses_a_dictionary_of_another_frontend():
    from lightning_modules.posthoc import PostHocInterpreterModule

    clf = _classifier()
    other = FrontEndConfig(**{**FE, "hop_length": 64}).spectral_params()
    art = DictionaryArtifact(W=_dictionary(), frontend=other, meta={})
    with pytest.raises(DictionaryMismatchError, match="hop_length"):
        PostHocInterpreterModule(classifier=clf, dictionary=art, hidden=8)
    with pytest.raises(ValueError, match="num_classes"):
        PostHocInterpreterModule(classifier=clf, num_classes=3,
                                 dictionary=DictionaryArtifact(W=_dictionary(), frontend=FrontEndConfig(**FE).spectral_params()))


def test_finetuned_dictionary_stays_nonnegative_and_unit_norm():
    clf = _classifier()
    net = PostHocInterpreter(clf.frontend, clf.backbone, _dictionary(), num_classes=4, hidden=8, finetune_dictionary=True)
    opt = torch.optim.Adam(net.trainable_parameters(), lr=0.5)
    x = torch.randn(2, 8000) * 0.1
    for _ in range(3):
        loss = sum(interpreter_losses(net(x), "multiclass").values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    W = net.dictionary
    assert float(W.min()) >= 0
    assert torch.allclose(W.norm(dim=0), torch.ones(W.shape[1]), atol=1e-5)
    assert net.dictionary_param.grad is not None


def test_loss_schedule_defaults_to_the_authors_esc50_schedule():
    s = LossSchedule()
    assert s.weights(0) == {"fidelity": 0.0, "reconstruction": 5.0, "sparsity": 0.0}
    assert s.weights(1) == {"fidelity": 0.5, "reconstruction": 5.0, "sparsity": 0.4}
    assert s.weights(25) == {"fidelity": 1.0, "reconstruction": 5.0, "sparsity": 0.4}
    assert LossSchedule({"fidelity": {"2": 1.0}, "sparsity": 0.1}).weights(2) == {"fidelity": 1.0, "reconstruction": 0.0, "sparsity": 0.1}
    # an optional loss is weighted only when named
    assert LossSchedule({"theta_sparsity": {1: 2.0}}).weights(0)["theta_sparsity"] == 0.0
    assert LossSchedule({"theta_sparsity": {1: 2.0}}).weights(1)["theta_sparsity"] == 2.0
    assert LossSchedule().to_dict() == AUTHORS_ESC50_SCHEDULE
    with pytest.raises(ValueError, match="unknown loss"):
        LossSchedule({"fidelty": {0: 1.0}})
    with pytest.raises(ValueError, match="finite"):
        LossSchedule({"fidelity": {0: float("nan")}})


# -- metrics ---------------------------------------------------------------------------------------------


def test_si_sdr_and_ground_truth_metric():
    ref = torch.randn(2, 1000)
    assert float(si_sdr(3 * ref, ref).min()) > 60
    noisy = ref + 0.1 * torch.randn(2, 1000)
    assert abs(float(si_sdr(noisy, ref).mean()) - 20) < 2
    assert math.isfinite(float(si_sdr(torch.zeros(1, 1000), ref[:1])))
    sources = torch.stack([ref, torch.randn(2, 1000), torch.zeros(2, 1000)], 1)  # (B=2, S=3, N)
    labels = torch.tensor([[0, 2, -1], [1, 1, -1]])
    classes = present_classes(sources, labels)
    assert classes.tolist() == [[0, 2], [1, -1]]  # clip 0: two classes present; clip 1: one (two events of it)
    refs = class_sources(sources, labels, torch.tensor([[0], [1]]))
    assert torch.allclose(refs[0, 0], ref[0]) and torch.allclose(refs[1, 0], sources[1, 0] + sources[1, 1])
    m = GroundTruth()
    est = refs[:, 0] + 0.1 * torch.randn_like(refs[:, 0])
    sdr = si_sdr(est, refs[:, 0])
    m.update(sdr, si_sdr(sources.sum(1), refs[:, 0]), torch.ones(2), si_sdr(torch.randn_like(est), refs[:, 0]),
             multi=torch.tensor([True, False]))
    res = m.compute()
    assert res["all.pairs"] == 2 and res["multi.pairs"] == 1 and res["single.pairs"] == 1
    assert res["multi.over_mixture_mean"] > 10 and res["all.better_than_random"] == 1.0


def test_faithfulness_metric():
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    removed = torch.tensor([[[0.0, 0.0]], [[0.0, 0.0]]])  # (B, C'=1, C): the class's evidence removed
    ld, pd = removal_drops(logits, removed, torch.tensor([[0], [1]]), "multiclass")
    assert torch.allclose(ld, torch.tensor([2.0, 3.0])) and torch.allclose(pd, logits.softmax(-1).amax(-1) - 0.5)
    m = Faithfulness()
    m.update(torch.tensor([0.5, 0.3]), torch.tensor([0.5, 0.3]), torch.tensor([0.1, 0.4]), torch.tensor([0.1, 0.4]))
    res = m.compute()
    assert abs(res["relevant_prob_drop_mean"] - 0.4) < 1e-6 and abs(res["frac_prob_relevant_gt_random"] - 0.5) < 1e-6
