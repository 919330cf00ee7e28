"""The official SONYC-UST (DCASE 2020 task 5) metric against hand computations and a per-threshold loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from l2i.metrics.sonyc import DEFAULT_TAXONOMY, SONYCTaxonomy, SONYCUSTMetric, dcase_ust_scores, group_counts

TWO_GROUPS = SONYCTaxonomy(coarse={1: "a", 2: "b"}, fine={1: {1: "a1"}, 2: {1: "b1"}})
ONE_GROUP_X = SONYCTaxonomy(coarse={1: "engine"}, fine={1: {1: "small", 2: "medium", "X": "uncertain"}})


def test_coarse_hand_computation():
    """Two coarse tags, four clips, every number below worked out by hand.

    Tag A: preds .9 .6 .3 .005, truth 1 0 1 0 -> thresholds (descending) 1.0 .9 .6 .3 (.005 < 0.01 dropped)
      TP/FP/FN: (0,0,2) (1,0,1) (1,1,1) (2,1,0) -> P 0 1 .5 2/3, R 0 .5 .5 1
      curve (0,1) (0,0) (.5,1) (.5,.5) (1,2/3) (1,0): area .25 + .5*(.5+2/3)/2 = 13/24
    Tag B: preds .2 .8 .8 .4, truth 0 1 0 0 -> thresholds 1.0 .8 .4 .2
      (0,0,1) (1,1,0) (1,2,0) (1,3,0) -> P 0 .5 1/3 .25, R 0 1 1 1: area (0->1) with P .5 = .25
    macro = (13/24 + 1/4) / 2 = 19/48
    micro: thresholds .2 .3 .4 .6 .8 .9 1.0, each group at its smallest threshold >= t:
      (3,4,0) (3,3,0) (2,3,1) (2,2,1) (2,1,1) (1,0,2) (0,0,3)
      R 1 1 2/3 2/3 2/3 1/3 0, P 3/7 .5 .4 .5 2/3 1 0; sorted by recall (ties in table order):
      (0,1) (0,0) (1/3,1) (2/3,.4) (2/3,.5) (2/3,2/3) (1,3/7) (1,.5) (1,0)
      area 1/6 + (1/3)(1+.4)/2 + (1/3)(2/3+3/7)/2 = 367/630
    micro-F1 at the first threshold >= .5 (t=.6): P .5, R 2/3 -> 4/7
    """
    preds = torch.tensor([[0.9, 0.2], [0.6, 0.8], [0.3, 0.8], [0.005, 0.4]])
    target = torch.tensor([[1, 0], [0, 1], [1, 0], [0, 0]])
    m = SONYCUSTMetric(level="coarse", taxonomy=TWO_GROUPS, classwise=True)
    m.update(preds[:2], target[:2])
    m.update(preds[2:], target[2:])  # accumulated over batches
    out = m.compute()
    assert out["auprc/1_a"].item() == pytest.approx(13 / 24, abs=1e-6)
    assert out["auprc/2_b"].item() == pytest.approx(1 / 4, abs=1e-6)
    assert out["macro_auprc"].item() == pytest.approx(19 / 48, abs=1e-6)
    assert out["micro_auprc"].item() == pytest.approx(367 / 630, abs=1e-6)
    assert out["micro_f1"].item() == pytest.approx(4 / 7, abs=1e-6)
    thr, tp, fp, fn = group_counts(preds[:, :1].numpy(), target[:, :1].numpy())
    assert thr.tolist() == pytest.approx([1.0, 0.9, 0.6, 0.3])
    assert (tp.tolist(), fp.tolist(), fn.tolist()) == ([0, 1, 1, 2], [0, 0, 1, 1], [2, 1, 1, 0])


def test_fine_hand_computation_with_x_tag():
    """One coarse group: complete tags a, b and the incomplete tag X (order a, b, X). Four clips:

      clip 0: truth a        preds a .8  b .3  X .1
      clip 1: truth X        preds a .2  b .6  X .4   (X truth: counted coarsely)
      clip 2: truth -        preds a .1  b .05 X .7   (X predicted, nothing true: one coarse FP)
      clip 3: truth b + X    preds a .9  b .2  X .5

    thresholds (descending, from a and b only): 1.0 .9 .8 .6 .3 .2 .1 .05. At t = .6 for instance:
      clip 0: a hit (TP); clip 1: truth X, coarsened prediction on, no complete hit -> TP;
      clip 2: X predicted, not all complete tags predicted -> FP; clip 3: b missed (FN), truth holds X and
      the coarsened prediction is on without a complete hit -> TP.  => (TP, FP, FN) = (3, 1, 1)
    Full table: TP 0 1 2 3 3 3 3 3, FP 0 0 0 1 2 2 3 3, FN 3 3 2 1 1 0 0 0
      -> P 0 1 1 .75 .6 .6 .5 .5, R 0 .25 .5 .75 .75 1 1 1
    group AUPRC (table order: thresholds descending): .125 + .25 + .25(1+.75)/2 + .25(.6+.6)/2 = 0.74375
    micro AUPRC (same points, table in ascending threshold order, so the tie at R=.75 enters at P .6 and
      leaves at .75, and R=1 is entered at .5): .125 + .25 + .25(1+.6)/2 + .25(.75+.5)/2 = 0.73125
    micro-F1 at t=.6: 2 / (1/.75 + 1/.75) = .75
    """
    preds = torch.tensor([[0.8, 0.3, 0.1], [0.2, 0.6, 0.4], [0.1, 0.05, 0.7], [0.9, 0.2, 0.5]])
    target = torch.tensor([[1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 1, 1]])
    thr, tp, fp, fn = group_counts(preds[:, :2].numpy(), target[:, :2].numpy(), preds[:, 2].numpy(), target[:, 2].numpy())
    assert thr.tolist() == pytest.approx([1.0, 0.9, 0.8, 0.6, 0.3, 0.2, 0.1, 0.05])
    assert tp.tolist() == [0, 1, 2, 3, 3, 3, 3, 3]
    assert fp.tolist() == [0, 0, 0, 1, 2, 2, 3, 3]
    assert fn.tolist() == [3, 3, 2, 1, 1, 0, 0, 0]
    m = SONYCUSTMetric(level="fine", taxonomy=ONE_GROUP_X)
    m.update(preds, target)
    out = m.compute()
    assert out["macro_auprc"].item() == pytest.approx(0.74375, abs=1e-6)
    assert out["micro_auprc"].item() == pytest.approx(0.73125, abs=1e-6)
    assert out["micro_f1"].item() == pytest.approx(0.75, abs=1e-6)
    # the same with target given as complete tags + target_x, and without X predictions (counted as 0)
    m2 = SONYCUSTMetric(level="fine", taxonomy=ONE_GROUP_X)
    m2.update(preds, target[:, :2], target_x=target[:, 2:])
    assert m2.compute()["macro_auprc"].item() == pytest.approx(0.74375, abs=1e-6)


def _loop_counts(P, Y, px, yx, min_threshold=0.01):
    """The baseline's rules written as a plain per-threshold loop of boolean array operations."""
    values = np.sort(P.ravel())
    thresholds = np.unique(np.append(values[np.searchsorted(values, min_threshold):], 1.0))[::-1]
    rows = []
    for t in thresholds:
        Yp, xp = P >= t, px >= t
        tp_c = (Y & Yp).sum()
        fp_c = (~Y & Yp & ~yx[:, None]).sum()
        fn_c = (Y & ~Yp).sum()
        pred_coarse = Yp.any(1) | xp
        tp_i = (yx & pred_coarse & ~(Y & Yp).any(1)).sum()
        fp_i = (~yx & ~Y.any(1) & xp & ~Yp.all(1)).sum()
        fn_i = (~Y.any(1) & yx & ~pred_coarse).sum()
        rows.append((tp_c + tp_i, fp_c + fp_i, fn_c + fn_i))
    return thresholds, np.array(rows)


