"""The real-data configs run, not only parse: for each data set, its classifier -> nmf -> posthoc -> bydesign
configs under ``experiments/<data set>/`` run end to end on that data set's fixture in the official layout.

Only sizes are overridden (a SmallCNN instead of CNN14, short clips, batch 2, 8 components, one epoch, no
worker processes, the cache under the test's folder): data module, front-end, NMF settings, loss schedules,
callbacks and metrics are the configs' own. What a config gets wrong for its data set (a key its DataModule
does not take, a front-end the dictionary cannot match, a metric the labels do not fit) fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from experiments.cli import main
from fixtures_datasets import make_esc50, make_mtat, make_mtg_jamendo, make_sonyc

ROOT = Path(__file__).resolve().parents[1]


def _esc50(tmp: Path) -> list[str]:
    fx = make_esc50(tmp, classes=(0, 1), seconds=0.5)
    return ["--data.init_args.root", str(fx.root), "--data.init_args.duration_s", "0.5"]


def _sonyc(tmp: Path) -> list[str]:
    fx = make_sonyc(tmp, seconds=0.5)
    return ["--data.init_args.root", str(fx.root), "--data.init_args.duration_s", "0.5"]


def _mtat(tmp: Path) -> list[str]:
    fx = make_mtat(tmp, seconds=1.5)
    return ["--data.init_args.root", str(fx.root), "--data.init_args.chunk_s", "0.5", "--data.init_args.clip_s", "1.5"]


def _jamendo(tmp: Path) -> list[str]:
    fx = make_mtg_jamendo(tmp, seconds=1.5)
    return ["--data.init_args.root", str(fx.root), "--data.init_args.audio_dir", str(fx.audio_dir),
            "--data.init_args.chunk_s", "0.5", "--data.init_args.clip_s", "1.5"]


DATASETS = {"esc50": _esc50, "sonyc_ust": _sonyc, "magnatagatune": _mtat, "mtg_jamendo": _jamendo}


def _finite_state(path: Path) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt["state_dict"]
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    assert not bad, f"{path}: non-finite parameters {bad[:5]}"
    return ckpt


@pytest.mark.slow
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_dataset_configs_run_end_to_end_on_the_fixture(dataset, tmp_path, monkeypatch):
    data = DATASETS[dataset](tmp_path / "data")
    data += ["--data.init_args.loader.cache_dir", str(tmp_path / "cache"), "--data.init_args.loader.num_workers", "0",
             "--data.init_args.loader.persistent_workers", "false", "--data.init_args.loader.pin_memory", "false",
             "--data.init_args.loader.batch_size", "2"]
    monkeypatch.chdir(tmp_path)  # relative defaults (runs/, W&B files) land in the test's folder
    cfg = ROOT / "experiments" / dataset
    fit = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]

    main(["fit", "--config", str(cfg / "classifier.yaml"), *data, *fit, "--model.init_args.backbone", "small_cnn",
          "--model.init_args.pretrained", "null", "--trainer.default_root_dir", str(tmp_path / "classifier")])
    classifier = tmp_path / "classifier" / "checkpoints" / "last.ckpt"
    _finite_state(classifier)

    dictionary = tmp_path / "dictionary.pt"
    assert main(["nmf", "--config", str(cfg / "nmf.yaml"), *data, "--nmf.n_components", "8", "--nmf.epochs", "1",
                 "--out", str(dictionary), "--eval_clips", "2", "--wandb", "false", "--images", "false",
                 "--progress", "false"]) in (0, None)
    from l2i.dictionary import DictionaryArtifact

    W = DictionaryArtifact.load(dictionary).dictionary
    assert W.shape[1] == 8 and torch.isfinite(W).all() and (W >= 0).all()

    stage2 = [*data, *fit, "--model.init_args.classifier_checkpoint", str(classifier),
              "--model.init_args.dictionary_path", str(dictionary)]
    main(["fit", "--config", str(cfg / "posthoc.yaml"), *stage2, "--model.init_args.hidden", "16",
          "--model.init_args.attention_dim", "16", "--trainer.default_root_dir", str(tmp_path / "posthoc")])
    ckpt = _finite_state(tmp_path / "posthoc" / "checkpoints" / "last.ckpt")
    # the classifier stays frozen inside the interpreter: its weights are the classifier checkpoint's
    before = torch.load(classifier, map_location="cpu", weights_only=True)["state_dict"]
    frozen = {k[len("interpreter."):]: v for k, v in ckpt["state_dict"].items()
              if k.startswith("interpreter.backbone.")}
    assert frozen and all(torch.equal(v, before[k]) for k, v in frozen.items())

    main(["fit", "--config", str(cfg / "bydesign.yaml"), *stage2, "--trainer.default_root_dir",
          str(tmp_path / "bydesign")])
    _finite_state(tmp_path / "bydesign" / "checkpoints" / "last.ckpt")
