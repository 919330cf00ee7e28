"""Hand-computable cases of every metric family of l2i.evaluation (no training; milliseconds each)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from l2i.evaluation import (
    Faithfulness,
    Fidelity,
    GroundTruth,
    MaskMetrics,
    NoiseRobustness,
    OverlapMixtures,
    add_white_noise,
    class_sources,
    complexity,
    si_sdr,
    sparseness,
    support_energy_fraction,
    tune_thresholds,
)
from l2i.evaluation.common import supports_components


# -- fidelity ---------------------------------------------------------------------------------------------
def test_fidelity_multiclass_hand_case():
    clf = torch.tensor([[5.0, 1, 0, 0], [0, 5, 1, 0], [0, 0, 5, 1], [1, 0, 0, 5]])
    interp = torch.tensor([[4.0, 3, 0, 0], [5, 4, 0, 0], [3, 2, 1, 0], [0, 0, 1, 2]])  # top1: yes, no, no, yes
    m = Fidelity("multiclass", 4, top_k=(2, 3))
    m.update(interp[:2], clf[:2])
    m.update(interp[2:], clf[2:])
    out = m.compute()
    assert out["top1"] == pytest.approx(0.5)
    assert out["top2"] == pytest.approx(0.75)  # clip 3: class 2 is third in interp
    assert out["top3"] == pytest.approx(1.0)
    perfect, inverted = Fidelity("multiclass", 4), Fidelity("multiclass", 4)
    perfect.update(clf, clf)
    inverted.update(-clf, clf)
    assert perfect.compute()["top1"] == 1.0 and inverted.compute()["top1"] == 0.0


def test_fidelity_multilabel_hand_case_and_thresholds():
    logit = lambda p: torch.logit(torch.tensor(p))  # noqa: E731
    clf = logit([[0.9, 0.1, 0.8], [0.2, 0.7, 0.1]])  # labels {0, 2}, {1}
    interp = logit([[0.6, 0.3, 0.1], [0.4, 0.9, 0.2]])  # at 0.5: {0}, {1}; at t=(.5,.5,.05): {0,2}, {1,2}
    m = Fidelity("multilabel", 3)
    m.update(interp, clf)
    out = m.compute()
    # TP=2 (0 in clip0, 1 in clip1), FN=1 (2 in clip0), FP=0 -> F1 = 4/5; accuracy 5/6; exact 1/2
    assert out["f1"] == pytest.approx(0.8)
    assert out["accuracy"] == pytest.approx(5 / 6)
    assert out["exact_match"] == pytest.approx(0.5)
    assert out["macro_f1"] == pytest.approx((1 + 1 + 0) / 3)
    m2 = Fidelity("multilabel", 3, thresholds=[0.5, 0.5, 0.05])
    m2.update(interp, clf)
    o2 = m2.compute()  # TP=3, FP=1 (2 in clip1) -> F1 = 6/7
    assert o2["f1"] == pytest.approx(6 / 7)
    with pytest.raises(ValueError, match="thresholds"):
        Fidelity("multilabel", 3, thresholds=[0.5, 0.5])


def test_tune_thresholds_recovers_a_separating_threshold():
    probs = torch.tensor([[0.30, 0.9], [0.25, 0.8], [0.10, 0.2], [0.05, 0.1]])
    labels = torch.tensor([[1, 1], [1, 1], [0, 0], [0, 0]])
    t = tune_thresholds(probs, labels)
    assert 0.10 <= float(t[0]) < 0.25 and 0.2 <= float(t[1]) < 0.8
    pred = probs > t
    assert torch.equal(pred, labels.bool())


# -- faithfulness -----------------------------------------------------------------------------------------
def test_faithfulness_hand_case():
    original = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    classes = torch.tensor([[0], [1]])
    removed = torch.tensor([[[0.0, 0.0]], [[0.0, 1.0]]])  # drops 2 and 2
    random = torch.tensor([[[1.5, 0.0]], [[0.0, 3.5]]])  # drops 0.5 and -0.5
    m = Faithfulness("multiclass")
    m.update_from_logits(original, removed, classes, random)
    out = m.compute()
    assert out["relevant_logit_drop_mean"] == pytest.approx(2.0)
    assert out["random_logit_drop_mean"] == pytest.approx(0.0)
    p0 = torch.tensor([2.0, 0.0]).softmax(0)[0]
    assert out["relevant_prob_drop_mean"] == pytest.approx(float(((p0 - 0.5) + (torch.tensor([0.0, 3.0]).softmax(0)[1] - torch.tensor([0.0, 1.0]).softmax(0)[1])) / 2), rel=1e-5)
    assert out["frac_logit_relevant_gt_random"] == 1.0 and out["frac_prob_relevant_gt_random"] == 1.0
    assert out["count"] == 2
    # an interpreter whose removal does nothing: drops 0, never above random's
    m2 = Faithfulness("multiclass")
    m2.update_from_logits(original, original[:, None], classes, random)
    assert m2.compute()["relevant_logit_drop_mean"] == 0.0
    assert m2.compute()["frac_logit_relevant_gt_random"] == 0.5  # random's -0.5 drop is below 0


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_faithfulness_padding_and_empty_never_nan():
    m = Faithfulness("multilabel")
    out = m.compute()
    assert out["count"] == 0 and all(math.isfinite(v) for v in out.values())
    classes = torch.tensor([[0, -1]])
    m.update_from_logits(torch.zeros(1, 3), torch.full((1, 2, 3), -1.0), classes)
    out = m.compute()
    assert out["count"] == 1 and out["relevant_logit_drop_mean"] == pytest.approx(1.0)
    assert "random_logit_drop_mean" not in out


def test_faithfulness_merges_like_one_run():
    """Two halves (two DDP ranks) merged give the same medians as one metric over everything."""
    drops = torch.arange(10.0)
    whole, a, b = Faithfulness(), Faithfulness(), Faithfulness()
    whole.update(drops, drops / 10)
    a.update(drops[:3], drops[:3] / 10)
    b.update(drops[3:], drops[3:] / 10)
    a.merge_state(b)
    assert a.compute() == whole.compute()


# -- L-MAC mask metrics -----------------------------------------------------------------------------------
def quantus_sparseness(a: np.ndarray) -> float:
    a = np.abs(a.ravel()).astype(np.float64)
    a = a / a.max() if a.max() > 0 else a
    a = np.sort(a + 1e-7)
    n = a.size
    return float(np.sum((2 * np.arange(1, n + 1) - n - 1) * a) / (n * np.sum(a)))


def test_sparseness_and_complexity_extremes_and_quantus_formula():
    n = 8 * 10
    uniform = torch.ones(1, 8, 10)
    one = torch.zeros(1, 8, 10)
    one[0, 3, 4] = 1.0
    assert float(sparseness(uniform)) == pytest.approx(0.0, abs=1e-6)
    assert float(sparseness(one)) == pytest.approx(1 - 1 / n, abs=1e-4)
    assert float(complexity(uniform)) == pytest.approx(math.log(n), rel=1e-6)
    assert float(complexity(one)) == pytest.approx(0.0, abs=1e-9)
    assert float(complexity(torch.zeros(1, 8, 10))) == pytest.approx(math.log(n))  # all-zero: uniform, not NaN
    r = torch.rand(3, 8, 10)
    for i in range(3):
        assert float(sparseness(r[i : i + 1])) == pytest.approx(quantus_sparseness(r[i].numpy()), rel=1e-4)
        p = (r[i] / r[i].sum()).numpy().ravel()
        assert float(complexity(r[i : i + 1])) == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-5)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_mask_metrics_hand_case():
    lg = lambda p: torch.log(torch.tensor(p))  # noqa: E731  logits whose softmax is p
    original = lg([[0.5, 0.5], [0.8, 0.2]])
    classes = torch.tensor([[0], [0]])
    masked_in = lg([[[0.75, 0.25]], [[0.4, 0.6]]])  # P_c: 0.5 -> 0.75 (gain), 0.8 -> 0.4 (drop, class flips)
    masked_out = lg([[[0.1, 0.9]], [[0.7, 0.3]]])  # FF: 0.4 and 0.1
    mask = torch.rand(2, 1, 4, 5)
    m = MaskMetrics("multiclass")
    m.update(original, masked_in, masked_out, classes, mask)
    out = m.compute()
    assert out["AI"] == pytest.approx(50.0)
    assert out["AD"] == pytest.approx(100 * (0 + 0.4 / 0.8) / 2, rel=1e-4)
    assert out["AG"] == pytest.approx(100 * (0.25 / 0.5 + 0) / 2, rel=1e-4)
    assert out["FF"] == pytest.approx(100 * (0.4 + 0.1) / 2, rel=1e-4)
    assert out["FidIn"] == pytest.approx(50.0)
    assert out["count"] == 2
    # a mask that keeps everything: no increase, no drop, FidIn 100, FF = P_c(X) - P_c(silence)
    same = MaskMetrics("multiclass")
    same.update(original, original[:, None], torch.zeros(2, 1, 2), classes, torch.ones(2, 1, 4, 5))
    o = same.compute()
    assert o["AI"] == 0 and o["AD"] == pytest.approx(0, abs=1e-5) and o["AG"] == 0 and o["FidIn"] == 100
    assert o["FF"] == pytest.approx(100 * ((0.5 - 0.5) + (0.8 - 0.5)) / 2, rel=1e-4)
    assert all(math.isfinite(v) for v in MaskMetrics().compute().values())


# -- ground truth -----------------------------------------------------------------------------------------
def test_class_sources_sums_the_sources_of_each_class():
    sources = torch.arange(3 * 4, dtype=torch.float32).reshape(1, 3, 4)
    labels = torch.tensor([[2, 0, 2]])
    out = class_sources(sources, labels, torch.tensor([[2, 0, -1]]))
    assert torch.equal(out[0, 0], sources[0, 0] + sources[0, 2])
    assert torch.equal(out[0, 1], sources[0, 1])
    assert torch.equal(out[0, 2], torch.zeros(4))
    multi = torch.tensor([[[0.0, 1, 1], [1, 0, 0], [0, 0, 1]]])  # source 0 has classes 1 and 2
    out = class_sources(sources, labels, torch.tensor([[2]]), multi)
    assert torch.equal(out[0, 0], sources[0, 0] + sources[0, 2])


def test_si_sdr_and_support_energy_extremes():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 1000, generator=g)
    n = torch.randn(2, 1000, generator=g)
    assert bool((si_sdr(3.0 * s, s) > 60).all())  # scale-invariant: perfect
    assert torch.allclose(si_sdr(s + n, s), torch.full((2,), 0.0), atol=2.0)  # ~0 dB mixture
    assert bool((si_sdr(torch.zeros_like(s), s) == -50.0).all())  # silent -> floor, not ~0 dB
    src = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    rest = torch.tensor([[[0.5, 1.0], [1.0, 1.0]]])
    ibm = (src > rest).float()
    assert float(support_energy_fraction(ibm * 3, src, rest)) == pytest.approx(1.0)  # perfect
    assert float(support_energy_fraction((1 - ibm) * 3, src, rest)) == pytest.approx(0.0)  # inverted
    assert float(support_energy_fraction(torch.ones(1, 2, 2), src, rest)) == pytest.approx(0.5)
    assert float(support_energy_fraction(torch.zeros(1, 2, 2), src, rest)) == 0.0


def _mixture_batch(sr=8000, n=8000):
    from l2i.frontend import AudioFrontEnd

    fe = AudioFrontEnd(dict(sample_rate=sr, n_fft=256, hop_length=128))
    t = torch.arange(n) / sr
    a = 0.5 * torch.sin(2 * math.pi * 440 * t)
    b = 0.3 * torch.sin(2 * math.pi * 2500 * t)
    x = (a + b)[None]
    batch = {"waveform": x, "sources": torch.stack([a, b])[None], "source_labels": torch.tensor([[0, 1]]), "target": torch.tensor([0])}
    return fe, batch


def _mask_interpretation(fe, x, mask):
    from l2i.interpreter.interpretation import Interpretation, synthesize

    feats = fe(x)
    audio, residual = synthesize(fe, mask, feats.magnitude, feats.phase, x.shape[-1])
    K = 2
    return Interpretation(
        classes=torch.tensor([[0]]), relevance=torch.zeros(1, 2, K), components=torch.zeros(1, 2, K, dtype=torch.bool),
        mask=mask, audio=audio, residual=residual, activations=torch.zeros(1, K, mask.shape[-1]),
        logits=torch.zeros(1, 2), classifier_logits=torch.zeros(1, 2), sample_rate=8000,
    )


def test_ground_truth_oracle_vs_inverted_mask():
    fe, batch = _mixture_batch()
    x = batch["waveform"]
    S = fe.stft(batch["sources"][:, 0]).abs()
    R = fe.stft(batch["sources"][:, 1]).abs()
    oracle_mask = (S > R).float()[:, None]
    res = {}
    for name, mask in (("oracle", oracle_mask), ("inverted", 1 - oracle_mask)):
        m = GroundTruth()
        m.update_from_batch(fe, batch, _mask_interpretation(fe, x, mask))
        res[name] = m.compute()
    assert res["oracle"]["all.energy_in_support_mean"] == pytest.approx(1.0)
    assert res["inverted"]["all.energy_in_support_mean"] == pytest.approx(0.0)
    assert res["oracle"]["all.interpretation_mean"] > 20 > res["oracle"]["all.mixture_mean"]
    assert res["oracle"]["all.over_mixture_mean"] > 10
    assert res["inverted"]["all.interpretation_mean"] < -20
    assert res["oracle"]["all.pairs"] == 1 and res["oracle"]["multi.pairs"] == 1  # two classes in the clip


# -- noise --------------------------------------------------------------------------------------------------
def test_white_noise_hits_the_snr():
    x = torch.randn(3, 16000) * torch.tensor([[0.1], [1.0], [3.0]])
    for snr in (0.0, 10.0, 20.0):
        noisy = add_white_noise(x, snr, torch.Generator().manual_seed(1))
        n = noisy - x
        measured = 10 * torch.log10(x.pow(2).mean(-1) / n.pow(2).mean(-1))
        assert torch.allclose(measured, torch.full((3,), snr), atol=1e-3)
    assert torch.isfinite(add_white_noise(torch.zeros(1, 100), 10.0)).all()


def test_noise_robustness_identical_and_changed_interpretations():
    rel = torch.tensor([[[1.0, 0.5, 0.1, 0.0]]])
    chosen = rel > 0.2
    valid = torch.tensor([[True]])
    agree = torch.tensor([True])
    m = NoiseRobustness(10.0)
    m.update(agree, agree, rel, rel, chosen, chosen, valid, torch.tensor([12.0]), torch.tensor([12.0]))
    out = m.compute()
    assert out["fidelity_change"] == 0 and out["relevance_change"] == 0 and out["si_sdr_change"] == 0
    assert out["chosen_kept"] == 1 and out["chosen_jaccard"] == 1 and out["relevance_chosen_clean"] == pytest.approx(0.75)
    noisy_rel = torch.tensor([[[0.4, 0.0, 1.0, 0.0]]])
    m2 = NoiseRobustness(0.0)
    m2.update(agree, ~agree, rel, noisy_rel, chosen, noisy_rel > 0.2, valid, torch.tensor([12.0]), torch.tensor([2.0]))
    o2 = m2.compute()
    assert o2["fidelity_change"] == -1.0
    assert o2["relevance_chosen_noisy"] == pytest.approx(0.2) and o2["relevance_change"] == pytest.approx(-0.55)
    assert o2["chosen_kept"] == pytest.approx(0.5) and o2["chosen_jaccard"] == pytest.approx(1 / 3)
    assert o2["si_sdr_change"] == pytest.approx(-10.0)


# -- overlap mixtures --------------------------------------------------------------------------------------
def test_overlap_mixtures_from_a_datamodule_dataset():
    from datamodules.synthetic import SyntheticDataModule

    dm = SyntheticDataModule(num_classes=4, sample_rate=8000, duration_s=1.0, num_test=12)
    ds = OverlapMixtures(dm.dataset("test"), weight=0.5, seed=3)
    assert len(ds) == 12
    for i in range(4):
        item = ds[i]
        a = dm.dataset("test")[i]
        assert item["source_labels"][0] == int(a["target"]) != item["source_labels"][1]
        assert int(item["target"]) == int(a["target"])
        assert torch.allclose(item["waveform"], item["sources"].sum(0), atol=1e-6)
        assert torch.allclose(item["sources"][0], a["waveform"])
    again = OverlapMixtures(dm.dataset("test"), weight=0.5, seed=3)[2]
    assert torch.equal(again["waveform"], ds[2]["waveform"])  # deterministic
    with pytest.raises(ValueError, match="weight"):
        OverlapMixtures(dm.dataset("test"), weight=-1)


def test_overlap_multilabel_keeps_multi_hot_sources():
    items = [{"waveform": torch.ones(10) * i, "target": torch.nn.functional.one_hot(torch.tensor(i % 3), 3).float()} for i in range(6)]
    ds = OverlapMixtures(items, weight=1.0)
    item = ds[0]
    assert item["source_targets"].shape == (2, 3)
    assert float((item["source_targets"][0] * item["source_targets"][1]).sum()) == 0  # no shared label


def test_supports_components_detects_the_keyword():
    class A:
        def interpret(self, waveform, target=None, threshold=0.2):
            ...

    class B:
        def interpret(self, waveform, target=None, threshold=0.2, **kwargs):
            ...

    assert not supports_components(A()) and supports_components(B())


def _two_class_interpretation(fe, x, masks, classes):
    from l2i.interpreter.interpretation import Interpretation, synthesize

    feats = fe(x)
    audio, residual = synthesize(fe, masks, feats.magnitude, feats.phase, x.shape[-1])
    B, K = x.shape[0], 2
    return Interpretation(
        classes=classes, relevance=torch.zeros(B, 2, K), components=torch.zeros(B, 2, K, dtype=torch.bool),
        mask=masks, audio=audio, residual=residual, activations=torch.zeros(B, K, masks.shape[-1]),
        logits=torch.zeros(B, 2), classifier_logits=torch.zeros(B, 2), sample_rate=8000,
    )


def test_ground_truth_specificity_true_vs_swapped_masks_and_the_oracle_mask():
    """Two tones, one per class: masks from each class's own source give specificity 1.0, the same masks swapped
    between the classes 0.0; the ideal ratio mask beats the mixture; one two-class clip = two multi pairs."""
    from l2i.evaluation import ideal_ratio_mask, present_classes

    fe, batch = _mixture_batch()
    x = batch["waveform"]
    classes = present_classes(batch["sources"], batch["source_labels"])
    assert classes.tolist() == [[0, 1]]
    S = fe.stft(batch["sources"][0]).abs()  # (2, F, T)
    true = torch.stack([(S[0] > S[1]).float(), (S[1] > S[0]).float()])[None]  # (1, 2, F, T)
    res = {}
    for name, masks in (("true", true), ("swapped", true.flip(1))):
        m = GroundTruth()
        m.update_from_batch(fe, batch, _two_class_interpretation(fe, x, masks, classes))
        res[name] = m.compute()
    t, s = res["true"], res["swapped"]
    assert t["multi.specificity"] == 1.0 and s["multi.specificity"] == 0.0
    assert t["all.pairs"] == t["multi.pairs"] == 2 and t["single.pairs"] == 0
    assert t["multi.better_than_mixture"] == 1.0 and s["multi.better_than_mixture"] == 0.0
    assert t["multi.other_class_median"] == pytest.approx(s["multi.interpretation_median"], abs=1e-3)
    # the oracle: well above the mixture (tones barely overlap), the same in both runs, a mask in [0, 1]
    assert t["multi.oracle_median"] > t["multi.mixture_median"] + 20
    assert t["multi.oracle_median"] == s["multi.oracle_median"]
    irm = ideal_ratio_mask(fe, x, batch["sources"], batch["source_labels"], classes)
    assert irm.shape == (1, 2, *S.shape[-2:]) and float(irm.min()) >= 0 and float(irm.max()) <= 1
    assert torch.allclose(irm.sum(1), torch.ones_like(irm.sum(1)), atol=1e-4)  # the sources add up to the mixture


def test_ground_truth_single_and_multi_clips_reported_apart():
    """A batch of a one-class clip, a two-class clip and a clip whose second source is silent (one class present):
    1 + 2 + 1 pairs, 2 single, 2 multi; padded source slots and silent sources are not classes."""
    from l2i.evaluation import present_classes
    from l2i.evaluation.ground_truth import other_class_slots

    fe, one = _mixture_batch()
    a, b = one["sources"][0]
    sources = torch.stack([torch.stack([a, torch.zeros_like(a)]), torch.stack([a, b]), torch.stack([b, torch.zeros_like(b)])])
    labels = torch.tensor([[0, -1], [0, 1], [1, 0]])
    x = sources.sum(1)
    classes = present_classes(sources, labels)
    assert classes.tolist() == [[0, -1], [0, 1], [1, -1]]
    assert other_class_slots(classes >= 0).tolist() == [[-1, -1], [1, 0], [-1, -1]]
    F_, T_ = fe.stft(x).shape[-2:]
    masks = torch.ones(3, 2, F_, T_) * (classes >= 0)[..., None, None]
    m = GroundTruth()
    m.update_from_batch(fe, {"waveform": x, "sources": sources, "source_labels": labels},
                        _two_class_interpretation(fe, x, masks, classes))
    out = m.compute()
    assert (out["all.pairs"], out["single.pairs"], out["multi.pairs"]) == (4, 2, 2)
    # an all-pass mask is the mixture: same SI-SDR as the mixture, never strictly better
    assert out["all.interpretation_median"] == pytest.approx(out["all.mixture_median"], abs=0.05)
    assert out["single.mixture_median"] > 40  # a clip of one source is its source


def test_present_classes_reads_multilabel_source_targets():
    """Multilabel sources: a source may carry several classes; silent sources carry none."""
    from l2i.evaluation import present_classes

    sources = torch.stack([torch.ones(3, 10), torch.cat([torch.ones(1, 10), torch.zeros(2, 10)])])  # (2, 3, 10)
    labels = torch.tensor([[0, 1, 2], [3, 0, 1]])
    targets = torch.zeros(2, 3, 5)
    targets[0, 0, 0] = targets[0, 0, 4] = targets[0, 1, 1] = targets[0, 2, 2] = 1
    targets[1, 0, 3] = targets[1, 1, 0] = targets[1, 2, 1] = 1  # sources 1 and 2 of clip 1 are silent
    assert present_classes(sources, labels, targets).tolist() == [[0, 1, 2, 4], [3, -1, -1, -1]]
    assert present_classes(sources, labels).tolist() == [[0, 1, 2], [3, -1, -1]]


def test_module_fidelity_metrics_keep_the_former_torchmetrics_figures():
    """The modules' logged fidelity (one definition, Fidelity) equals the torchmetrics Accuracy / F1 it replaced,
    except where they disagreed: a multilabel F1 with no positive on either side is 1, not 0."""
    import torchmetrics

    from l2i.evaluation.fidelity import fidelity_metrics

    g = torch.Generator().manual_seed(0)
    for C in (5, 2):
        a, b = torch.randn(16, C, generator=g), torch.randn(16, C, generator=g)
        m = fidelity_metrics("multiclass", C)
        m.update(a, b)
        out = m.compute()
        assert float(out["fidelity"]) == pytest.approx(float(torchmetrics.Accuracy(task="multiclass", num_classes=C)(a.softmax(-1), b.argmax(-1))))
        top = torchmetrics.Accuracy(task="multiclass", num_classes=C, top_k=min(3, C))(a.softmax(-1), b.argmax(-1))
        assert float(out["fidelity_top3"]) == pytest.approx(float(top))
    a, b = torch.randn(16, 4, generator=g), torch.randn(16, 4, generator=g)
    m = fidelity_metrics("multilabel", 4, class_threshold=0.5)
    m.update(a, b)
    out, t = m.compute(), (b.sigmoid() > 0.5).long()
    assert float(out["fidelity"]) == pytest.approx(float(torchmetrics.Accuracy(task="multilabel", num_labels=4, average="micro")(a.sigmoid(), t)))
    assert float(out["fidelity_f1"]) == pytest.approx(float(torchmetrics.F1Score(task="multilabel", num_labels=4, average="micro")(a.sigmoid(), t)))
    silent = fidelity_metrics("multilabel", 4)
    silent.update(torch.full((3, 4), -9.0), torch.full((3, 4), -9.0))
    assert float(silent.compute()["fidelity_f1"]) == 1.0  # torchmetrics gave 0 here