def _loop_scores(preds, target, groups):
    tables = []
    for complete, x in groups:
        n = preds.shape[0]
        px = preds[:, x] if x is not None else np.zeros(n)
        yx = target[:, x].astype(bool) if x is not None else np.zeros(n, bool)
        tables.append(_loop_counts(preds[:, complete], target[:, complete].astype(bool), px, yx))

    def area(tp, fp, fn):
        p, r = tp / np.maximum(tp + fp, 0.5), tp / np.maximum(tp + fn, 0.5)
        o = np.argsort(r, kind="stable")
        return np.trapezoid(np.r_[1.0, p[o], 0.0], np.r_[0.0, r[o], 1.0]), p, r

    macro = np.mean([area(*c.T)[0] for _, c in tables])
    thresholds = np.unique(np.hstack([t for t, _ in tables]))
    micro = np.zeros((len(thresholds), 3))
    for i, t in enumerate(thresholds):
        for thr, c in tables:
            micro[i] += c[np.nonzero(thr >= t)[0][-1]]
    a, p, r = area(*micro.T)
    k = np.nonzero(thresholds >= 0.5)[0][0]
    return {"micro_auprc": a, "macro_auprc": macro, "micro_f1": 2 / (1 / p[k] + 1 / r[k])}


@pytest.mark.parametrize("seed", [0, 1])
def test_fine_level_matches_a_per_threshold_loop(seed):
    """Full taxonomy (29 columns), random predictions with ties and values below 0.01, X tags in truth."""
    rng = np.random.default_rng(seed)
    n = 40
    preds = np.round(rng.random((n, 29)), 2)  # rounding makes ties
    preds[rng.random((n, 29)) < 0.1] = 0.004
    target = (rng.random((n, 29)) < 0.2).astype(np.int64)
    groups = DEFAULT_TAXONOMY.fine_groups()
    for complete, x in groups:
        fast = group_counts(preds[:, complete], target[:, complete],
                            None if x is None else preds[:, x], None if x is None else target[:, x])
        slow_thr, slow = _loop_counts(preds[:, complete], target[:, complete].astype(bool),
                                      np.zeros(n) if x is None else preds[:, x],
                                      np.zeros(n, bool) if x is None else target[:, x].astype(bool))
        np.testing.assert_allclose(fast[0], slow_thr)
        np.testing.assert_array_equal(np.stack(fast[1:], 1), slow)
    want = _loop_scores(preds, target, groups)
    got = dcase_ust_scores(preds, target, groups)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-9), k
    m = SONYCUSTMetric(level="fine")
    for s in (slice(0, 15), slice(15, n)):
        m.update(torch.from_numpy(preds[s]), torch.from_numpy(target[s]))
    out = m.compute()
    assert out["micro_auprc"].item() == pytest.approx(want["micro_auprc"], abs=1e-6)
    assert out["macro_auprc"].item() == pytest.approx(want["macro_auprc"], abs=1e-6)


