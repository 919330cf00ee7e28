"""Every ``experiments/paper/*.yaml`` runs, in its setting's order (classifier -> nmf -> posthoc), on the data
set's fixture in the official layout, then ``l2i evaluate --protocol authors`` on the interpreter.

Only sizes are overridden (a SmallCNN instead of CNN14, 0.5 s clips, batch 2, one epoch, 8 components, no
worker processes, the cache under the test's folder): front-end, protocol, schedule and data settings are the
configs' own. The SONYC-UST fixture has no single-label training clip, so its per-tag blocks are replaced by a
plain dictionary there (the noise block on the untagged clips stays); the per-tag selection is tested on its
own below.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from experiments.cli import main
from test_real_configs import _esc50, _sonyc  # the same fixture data sets, half-second clips

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "experiments" / "paper"


SETTINGS = {
    "esc50_fold1": (_esc50, []),
    "sonyc_ust": (_sonyc, ["--nmf.per_class_components", "0", "--nmf.noise_components", "2"]),
}


def test_every_paper_config_belongs_to_a_setting_that_is_tested():
    files = {p.name for p in PAPER.glob("*.yaml")}
    expected = {f"{s}_{step}.yaml" for s in SETTINGS for step in ("data", "classifier", "nmf", "posthoc")}
    assert files == expected
    for name in files:
        head = (PAPER / name).read_text().splitlines()[0]
        assert head.startswith("# Paper setting"), name


@pytest.mark.slow
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_paper_setting_runs_on_the_official_layout_fixture(setting, tmp_path, monkeypatch):
    make_data, nmf_sizes = SETTINGS[setting]
    data = make_data(tmp_path / "data")
    data += ["--data.init_args.loader.cache_dir", str(tmp_path / "cache"), "--data.init_args.loader.num_workers", "0",
             "--data.init_args.loader.persistent_workers", "false", "--data.init_args.loader.pin_memory", "false",
             "--data.init_args.loader.batch_size", "2"]
    monkeypatch.chdir(tmp_path)
    fit = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]
    cfg = lambda step: str(PAPER / f"{setting}_{step}.yaml")  # noqa: E731

    main(["fit", "--config", cfg("classifier"), *data, *fit, "--model.init_args.backbone", "small_cnn",
          "--model.init_args.pretrained", "null", "--trainer.default_root_dir", str(tmp_path / "classifier")])
    classifier = tmp_path / "classifier" / "checkpoints" / "last.ckpt"
    hp = torch.load(classifier, map_location="cpu", weights_only=True)["hyper_parameters"]
    fe = hp["frontend"]
    assert (fe["sample_rate"], fe["n_fft"], fe["hop_length"], fe["n_mels"], fe["mel_power"]) == (44100, 1024, 512, 128, 1.0)

    dictionary = tmp_path / "dictionary.pt"
    assert main(["nmf", "--config", cfg("nmf"), *data, "--nmf.n_components", "8", "--nmf.epochs", "1", *nmf_sizes,
                 "--out", str(dictionary), "--eval_clips", "2", "--wandb", "false", "--images", "false",
                 "--progress", "false"]) in (0, None)
    from l2i.dictionary import DictionaryArtifact

    art = DictionaryArtifact.load(dictionary)
    assert art.W.shape[0] == 513 and torch.isfinite(art.W).all() and (art.W >= 0).all()

    main(["fit", "--config", cfg("posthoc"), *data, *fit, "--model.init_args.classifier_checkpoint", str(classifier),
          "--model.init_args.dictionary_path", str(dictionary), "--model.init_args.hidden", "8",
          "--model.init_args.attention_dim", "8", "--trainer.default_root_dir", str(tmp_path / "posthoc")])
    ckpt = tmp_path / "posthoc" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["hyper_parameters"]["protocol"] == "authors"
    assert any(k.startswith("interpreter.psi.collapse.") for k in state["state_dict"])  # the authors' Ψ

    # l2i evaluate reads the data section from the config: the same config pointed at the fixture
    import yaml

    from experiments.cli import apply_overrides, read_config

    # the data file the config names read in, the fixture's overrides applied (loader keys in their group)
    config = apply_overrides(read_config(cfg("posthoc")), [(k[2:], v) for k, v in zip(data[::2], data[1::2])])
    eval_cfg = tmp_path / "posthoc_fixture.yaml"
    eval_cfg.write_text(yaml.safe_dump(config))
    out = tmp_path / "eval"
    assert main(["evaluate", "--config", str(eval_cfg), "--ckpt", str(ckpt), "--protocol", "authors",
                 "--noise_snr_db", "", "--device", "cpu", "--out_dir", str(out)]) == 0
    res = json.loads((out / "evaluation.json").read_text())["results"]
    keys = ("authors.fidelity.top1", "authors.fidelity.top5") if setting == "esc50_fold1" else ("authors.fidelity.macro_auprc",)
    for key in (*keys, "authors.faithfulness.relevant_prob_drop_median", "authors.faithfulness.random_prob_drop_median"):
        assert key in res and math.isfinite(res[key]), key


def test_nmf_class_blocks_from_single_label_clips_and_noise_from_untagged_clips():
    from experiments.nmf import _class_mask, _unlabelled

    target = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 1]])
    batch = {"target": target}
    assert _class_mask(0)(batch).tolist() == [True, True, False, False]
    assert _class_mask(0, single_label=True)(batch).tolist() == [True, False, False, False]
    assert _unlabelled(batch).tolist() == [False, False, True, False]
    with pytest.raises(ValueError, match="unlabelled"):
        _unlabelled({"target": torch.tensor([0, 1])})
