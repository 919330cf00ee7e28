"""A post-hoc interpreter's stored interpretation options (``interpret_options``): the class-block recipe of the
real-recording set reachable from configs, ``l2i evaluate`` / ``l2i interpret`` and the Lightning-free loader.

Untrained models on tiny clips (a second or two each): the options' plumbing does not depend on training."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from l2i.dictionary import DictionaryArtifact
from l2i.instruments import CLASS_NAMES
from lightning_modules.classifier import ClassifierModule
from lightning_modules.posthoc import PostHocInterpreterModule

REPO = Path(__file__).resolve().parents[1]
SR = 8000
FE = dict(sample_rate=SR, n_fft=256, hop_length=128, n_mels=32, top_db=80.0)
NAMES = list(CLASS_NAMES[:8])
BLOCK = 2  # components per class
#: the recipe as experiments/instruments/posthoc_blocks.yaml sets it
RECIPE = yaml.safe_load((REPO / "experiments/instruments/posthoc_blocks.yaml").read_text())["model"]["init_args"]["interpret_options"]

from test_interpret_portable import _one_thread, _save  # noqa: E402,F401 - one thread (autouse) and saving as training does




@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A multilabel classifier of the 8 instruments and a block dictionary (2 components per class)."""
    root = tmp_path_factory.mktemp("opts")
    torch.manual_seed(0)
    clf = ClassifierModule(backbone_kwargs={"channels": [4, 8, 8, 16]}, frontend=FE, num_classes=8, task="multilabel",
                           class_names=NAMES)
    clf_path = _save(clf, root / "classifier.ckpt")
    W = torch.rand(129, 8 * BLOCK) + 0.01
    dict_path = DictionaryArtifact(W=W, frontend=clf.frontend.config,
                                   meta={"labels": [c for c in NAMES for _ in range(BLOCK)]}).save(root / "blocks.pt")
    blocks = dict(classifier_checkpoint=str(clf_path), dictionary_path=str(dict_path), hidden=8, pooling="max",
                  block_evidence=True, theta_bias=True, threshold=0.0)
    torch.manual_seed(1)
    recipe = PostHocInterpreterModule(**blocks, interpret_options=RECIPE).eval()
    ckpt = _save(recipe, root / "recipe.ckpt")
    torch.manual_seed(1)
    plain = PostHocInterpreterModule(**blocks).eval()  # same weights, no options: the authors' interpretation
    plain_ckpt = _save(plain, root / "plain.ckpt")
    x = torch.randn(2, SR) * 0.1
    return {"root": root, "recipe": recipe, "plain": plain, "ckpt": ckpt, "plain_ckpt": plain_ckpt, "x": x}


def test_the_recipe_file_is_the_readme_recipe():
    assert RECIPE == {"mask_mode": "share", "refine_iters": 150, "refine_gate": "interpreter", "refine_init": "uniform",
                      "refine_beta": 1, "class_threshold": 0.1, "block_components": True}
    from experiments.benchmarks.real_recordings import GATED, RECIPE as MEASURED

    # the file trains and interprets as the benchmark script measured it
    assert {**MEASURED, "block_components": True} == {**RECIPE, "threshold": 0.0, "block": True}
    overlay = yaml.safe_load((REPO / "experiments/instruments/posthoc_blocks.yaml").read_text())
    init = overlay["model"]["init_args"]
    assert overlay["trainer"]["max_epochs"] == GATED["epochs"]
    assert {k: init[k] for k in ("pooling", "block_evidence", "theta_bias", "block_gate", "block_gate_threshold")} == \
        {k: GATED[k] for k in ("pooling", "block_evidence", "theta_bias", "block_gate", "block_gate_threshold")}
    assert {k: {int(e): w for e, w in v.items()} for k, v in init["loss_weights"].items()} == \
        {"reconstruction": {0: 5.0}, "sparsity": {1: 0.4}, **GATED["loss_weights"]}


def test_stored_options_are_interpret_defaults_and_an_argument_wins(artifacts):
    recipe, plain, x = artifacts["recipe"], artifacts["plain"], artifacts["x"]
    target = torch.zeros(2, 8)
    target[:, [0, 3]] = 1.0
    got = recipe.interpret(x, target)
    want = plain.interpret(x, target, threshold=0.0, **RECIPE)
    torch.testing.assert_close(got.audio, want.audio)
    assert torch.equal(got.components, recipe.interpreter.theta.evidence.expand(2, -1, -1))  # c's whole block
    assert int(got.num_chosen[got.valid].min()) == BLOCK
    authors = plain.interpret(x, target)  # no options: log1p mask, Ψ's own H, relevance > τ
    assert not torch.allclose(authors.audio, got.audio)
    # an explicit argument wins: the log1p mask, and given components (a random baseline's) over the blocks
    torch.testing.assert_close(recipe.interpret(x, target, mask_mode="log1p").audio,
                               plain.interpret(x, target, threshold=0.0, **{**RECIPE, "mask_mode": "log1p"}).audio)
    one = torch.zeros(2, 8, 8 * BLOCK, dtype=torch.bool)
    one[..., 5] = True
    assert torch.equal(recipe.interpret(x, target, components=one).components, one)


