"""The whole suite on synthetic mixtures with a tiny trained classifier (~10 s to train, once per session):
an oracle interpreter (knows the true sources) scores at the top, its inverse at the bottom, and random
components (same number) score below the oracle's chosen ones."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader

from l2i.evaluation import OverlapMixtures, evaluate_interpreter, results_markdown
from evaluation_helpers import OracleInterpreter, datamodule, dictionary, one_thread, make_loader, trained_classifier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup():
    clf = trained_classifier()
    W = dictionary()
    loader = make_loader(32, batch_size=16)
    interpreters = {}
    for mode in ("oracle", "inverted"):
        it = OracleInterpreter(clf, W, mode)
        for b in loader:
            it.register(b)
        interpreters[mode] = it
    with one_thread():
        results = {m: evaluate_interpreter(it, clf, loader, noise_snr_db=(5.0,), seed=0) for m, it in interpreters.items()}
    return clf, W, interpreters, results


def test_suite_keys_finite_and_documented(setup):
    _, _, _, results = setup
    res = results["oracle"]
    for family in ("fidelity.top1", "faithfulness.frac_prob_relevant_gt_random", "lmac.AI", "lmac.SPS", "lmac.COMP",
                   "ground_truth.all.interpretation_mean", "ground_truth.all.random_mean",
                   "ground_truth.all.energy_in_support_mean", "noise_5dB.fidelity_change", "noise_5dB.relevance_change",
                   "noise_5dB.si_sdr_change"):
        assert family in res, family
    assert all(math.isfinite(v) for r in results.values() for v in r.values())
    assert res["clips"] == 32 and res["random_baseline"] == 1.0
    md = results_markdown(res, columns={"oracle": results["oracle"], "inverted": results["inverted"]})
    assert "| `lmac.FF` |" in md and md.count("\n") > 30


def test_perfect_and_inverted_interpreters_give_the_extremes(setup):
    _, _, _, results = setup
    o, inv = results["oracle"], results["inverted"]
    assert o["fidelity.top1"] == 1.0 and inv["fidelity.top1"] == 0.0
    assert o["lmac.FidIn"] > 90 and inv["lmac.FidIn"] < 20
    assert o["lmac.AD"] < 5 and inv["lmac.AD"] > 50
    assert o["lmac.FF"] > 50 > inv["lmac.FF"]
    assert o["faithfulness.relevant_prob_drop_mean"] > 0.5 > inv["faithfulness.relevant_prob_drop_mean"]
    # every class present is explained, the quiet distractors too: their support is harder to hit (0.82 measured)
    assert o["ground_truth.single.energy_in_support_mean"] > 0.95 and o["ground_truth.multi.energy_in_support_mean"] > 0.7
    assert inv["ground_truth.all.energy_in_support_mean"] < 0.2
    assert o["ground_truth.all.interpretation_mean"] > o["ground_truth.all.mixture_mean"]
    assert inv["ground_truth.all.interpretation_mean"] < 0
    # the report: the oracle interpreter is specific and beats the mixture on every pair, its inverse never
    assert o["ground_truth.multi.specificity"] == 1.0 and inv["ground_truth.multi.specificity"] == 0.0
    assert o["ground_truth.all.better_than_mixture"] == 1.0 and inv["ground_truth.all.better_than_mixture"] == 0.0
    assert o["ground_truth.multi.other_class_median"] < o["ground_truth.multi.mixture_median"] < o["ground_truth.multi.interpretation_median"]
    # the ideal ratio mask beats the mixture on multi-source clips; all components give back the mixture
    assert o["ground_truth.multi.oracle_median"] > o["ground_truth.multi.mixture_median"] + 10
    assert o["ground_truth.all.all_components_median"] == pytest.approx(o["ground_truth.all.mixture_median"], abs=0.5)


def test_random_components_score_below_the_chosen_ones(setup):
    o = setup[3]["oracle"]
    assert o["faithfulness.relevant_prob_drop_mean"] > o["faithfulness.random_prob_drop_mean"]
    assert o["faithfulness.frac_prob_relevant_gt_random"] > 0.8
    assert o["ground_truth.all.interpretation_mean"] > o["ground_truth.all.random_mean"] + 10
    assert o["ground_truth.all.better_than_random"] > 0.8
    assert o["ground_truth.all.energy_in_support_mean"] > o["ground_truth.all.energy_in_support_random_mean"]


def test_noise_degrades_gracefully(setup):
    o = setup[3]["oracle"]
    assert o["noise_5dB.si_sdr_noisy"] < o["noise_5dB.si_sdr_clean"]
    assert 0 <= o["noise_5dB.chosen_kept"] <= 1 and 0 <= o["noise_5dB.chosen_jaccard"] <= 1


def test_suite_on_overlap_mixtures_and_reproducible(setup):
    clf, W, _, _ = setup
    ds = OverlapMixtures(datamodule().dataset("test", 16), weight=1.0, seed=0)
    loader = DataLoader(ds, batch_size=8)
    it = OracleInterpreter(clf, W)
    for b in loader:
        it.register(b)
    # a classifier handed over in train mode (dropout, batch statistics): the suite evaluates in eval mode and
    # gives each model its own mode back (a shared model left in train mode made two calls differ)
    clf.train()
    try:
        with one_thread():
            a = evaluate_interpreter(it, clf, loader, noise_snr_db=None, seed=1)
            b = evaluate_interpreter(it, clf, loader, noise_snr_db=None, seed=1)
        assert clf.training and all(m.training for m in clf.modules())
    finally:
        clf.eval()
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    # both clips' classes are present in every overlap mixture: 16 multi-source clips, 32 pairs, none single
    assert a["ground_truth.all.pairs"] == 32 and a["ground_truth.multi.pairs"] == 32 and a["ground_truth.single.pairs"] == 0
    assert a["ground_truth.multi.specificity"] > 0.9
    assert a["ground_truth.all.interpretation_mean"] > a["ground_truth.all.mixture_mean"]
    assert a["ground_truth.all.interpretation_mean"] > a["ground_truth.all.random_mean"]


def test_interpreter_without_components_keyword_skips_random_baselines(setup):
    clf, W, interpreters, _ = setup

    class NoComponents:
        task = "multiclass"

        def interpret(self, waveform, target=None, threshold=0.2):
            return interpreters["oracle"].interpret(waveform, target, threshold)

    with one_thread():
        res = evaluate_interpreter(NoComponents(), clf, make_loader(16), noise_snr_db=None, max_batches=1)
    assert res["random_baseline"] == 0.0 and "faithfulness.random_prob_drop_mean" not in res
    with pytest.raises(KeyError, match="sources"):
        evaluate_interpreter(NoComponents(), clf, [{"waveform": torch.zeros(2, 8000), "target": torch.zeros(2)}], ground_truth=True)


def test_suite_runs_on_multilabel_mixtures():
    """Multilabel path: F1/accuracy fidelity with per-class thresholds, several explained classes per clip,
    ground truth per present class (untrained classifier: only the contract and finiteness are checked)."""
    from lightning_modules.classifier import ClassifierModule
    from evaluation_helpers import FRONTEND, NUM_CLASSES, SimpleNMFInterpreter

    torch.manual_seed(0)
    clf = ClassifierModule(backbone="small_cnn", backbone_kwargs={"channels": [4, 8, 8, 16]}, frontend=FRONTEND,
                           task="multilabel", num_classes=NUM_CLASSES).eval()
    it = SimpleNMFInterpreter(clf, dictionary())
    ds = datamodule(mode="multilabel").dataset("test", 8)
    loader = DataLoader(ds, batch_size=8)
    with one_thread():
        res = evaluate_interpreter(it, clf, loader, thresholds=[0.5, 0.4, 0.5, 0.6], noise_snr_db=(10.0,))
    for key in ("fidelity.f1", "fidelity.macro_f1", "fidelity.accuracy", "fidelity.exact_match", "lmac.FidIn",
                "faithfulness.random_prob_drop_mean", "ground_truth.all.interpretation_mean", "noise_10dB.chosen_jaccard"):
        assert key in res, key
    assert all(math.isfinite(v) for v in res.values())
    # every class present in every clip is a pair; clips with one class are single, the others multi
    present = [len({int(l) for l in ds[i]["source_labels"] if l >= 0}) for i in range(len(ds))]
    assert res["ground_truth.all.pairs"] == sum(present)
    assert res["ground_truth.single.pairs"] == sum(n for n in present if n == 1)
    assert res["ground_truth.multi.pairs"] == sum(n for n in present if n > 1) > 0


def test_tuned_thresholds_do_not_lower_multilabel_fidelity():
    from l2i.evaluation import tune_interpreter_thresholds
    from lightning_modules.classifier import ClassifierModule
    from evaluation_helpers import FRONTEND, NUM_CLASSES, SimpleNMFInterpreter

    torch.manual_seed(0)
    clf = ClassifierModule(backbone="small_cnn", backbone_kwargs={"channels": [4, 8, 8, 16]}, frontend=FRONTEND,
                           task="multilabel", num_classes=NUM_CLASSES).eval()
    it = SimpleNMFInterpreter(clf, dictionary())
    loader = DataLoader(datamodule(mode="multilabel").dataset("val", 16), batch_size=16)
    with one_thread():
        t = tune_interpreter_thresholds(it, clf, loader)
        base = evaluate_interpreter(it, clf, loader, noise_snr_db=None, ground_truth=False, random_baseline=False)
        tuned = evaluate_interpreter(it, clf, loader, thresholds=t, noise_snr_db=None, ground_truth=False, random_baseline=False)
    assert t.shape == (NUM_CLASSES,)
    assert tuned["fidelity.macro_f1"] >= base["fidelity.macro_f1"]  # tuned on the same clips: never worse
