"""The authors' evaluation protocol (l2i.evaluation.authors): every function on a hand-computed case, then the
driver on a tiny interpreter of each task."""

from __future__ import annotations

import math

import pytest
import torch

from l2i.evaluation.authors import (
    AUPRC_THRESHOLDS,
    class_average_counts,
    evaluate_authors_protocol,
    lmac_mixture,
    lmac_protocol_scores,
    log1p_mask_from_magnitude_mask,
    log1p_masked_magnitudes,
    median_drops,
    multilabel_fidelity_auprc,
    overlap_mixture,
    random_component_sets,
    topk_fidelity,
)


def test_eleven_thresholds_descending():
    assert len(AUPRC_THRESHOLDS) == 11 and AUPRC_THRESHOLDS[0] == 0.95 and AUPRC_THRESHOLDS[-1] == 0.05
    assert list(AUPRC_THRESHOLDS) == sorted(AUPRC_THRESHOLDS, reverse=True)


def test_multilabel_fidelity_auprc_hand_computed():
    # class 0: σ(Θ) = .92 .75 .45 .15 against f's decisions 1 0 1 0. Points (r, p) over the 11 levels:
    # .95 -> (0, 1); .9, .8 -> (.5, 1); .7-.5 -> (.5, .5); .4-.2 -> (1, 2/3); .1, .05 -> (1, .5); plus (0, 1), (1, 0).
    # area: .5 · 1 + .5 · (.5 + 2/3) / 2 = 0.791667. class 1: detected at every level with no false alarm: area 1.
    p = torch.tensor([[0.92, 0.99], [0.75, 0.01], [0.45, 0.01], [0.15, 0.01]])
    y = torch.tensor([[1, 1], [0, 0], [1, 0], [0, 0]], dtype=torch.bool)
    res = multilabel_fidelity_auprc(p, y)
    assert res["per_class"].tolist() == pytest.approx([0.791667, 1.0], abs=1e-5)
    assert res["macro_auprc"] == pytest.approx(0.895833, abs=1e-5)
    # micro: pooled counts give (1/3, 1), (2/3, 1), (2/3, 2/3), (1, .75), (1, .6):
    # area 2/3 + 1/3 · (2/3 + .75) / 2 = 0.902778; best F1 at (1, .75): 0.857143
    assert res["micro_auprc"] == pytest.approx(0.902778, abs=1e-5)
    assert res["max_micro_f1"] == pytest.approx(0.857143, abs=1e-5)
    # a class f never predicts: finite (recall 1 by the floor), never NaN
    none = multilabel_fidelity_auprc(torch.rand(5, 1), torch.zeros(5, 1, dtype=torch.bool))
    assert math.isfinite(none["macro_auprc"])
    with pytest.raises(ValueError, match="descending"):
        multilabel_fidelity_auprc(p, y, thresholds=[0.1, 0.5])


def test_topk_fidelity_hand_computed():
    f = torch.tensor([[0.0, 5.0, 0.0, 0.0, 0.0, 0.0], [9.0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 7.0]])
    theta = torch.tensor([[0.0, 5.0, 1, 2, 3, 4],   # class 1 first: top-1 hit
                          [1.0, 6, 5, 4, 3, 2],     # class 0 last: no hit at any k <= 5
                          [6.0, 5, 4, 3, 2, 2.5]])  # class 5 fifth (2.5 > 2): top-5 hit only
    assert topk_fidelity(theta, f) == {"top1": pytest.approx(1 / 3), "top3": pytest.approx(1 / 3), "top5": pytest.approx(2 / 3)}


def test_median_drops_are_numpy_medians_of_the_explained_class():
    orig = torch.tensor([[5.0, 0.0], [5.0, 0.0], [0.0, 5.0], [0.0, 5.0]])
    removed = torch.tensor([[[4.0, 0.0]], [[1.0, 0.0]], [[0.0, 3.0]], [[0.0, 2.0]]])
    classes = torch.tensor([[0], [0], [1], [1]])
    res = median_drops(orig, removed, classes, "multiclass")
    assert res["logit_drop_median"] == pytest.approx(2.5)  # drops 1, 4, 2, 3: the mean of the middle two
    probs = [torch.tensor([5.0, 0]).softmax(0)[0] - torch.tensor([a, 0]).softmax(0)[0] for a in (4.0, 1.0, 3.0, 2.0)]
    mid = sorted(float(v) for v in probs)[1:3]
    assert res["prob_drop_median"] == pytest.approx(sum(mid) / 2, abs=1e-6)
    padded = median_drops(orig[:1], torch.zeros(1, 2, 2), torch.tensor([[0, -1]]), "multilabel")
    assert padded["count"] == 1.0 and padded["logit_drop_median"] == pytest.approx(5.0)


def test_lmac_mixture_is_energy_normalised_0_8_0_2_then_divided_by_its_max():
    x1, x2 = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 2.0]])
    # units (.6, .8) and (0, 1): mix (.48, .84), divided by .84
    assert lmac_mixture(x1, x2)[0].tolist() == pytest.approx([0.48 / 0.84, 1.0])
    # the louder second clip weighs the same after normalisation
    assert torch.allclose(lmac_mixture(x1, 10 * x2), lmac_mixture(x1, x2))
    with pytest.raises(ValueError, match="same shape"):
        lmac_mixture(x1, torch.zeros(1, 3))


def test_overlap_mixture_peak_normalises_each_clip():
    x1, x2 = torch.tensor([2.0, -4.0]), torch.tensor([1.0, 0.5])
    assert overlap_mixture(x1, x2, 0.5).tolist() == pytest.approx([1.0, -0.75])
    assert overlap_mixture(torch.zeros(3), x2[:1].expand(3), 1.0).tolist() == [1.0, 1.0, 1.0]  # silence stays 0


