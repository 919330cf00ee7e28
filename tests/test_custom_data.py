"""Own data end to end, as the README's "Your own data" walks it: a folder per class and a multilabel CSV tree
run the ``experiments/custom/`` configs classifier -> ``l2i nmf`` -> post-hoc (and by-design on the CSV
tree), then ``l2i interpret`` and the Python front door (``l2i.load_interpreter``) explain a file. Only sizes are overridden (SmallCNN, 0.5 s clips, one epoch,
8 components). Also: every ``l2i fit`` ends with a summary whose paths exist and whose monitored value and
epoch are those of the run."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch

from experiments.cli import main
from fixtures_datasets import write_wav

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "experiments" / "custom"
FREQ = {"dog": 300.0, "rain": 900.0, "siren": 2000.0}


def folder_tree(tmp: Path) -> tuple[Path, list[str]]:
    root = tmp / "my_sounds"
    for c, f in FREQ.items():
        for i in range(3):
            write_wav(root / c / f"{c}{i}.wav", 0.5, 16000, f + 20 * i, seed=i)
    return root, []


def csv_tree(tmp: Path) -> tuple[Path, list[str]]:
    root = tmp / "tagged"
    rows = []
    labels = ["dog;rain", "rain", "siren", "dog;siren", "rain;siren", "dog", "siren;dog", "rain"]
    splits = ["train"] * 5 + ["val", "test", "test"]
    for i, (lab, split) in enumerate(zip(labels, splits)):
        write_wav(root / "audio" / f"clip{i}.wav", 0.5, 16000, 300.0 + 150 * i, seed=i)
        rows.append([f"audio/clip{i}.wav", lab.replace(";", "|"), split])
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "tags", "split"])
        w.writerows(rows)
    return root, ["--data.init_args.csv", "labels.csv", "--data.init_args.task", "multilabel",
                  "--data.init_args.path_column", "file", "--data.init_args.label_column", "tags",
                  "--data.init_args.label_separator", "|"]


def summary_block(text: str, verb: str) -> dict[str, str]:
    """The last ``[l2i <verb>] summary`` block of ``text`` as ``{label: value}``."""
    blocks = text.split(f"[l2i {verb}] summary\n")
    assert len(blocks) > 1, f"no {verb} summary in the output:\n{text[-2000:]}"
    out = {}
    for line in blocks[-1].splitlines():
        m = re.match(r"  (\S.*?)\s+: (.*)$", line)
        if not m:
            break
        out[m.group(1)] = m.group(2)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["folder", "csv"])
def test_own_data_classifier_nmf_posthoc_interpret(layout, tmp_path, monkeypatch, capsys):
    root, extra = (folder_tree if layout == "folder" else csv_tree)(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    data = ["--data.init_args.root", str(root), *extra, "--data.init_args.duration_s", "0.5",
            "--data.init_args.loader.cache_dir", str(tmp_path / "cache"), "--data.init_args.loader.num_workers", "0",
            "--data.init_args.loader.persistent_workers", "false", "--data.init_args.loader.batch_size", "2"]
    fit = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]

    main(["fit", "--config", str(CFG / "classifier.yaml"), *data, *fit, "--model.init_args.backbone", "small_cnn",
          "--trainer.default_root_dir", "runs/classifier"])
    classifier = tmp_path / "runs" / "classifier" / "checkpoints" / "best.ckpt"
    hp = torch.load(classifier, map_location="cpu", weights_only=True)["hyper_parameters"]
    task = "multilabel" if layout == "csv" else "multiclass"
    assert hp["task"] == task and hp["class_names"] == ["dog", "rain", "siren"]

    dictionary = tmp_path / "runs" / "custom" / "dictionary.pt"
    assert main(["nmf", "--config", str(CFG / "nmf.yaml"), *data, "--nmf.n_components", "8", "--nmf.epochs", "1",
                 "--eval_clips", "2", "--images", "false", "--progress", "false"]) == 0
    from l2i.dictionary import DictionaryArtifact

    W = DictionaryArtifact.load(dictionary).dictionary
    assert W.shape[1] == 8 and torch.isfinite(W).all()
    nmf_summary = summary_block(capsys.readouterr().out, "nmf")
    assert nmf_summary["dictionary"] == "runs/custom/dictionary.pt"
    run = Path(nmf_summary["W&B run"])
    assert run.is_dir() and nmf_summary["upload with"] == f"wandb sync {run}"

    stage2 = [*data, *fit, "--model.init_args.classifier_checkpoint", str(classifier),
              "--model.init_args.dictionary_path", str(dictionary)]
    main(["fit", "--config", str(CFG / "posthoc.yaml"), *stage2, "--model.init_args.hidden", "16",
          "--model.init_args.attention_dim", "16", "--trainer.default_root_dir", "runs/posthoc"])
    posthoc = summary_block(capsys.readouterr().out, "fit")
    interpreter = tmp_path / "runs" / "posthoc" / "checkpoints" / "last.ckpt"
    assert interpreter.is_file()
    assert posthoc["best checkpoint"].startswith("runs/posthoc/checkpoints/best.ckpt (val/fidelity = ")
    gallery = Path(posthoc["gallery"])
    assert gallery.name == "index.html" and gallery.is_file() and "val-epoch000" in gallery.read_text()

    if layout == "csv":
        main(["fit", "--config", str(CFG / "bydesign.yaml"), *stage2, "--model.init_args.backbone", "small_cnn",
              "--model.init_args.hidden", "16", "--model.init_args.attention_dim", "16",
              "--trainer.default_root_dir", "runs/bydesign"])
        assert (tmp_path / "runs" / "bydesign" / "checkpoints" / "last.ckpt").is_file()

    clip = next(root.rglob("*.wav"))
    assert main(["interpret", "--ckpt", str(interpreter), "--input", str(clip), "--out", "listen", "--no_plots"]) == 0
    out = capsys.readouterr().out
    wavs = sorted((tmp_path / "listen").glob("*.wav"))
    assert wavs, out
    import soundfile as sf

    audio, rate = sf.read(str(wavs[0]))
    assert rate == 32000 and audio.shape[0] == 16000 and abs(audio).max() > 0
    assert summary_block(out, "interpret")["interpretations"].endswith(" in listen")

    # the Python front door, from another folder: the same interpretation of the same file
    elsewhere = tmp_path / "notebook"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    from l2i import load_interpreter

    models = [interpreter] + ([tmp_path / "runs" / "bydesign" / "checkpoints" / "last.ckpt"] if layout == "csv" else [])
    for ckpt in models:
        explained = load_interpreter(str(ckpt)).explain(str(clip))
        assert explained.audio.shape[-1] == 16000 and torch.isfinite(explained.audio).all()
        written = explained.save("front_door")
        assert written and all((elsewhere / "front_door" / r["interpretation_wav"]).is_file() for r in written)
        if ckpt == interpreter:  # the CLI wrote the same interpretation of the same clip
            cli_wav, _ = sf.read(str(tmp_path / "listen" / written[0]["interpretation_wav"]))
            assert abs(cli_wav - explained.audio[0].numpy()).max() < 1e-4


@pytest.mark.slow
def test_fit_summary_names_existing_checkpoints_with_the_monitored_value_and_epoch(tmp_path, monkeypatch, capsys,
                                                                                  recwarn):
    root, _ = folder_tree(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(CFG / "classifier.yaml"), "--data.init_args.root", str(root),
          "--data.init_args.duration_s", "0.5", "--data.init_args.loader.cache_dir", "null", "--data.init_args.loader.num_workers", "0",
          "--data.init_args.loader.persistent_workers", "false", "--data.init_args.loader.batch_size", "3",
          "--data.init_args.val_fraction", "0.34",  # 1 val clip per class
          "--model.init_args.backbone", "small_cnn", "--model.init_args.lr", "0.01",
          "--trainer.max_epochs", "3", "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
          "--trainer.log_every_n_steps", "1", "--trainer.default_root_dir", "runs/tiny"])
    captured = capsys.readouterr()
    s = summary_block(captured.out, "fit")
    # best: the path exists; value and epoch are those of the lowest val/loss in the run's CSV log
    m = re.match(r"(\S+) \(val/loss = (\S+) at epoch (\d+), step (\d+)\)$", s["best checkpoint"])
    assert m, s
    assert m.group(1) == "runs/tiny/checkpoints/best.ckpt" and Path(m.group(1)).is_file()
    log = Path(s["CSV log"])
    assert log.is_file() and log.name == "metrics.csv"
    with open(log) as fh:
        val = [(float(r["val/loss"]), int(r["epoch"])) for r in csv.DictReader(fh) if r.get("val/loss")]
    assert len(val) == 3
    best_loss, best_epoch = min(val)
    assert float(m.group(2)) == pytest.approx(best_loss, rel=1e-3) and int(m.group(3)) == best_epoch
    ckpt = torch.load(m.group(1), map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == best_epoch and ckpt["global_step"] == int(m.group(4))
    # last: written at the end of the last epoch, also when that epoch did not improve val/loss
    if best_epoch == 2:
        assert "last checkpoint" not in s or s["last checkpoint"].startswith("runs/tiny/checkpoints/last.ckpt (epoch 2")
    else:
        assert s["last checkpoint"] == "runs/tiny/checkpoints/last.ckpt (epoch 2, step 3)"
    assert torch.load("runs/tiny/checkpoints/last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 2
    # W&B: the run folder and the line that uploads it
    run = Path(s["W&B run"])
    assert run.is_dir() and run.name.startswith("offline-run-") and s["upload with"] == f"wandb sync {run}"
    # a CPU run: no warning about pinned memory, no deprecation notices from inside Lightning, no tips
    noise = [str(w.message) for w in recwarn
             if any(k in str(w.message) for k in ("pin_memory", "LeafSpec", "deprecated", "eval mode"))]
    assert not noise and "Tip:" not in captured.err


@pytest.mark.slow
def test_test_summary_lists_the_test_metrics(tmp_path, monkeypatch, capsys):
    root, _ = folder_tree(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    common = ["--config", str(CFG / "classifier.yaml"), "--data.init_args.root", str(root),
              "--data.init_args.duration_s", "0.5", "--data.init_args.loader.cache_dir", "null",
              "--data.init_args.loader.num_workers", "0", "--data.init_args.loader.persistent_workers", "false",
              "--model.init_args.backbone", "small_cnn", "--trainer.enable_progress_bar", "false",
              "--trainer.accelerator", "cpu", "--trainer.default_root_dir", "runs/t"]
    main(["fit", *common, "--trainer.max_epochs", "1"])
    capsys.readouterr()
    main(["test", *common, "--ckpt_path", "runs/t/checkpoints/best.ckpt"])
    s = summary_block(capsys.readouterr().out, "test")
    assert s["checkpoint"] == "runs/t/checkpoints/best.ckpt"
    metrics = dict(kv.split(" = ") for kv in s["test metrics"].split(", "))
    assert set(metrics) >= {"test/accuracy", "test/loss"}
    # one test clip per class (test_fraction 0.1 of 3): the accuracy is a multiple of 1/3
    accuracy = float(metrics["test/accuracy"])
    assert 0.0 <= accuracy <= 1.0 and abs(3 * accuracy - round(3 * accuracy)) < 1e-3
    assert float(metrics["test/loss"]) > 0


@pytest.mark.slow
def test_crossval_over_a_fold_column_one_wandb_run_per_fold(tmp_path, monkeypatch, capsys):
    root = tmp_path / "folds"
    rows = []
    for i in range(9):
        label = ("dog", "rain", "siren")[i % 3]
        write_wav(root / f"{i}.wav", 0.5, 16000, FREQ[label], seed=i)
        rows.append([f"{i}.wav", label, str(1 + i // 3)])
    with open(root / "meta.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label", "fold"], *rows])
    monkeypatch.chdir(tmp_path)
    assert main(["crossval", "--config", str(CFG / "classifier.yaml"), "--folds", "1", "2", "--out_dir", "cv", "--",
                 "--data.init_args.root", str(root), "--data.init_args.csv", "meta.csv",
                 "--data.init_args.fold_column", "fold", "--data.init_args.duration_s", "0.5",
                 "--data.init_args.loader.num_workers", "0", "--data.init_args.loader.persistent_workers", "false",
                 "--data.init_args.loader.cache_dir", "null", "--data.init_args.loader.batch_size", "3",
                 "--model.init_args.backbone", "small_cnn", "--trainer.max_epochs", "1",
                 "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]) == 0
    out = capsys.readouterr().out
    tests = [summary_block(block, "test") for block in out.split("[l2i fit] summary")[1:]]
    assert [t["checkpoint"] for t in tests] == ["cv/fold-1/checkpoints/best.ckpt", "cv/fold-2/checkpoints/best.ckpt"]
    runs = [t["W&B run"] for t in tests]
    assert len(set(runs)) == 2 and all(Path(r).is_dir() for r in runs)
    report = summary_block(out, "crossval")
    assert report["folds"] == "cv/fold-1, cv/fold-2" and report["metrics"].startswith("test/accuracy = ")
    # fold k (3 clips, one per class) is the test set of run k, fold k+1 its validation set
    import json

    runs = json.loads(Path("cv/crossval.json").read_text())["runs"]
    assert [(r["fold"], r["val_fold"]) for r in runs] == [(1, 2), (2, 3)]
    for r in runs:
        acc = r["metrics"]["test/accuracy"]
        assert abs(3 * acc - round(3 * acc)) < 1e-3