def test_perfect_predictions_and_the_threshold_one_point():
    """Predictions equal to the truth score 1. A perfect ranking that stays below 1.0 scores 0.5: the
    baseline's extra threshold 1.0 adds the point (R=0, P=0) (TP=FP=0 -> P=0/0.5), so the curve runs
    (0,1) (0,0) (1,1) (1,0) with area 1/2 - the official definition, kept as it is."""
    m = SONYCUSTMetric(level="coarse")
    target = torch.tensor([[1, 0, 0, 1, 0, 0, 0, 1], [0, 1, 1, 0, 1, 1, 1, 0]])
    m.update(target.double(), target)
    out = m.compute()
    assert out["micro_auprc"].item() == pytest.approx(1.0) and out["macro_auprc"].item() == pytest.approx(1.0)
    assert out["micro_f1"].item() == pytest.approx(1.0)
    m.reset()
    m.update(target.double() * 0.9 + 0.005, target)  # negatives below the 0.01 floor: thresholds .905, 1.0
    out = m.compute()
    assert out["micro_auprc"].item() == pytest.approx(0.5) and out["micro_f1"].item() == pytest.approx(1.0)
    m.reset()
    m.update(torch.full((2, 8), 0.5), target)
    assert m.compute()["micro_auprc"].item() < 0.9


def test_input_validation():
    m = SONYCUSTMetric(level="coarse")
    with pytest.raises(ValueError, match=r"coarse level expects 8 columns"):
        m.update(torch.rand(2, 7), torch.zeros(2, 7))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        m.update(torch.randn(2, 8) * 5, torch.zeros(2, 8))
    with pytest.raises(ValueError, match="only 0 and 1"):
        m.update(torch.rand(2, 8), torch.full((2, 8), 0.5))
    f = SONYCUSTMetric(level="fine")
    with pytest.raises(ValueError, match=r"needs target_x of shape \(B, 6\)"):
        f.update(torch.rand(2, 23), torch.zeros(2, 23))
    with pytest.raises(ValueError, match="level must be"):
        SONYCUSTMetric(level="medium")