def test_a_checkpoint_reloads_with_its_options_without_lightning(artifacts, tmp_path):
    from l2i import load_interpreter
    from l2i.bundle import export_interpreter

    recipe, x = artifacts["recipe"], artifacts["x"]
    loaded = load_interpreter(artifacts["ckpt"])
    assert loaded.interpret_options == RECIPE
    torch.testing.assert_close(loaded.interpret(x).audio, recipe.interpret(x).audio)
    assert loaded.effective_mask_mode() == "share" and loaded.effective_mask_mode("log1p") == "log1p"
    exported = load_interpreter(export_interpreter(artifacts["ckpt"], tmp_path / "recipe.pt"))
    assert exported.interpret_options == RECIPE
    assert load_interpreter(artifacts["plain_ckpt"]).interpret_options == {}
    again = PostHocInterpreterModule.load_from_checkpoint(str(artifacts["ckpt"]))
    assert again.interpret_options == RECIPE
    clip = loaded.explain(x[0], SR)
    assert clip.mask_mode == "share" and clip.chosen.sum(-1).tolist() == [BLOCK] * len(clip.classes)


@pytest.mark.parametrize("options, message", [
    ({"refine_iter": 3}, r"model.init_args.interpret_options.refine_iter: unknown interpretation option"),
    ({"threshold": 0.1}, r"interpret_options.threshold: unknown .* the model's own `threshold`"),
    ({"mask_mode": "hard"}, r"interpret_options.mask_mode must be one of log1p, share, magnitude, got 'hard'"),
    ({"refine_iters": -1}, r"interpret_options.refine_iters must be a non-negative integer"),
    ({"class_threshold": 2}, r"interpret_options.class_threshold must be a number in \[0, 1\]"),
    ({"mask_power": 0}, r"interpret_options.mask_power must be a finite number > 0, got 0"),
    ({"mask_power": -2.0}, r"interpret_options.mask_power must be a finite number > 0, got -2.0"),
    ({"mask_power": float("nan")}, r"interpret_options.mask_power must be a finite number > 0, got nan"),
    ({"mask_power": True}, r"interpret_options.mask_power must be a finite number > 0, got True"),
    ({"refine_beta": 0}, r"interpret_options.refine_beta must be one of 1, 2, got 0"),
    ({"refine_beta": True}, r"interpret_options.refine_beta must be one of 1, 2, got True"),
])
def test_a_wrong_option_is_named_in_one_line(artifacts, options, message):
    with pytest.raises(ValueError, match=message):
        PostHocInterpreterModule(classifier_checkpoint=str(artifacts["root"] / "classifier.ckpt"),
                                 dictionary_path=str(artifacts["root"] / "blocks.pt"), block_evidence=True,
                                 interpret_options=options)


def test_mask_power_one_is_the_share_bit_for_bit_and_two_sharpens_it(artifacts):
    """``mask_power``: 1 is today's share mask exactly; 2 moves each bin towards the part that dominates it; stored
    in the options it is the default of ``interpret``; a bad value given to ``interpret`` fails in one line."""
    from l2i.interpreter.interpretation import sharpen_share

    recipe, plain, x = artifacts["recipe"], artifacts["plain"], artifacts["x"]
    target = torch.zeros(2, 8)
    target[:, [0, 3]] = 1.0
    base = recipe.interpret(x, target)
    one = recipe.interpret(x, target, mask_power=1.0)
    assert torch.equal(one.mask, base.mask) and torch.equal(one.audio, base.audio)
    two = recipe.interpret(x, target, mask_power=2.0)
    s, m = base.mask[base.valid], two.mask[two.valid]  # share masks of the explained classes
    assert torch.allclose(m, s**2 / (s**2 + (1 - s) ** 2))
    major, minor = s > 0.6, (s < 0.4) & (s > 0)
    assert major.any() and minor.any()
    assert bool((m[major] > s[major]).all()) and bool((m[minor] < s[minor]).all())
    assert float(m.max()) <= 1.0 and float(m.min()) >= 0.0
    share = torch.tensor([0.0, 0.2, 0.5, 0.8, 1.0])
    torch.testing.assert_close(sharpen_share(share, 2.0), torch.tensor([0.0, 0.2**2 / 0.68, 0.5, 0.8**2 / 0.68, 1.0]))
    assert sharpen_share(share, 1.0) is share
    stored = PostHocInterpreterModule(classifier_checkpoint=str(artifacts["root"] / "classifier.ckpt"),
                                      dictionary_path=str(artifacts["root"] / "blocks.pt"), hidden=8, pooling="max",
                                      block_evidence=True, theta_bias=True, threshold=0.0,
                                      interpret_options={**RECIPE, "mask_power": 2})
    stored.load_state_dict(recipe.state_dict())
    assert stored.interpret_options["mask_power"] == 2.0
    torch.testing.assert_close(stored.eval().interpret(x, target).mask, two.mask)
    with pytest.raises(ValueError, match=r"^mask_power must be a finite number > 0, got nan$"):
        recipe.interpret(x, target, mask_power=float("nan"))