def test_log1p_masks_round_trip_and_masked_in_out():
    torch.manual_seed(0)
    mag = torch.rand(2, 5, 4) * 3
    mag[0, 0, 0] = 0.0
    share = torch.rand(2, 1, 5, 4)
    mask = torch.expm1(share * torch.log1p(mag[:, None])) / mag[:, None].clamp_min(1e-12)
    mask[0, 0, 0, 0] = 0.0
    back = log1p_mask_from_magnitude_mask(mask, mag)
    ok = mag[:, None] > 0
    assert torch.allclose(back[ok.expand_as(back)], share[ok.expand_as(share)], atol=1e-5)
    assert back[0, 0, 0, 0] == 0.0
    m_in, m_out = log1p_masked_magnitudes(share, mag)
    V = torch.log1p(mag[:, None])
    assert torch.allclose(m_in, torch.expm1(share * V)) and torch.allclose(m_out, torch.expm1((1 - share) * V))
    # in the log1p domain, the parts do not add up to |X|: expm1(sV) + expm1((1-s)V) <= |X|
    assert bool((m_in + m_out <= mag[:, None] + 1e-5).all())


def test_lmac_protocol_scores_hand_computed():
    p, p_in, p_out = torch.tensor([0.5, 0.8]), torch.tensor([0.6, 0.4]), torch.tensor([0.1, 0.7])
    mask = torch.zeros(2, 2, 2)
    mask[0] = 1.0  # uniform: Gini ~0, entropy log 4
    mask[1, 0, 0] = 1.0  # one bin: entropy 0
    s = lmac_protocol_scores(p, p_in, p_out, torch.tensor([True, False]), mask)
    assert s["AI"].tolist() == [100.0, 0.0]
    assert s["AD"].tolist() == pytest.approx([0.0, 50.0])
    assert s["AG"].tolist() == pytest.approx([20.0, 0.0])
    assert s["FF"].tolist() == pytest.approx([0.4, 0.1])
    assert s["FidIn"].tolist() == [1.0, 0.0]
    assert s["COMP"].tolist() == pytest.approx([math.log(4), 0.0], abs=1e-5)
    assert s["SPS"][0] == pytest.approx(0.0, abs=1e-6) and s["SPS"][1] > 0.7


def test_random_sets_and_class_average_counts():
    g = torch.Generator().manual_seed(0)
    sets = random_component_sets(7, (3, 2, 20), g)
    assert sets.shape == (3, 2, 20) and (sets.sum(-1) == 7).all()
    per = random_component_sets(torch.tensor([[1, 4], [0, 20]]), (2, 2, 10), g)
    assert per.sum(-1).tolist() == [[1, 4], [0, 10]]
    chosen = torch.zeros(4, 6, dtype=torch.bool)
    chosen[0, :3] = chosen[1, :5] = chosen[2, :2] = chosen[3, :2] = True
    # class 0: (3 + 5) / 2 = 4; classes 1, 2: 2; class 3 never explained: the overall mean 3
    assert class_average_counts(chosen, torch.tensor([0, 0, 1, 2]), 4).tolist() == [4, 2, 2, 3]


# -- the driver -----------------------------------------------------------------------------------------------

FE = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32, duration_s=1.0)


def _module(task: str, num_classes: int = 4):
    from lightning_modules.classifier import ClassifierModule
    from lightning_modules.posthoc import PostHocInterpreterModule
    from l2i.dictionary import DictionaryArtifact

    torch.manual_seed(0)
    clf = ClassifierModule(backbone="small_cnn", backbone_kwargs={"channels": [4, 8, 8, 8]}, frontend=FE,
                           num_classes=num_classes, task=task).eval().requires_grad_(False)
    W = torch.rand(129, 10) + 0.01
    art = DictionaryArtifact(W=W / W.norm(dim=0), frontend=clf.frontend.config.spectral_params())
    return PostHocInterpreterModule(classifier=clf, dictionary=art, hidden=8, attention_dim=8, protocol="authors").eval(), clf


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_evaluate_authors_protocol_runs_and_reports_the_authors_keys(task):
    module, clf = _module(task)
    batches = [{"waveform": torch.randn(3, 8000) * 0.1} for _ in range(2)]
    res = evaluate_authors_protocol(module, clf, batches, task=task, num_classes=4)
    assert all(math.isfinite(v) for v in res.values())
    if task == "multiclass":
        assert {"fidelity.top1", "fidelity.top3", "fidelity.top5", "lmac.AI", "lmac.FF", "lmac.SPS"} <= set(res)
        assert res["fidelity.top1"] <= res["fidelity.top3"] <= res["fidelity.top5"]
        assert res["faithfulness.threshold"] == 0.3 and res["lmac.count"] == 6
        assert 0 <= res["lmac.FidIn"] <= 1 and -1 <= res["lmac.FF"] <= 1
    else:
        assert {"fidelity.macro_auprc", "fidelity.micro_auprc", "fidelity.max_micro_f1"} <= set(res)
        assert res["faithfulness.threshold"] == 0.1 and "faithfulness.random_count.0" in res
        assert not any(k.startswith("lmac.") for k in res)
    assert res["faithfulness.count"] >= 6
    assert "faithfulness.random_prob_drop_median" in res and "faithfulness.relevant_prob_drop_median" in res
    with pytest.raises(ValueError, match="random_count"):
        evaluate_authors_protocol(module, clf, batches, task=task, num_classes=4, random_count=0)