def test_block_components_need_block_evidence(artifacts):
    with pytest.raises(ValueError, match="block_components needs Θ tied to class blocks"):
        PostHocInterpreterModule(classifier_checkpoint=str(artifacts["root"] / "classifier.ckpt"),
                                 dictionary_path=str(artifacts["root"] / "blocks.pt"), interpret_options=RECIPE)


def test_evaluate_scores_the_recipe_of_the_config_with_the_ground_truth_table(artifacts, tmp_path, capsys):
    """``l2i evaluate`` with the instrument recipes on the real-recording set: the config's interpret_options
    are what is scored (each class explained by its 2-component block), and the report opens with the
    ground-truth table (mixture, interpretation, other class, random, all components, oracle IRM; single vs
    multi-source clips); ``interpret_options {}`` scores the authors' interpretation instead."""
    from experiments.cli import main

    cfg = REPO / "experiments/instruments"
    data = ["--data.init_args.num_train", "2", "--data.init_args.num_val", "2", "--data.init_args.num_test", "6",
            "--data.init_args.sample_rate", str(SR), "--data.init_args.duration_s", "1.0", "--data.init_args.batch_size", "6",
            "--data.init_args.cache_dir", str(tmp_path / "cache")]
    common = ["--config", str(cfg / "posthoc.yaml"), "--config", str(cfg / "posthoc_blocks.yaml"), *data,
              "--noise_snr_db", "", "--device", "cpu"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["evaluate", *common, "--ckpt", str(artifacts["plain_ckpt"]), "--out_dir", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    table = out[out.index("## ground truth"):]
    assert "| estimate of class c | all clips | single-source clips | multi-source clips |" in table
    for row in ("the mixture itself", "interpretation of c", "interpretation of another class present", "random active",
                "all components", "ideal ratio mask (oracle)", "specificity"):
        assert row in table, row
    res = json.loads((tmp_path / "e/evaluation.json").read_text())["results"]
    assert res["clips"] == 6 and res["components_mean"] == BLOCK  # the config's recipe: c's whole block
    assert res["ground_truth.single.pairs"] + res["ground_truth.multi.pairs"] == res["ground_truth.all.pairs"] > 6
    assert res["ground_truth.all.oracle_median"] > res["ground_truth.all.mixture_median"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["evaluate", *common, "--ckpt", str(artifacts["plain_ckpt"]), "--out_dir", str(tmp_path / "a"),
                     "--model.init_args.interpret_options", "{}"]) == 0
    authors = json.loads((tmp_path / "a/evaluation.json").read_text())["results"]
    assert authors["ground_truth.all.pairs"] == res["ground_truth.all.pairs"]
    assert authors["ground_truth.all.interpretation_median"] != res["ground_truth.all.interpretation_median"]


def test_interpret_plays_the_stored_recipe(artifacts, tmp_path):
    import soundfile as sf

    from experiments.cli import main

    clip = tmp_path / "c.wav"
    sf.write(clip, artifacts["x"][0].numpy(), SR)
    assert main(["interpret", "--ckpt", str(artifacts["ckpt"]), "--input", str(clip), "--out_dir", str(tmp_path / "o"),
                 "--no_plots", "--target", "piano,violin"]) == 0
    recs = {r["class"]: r for r in (json.loads(p.read_text()) for p in (tmp_path / "o").glob("*.json"))}
    assert set(recs) == {"piano", "violin"}
    assert all(r["mask_mode"] == "share" and len(r["chosen_components"]) == BLOCK for r in recs.values())
    assert recs["piano"]["chosen_components"] == [0, 1]


#: the by-design recipe as experiments/instruments/bydesign_distilled.yaml sets it
BYDESIGN_RECIPE = yaml.safe_load((REPO / "experiments/instruments/bydesign_distilled.yaml").read_text())["model"]["init_args"][
    "interpret_options"]


def test_the_bydesign_recipe_is_the_posthoc_recipe_and_the_measured_row():
    """The distilled by-design model is interpreted as the post-hoc recipe (its own prediction is the interpreter's
    decision), and as the benchmark script measured it."""
    from experiments.benchmarks.real_recordings import BYDESIGN

    assert BYDESIGN_RECIPE == RECIPE
    measured = BYDESIGN["distilled_long"][2][""]
    assert {**measured, "block_components": True} == {**BYDESIGN_RECIPE, "threshold": 0.0, "block": True}


def test_a_bydesign_model_keeps_its_options_through_its_checkpoint_and_evaluate(artifacts, tmp_path):
    """``interpret_options`` on the by-design model: the defaults of its ``interpret`` (an argument wins), kept in
    the checkpoint for the Lightning-free loader, replaced by a config's in ``l2i evaluate``; a wrong one is named."""
    from l2i import load_interpreter
    from lightning_modules.bydesign import ByDesignModule

    root, x = artifacts["root"], artifacts["x"]
    kw = dict(classifier_checkpoint=str(root / "classifier.ckpt"), dictionary_path=str(root / "blocks.pt"), hidden=8,
              pooling="max", block_evidence=True, theta_bias=True, threshold=0.0, num_classes=8, task="multilabel",
              class_names=NAMES)
    torch.manual_seed(2)
    recipe = ByDesignModule(**kw, interpret_options=BYDESIGN_RECIPE).eval()
    torch.manual_seed(2)
    plain = ByDesignModule(**kw).eval()
    target = torch.zeros(2, 8)
    target[:, [1, 4]] = 1.0
    got = recipe.interpret(x, target)
    torch.testing.assert_close(got.audio, plain.interpret(x, target, **BYDESIGN_RECIPE).audio)
    assert int(got.num_chosen[got.valid].min()) == BLOCK  # c's whole block
    assert not torch.allclose(plain.interpret(x, target).audio, got.audio)  # no options: the authors' interpretation
    torch.testing.assert_close(recipe.interpret(x, target, refine_beta=2).audio,
                               plain.interpret(x, target, **{**BYDESIGN_RECIPE, "refine_beta": 2}).audio)
    loaded = load_interpreter(_save(recipe, tmp_path / "bd.ckpt"))
    assert loaded.kind == "bydesign" and loaded.interpret_options == BYDESIGN_RECIPE
    torch.testing.assert_close(loaded.interpret(x, target).audio, got.audio)
    assert load_interpreter(_save(plain, tmp_path / "plain.ckpt")).interpret_options == {}
    with pytest.raises(ValueError, match=r"model.init_args.interpret_options.refine_beta must be one of 1, 2, got 3"):
        ByDesignModule(**kw, interpret_options={"refine_beta": 3})
    with pytest.raises(ValueError, match="block_components needs Θ tied to class blocks"):
        ByDesignModule(**{**kw, "block_evidence": False}, interpret_options=BYDESIGN_RECIPE)


def test_evaluate_scores_a_bydesign_model_with_its_configs_interpretation(artifacts, tmp_path):
    """``l2i evaluate`` with the distilled by-design recipe's configs on a by-design checkpoint trained without
    options: the config's ``interpret_options`` are scored (c's whole block), ``{}`` the authors' interpretation."""
    from experiments.cli import main
    from lightning_modules.bydesign import ByDesignModule

    root = artifacts["root"]
    torch.manual_seed(2)
    plain = ByDesignModule(classifier_checkpoint=str(root / "classifier.ckpt"), dictionary_path=str(root / "blocks.pt"),
                           hidden=8, pooling="max", block_evidence=True, theta_bias=True, threshold=0.0, num_classes=8,
                           task="multilabel", class_names=NAMES).eval()
    ckpt = _save(plain, tmp_path / "bd.ckpt")
    cfg = REPO / "experiments/instruments"
    common = ["--config", str(cfg / "bydesign.yaml"), "--config", str(cfg / "bydesign_blocks.yaml"), "--config",
              str(cfg / "bydesign_distilled.yaml"), "--data.init_args.num_train", "2", "--data.init_args.num_val", "2",
              "--data.init_args.num_test", "6", "--data.init_args.sample_rate", str(SR), "--data.init_args.duration_s",
              "1.0", "--data.init_args.batch_size", "6", "--data.init_args.cache_dir", str(tmp_path / "cache"),
              "--noise_snr_db", "", "--device", "cpu", "--ckpt", str(ckpt)]
    results = {}
    for name, extra in (("recipe", []), ("authors", ["--model.init_args.interpret_options", "{}"])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main(["evaluate", *common, "--out_dir", str(tmp_path / name), *extra]) == 0
        results[name] = json.loads((tmp_path / name / "evaluation.json").read_text())["results"]
    assert results["recipe"]["components_mean"] == BLOCK
    assert results["authors"]["ground_truth.all.pairs"] == results["recipe"]["ground_truth.all.pairs"] > 6
    assert results["authors"]["ground_truth.all.interpretation_median"] != results["recipe"]["ground_truth.all.interpretation_median"]
