"""The ``project`` and ``authors`` presets side by side on small synthetic data (1 s clips at 8 kHz, 4 classes,
a distractor in half the clips): the same classifier and dictionary, one post-hoc interpreter per preset, then
the project's suite and the authors' figures for each, plus the interpretation-time details (top 5, ε) swapped.

    PYTHONPATH=. python experiments/benchmarks/protocol_comparison.py [--epochs 8] [--seeds 2] [--ablations 1]

Also the authors' preset with one training-time detail switched back to the project's (Ψ, Θ dropout, schedule,
taps). Prints a markdown table of means over the seeds (one column per configuration); the README's protocol
table quotes it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L
import torch

from datamodules.synthetic import SyntheticDataModule
from l2i.evaluation import evaluate_interpreter
from l2i.dictionary import DictionaryArtifact
from l2i.evaluation.authors import evaluate_authors_protocol
from l2i.nmf import NMF
from lightning_modules.classifier import ClassifierModule
from lightning_modules.posthoc import PostHocInterpreterModule

FRONTEND = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32, top_db=80.0, duration_s=1.0)
KEYS = ("fidelity.top1", "faithfulness.frac_prob_relevant_gt_random", "ground_truth.all.interpretation_mean",
        "ground_truth.all.mixture_mean", "lmac.SPS", "authors.fidelity.top1",
        "authors.faithfulness.relevant_prob_drop_median", "authors.faithfulness.random_prob_drop_median",
        "authors.lmac.AD", "authors.lmac.FF")


def _dictionary(frontend, clips, n_components: int, max_iter: int) -> DictionaryArtifact:
    """One NMF of ``V = log1p|X|`` of every clip of ``clips``, pooled (the whole small set fits in memory)."""
    with torch.no_grad():
        V = frontend.nmf_spectrogram(frontend.prepare(torch.stack([clips[i]["waveform"] for i in range(len(clips))])))
        result = NMF(n_components, sparsity=0.0, max_iter=max_iter, seed=0).fit(V)
    return DictionaryArtifact(W=result.dictionary, frontend=frontend.config.spectral_params(),
                              meta={"n_components": n_components, "clips": len(clips), "objective": float(result.objective)})


def _trainer(epochs: int) -> L.Trainer:
    return L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu", devices=1, num_sanity_val_steps=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--classifier_epochs", type=int, default=4)
    p.add_argument("--out", default="runs/protocol_comparison.json")
    p.add_argument("--seeds", type=int, default=2, help="interpreter seeds per configuration (figures are means)")
    p.add_argument("--ablations", type=int, default=1, help="1: also the authors' preset with one detail switched back")
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    dm = SyntheticDataModule(mode="multiclass", num_classes=4, num_train=240, num_val=48, num_test=48, sample_rate=8000,
                             duration_s=1.0, distractor_prob=0.5, seed=0, batch_size=16)
    clf = ClassifierModule(backbone="small_cnn", backbone_kwargs={"channels": [8, 16, 16, 32]}, frontend=FRONTEND,
                           task="multiclass", num_classes=4, lr=3e-3)
    start = time.perf_counter()
    _trainer(args.classifier_epochs).fit(clf, datamodule=dm)
    clf.eval().requires_grad_(False)
    art = _dictionary(clf.frontend, dm.dataset("nmf", 64), n_components=24, max_iter=60)
    from l2i.interpreter.posthoc import AUTHORS_ESC50_SCHEDULE

    configs = {
        "project": {"protocol": "project"},
        "authors": {"protocol": "authors"},
        "authors, project Ψ": {"protocol": "authors", "psi_variant": "project"},
        "authors, no Θ dropout": {"protocol": "authors", "attention_dropout": 0.0},
        "authors, project schedule": {"protocol": "authors", "loss_weights": AUTHORS_ESC50_SCHEDULE},
        "authors, last three blocks": {"protocol": "authors", "skip_last_layers": 0},
    }
    if not args.ablations:
        configs = {k: configs[k] for k in ("project", "authors")}
    runs: dict[str, list[dict[str, float]]] = {}
    dm.setup("test")
    for name, kwargs in configs.items():
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = PostHocInterpreterModule(classifier=clf, dictionary=art, hidden=32, attention_dim=32, lr=3e-3, **kwargs)
            _trainer(args.epochs).fit(model, datamodule=dm)
            model.eval()
            own = model.interpreter.top_k
            swaps = [(name, own)]
            if name in ("project", "authors"):  # the interpretation-time cap swapped on the same model
                swaps.append((f"{name}, " + ("top 5" if own is None else "all above τ"), None if own else 5))
            for label, top_k in swaps:
                model.interpreter.top_k = top_k
                res = evaluate_interpreter(model, clf, dm.test_dataloader(), threshold=0.2, noise_snr_db=None, seed=0)
                res.update({f"authors.{k}": v for k, v in evaluate_authors_protocol(
                    model, clf, dm.test_dataloader(), task="multiclass", num_classes=4, seed=0).items()})
                runs.setdefault(label, []).append({k: float(res[k]) for k in KEYS if k in res})
    results: dict[str, dict[str, float]] = {
        label: {k: sum(r[k] for r in rs) / len(rs) for k in rs[0]} for label, rs in runs.items()
    }
    results["seconds"] = {"total": time.perf_counter() - start}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    cols = [k for k in results if k != "seconds"]
    print("| configuration | " + " | ".join(f"`{k}`" for k in KEYS) + " |")
    print("|---|" + "---|" * len(KEYS))
    for c in cols:
        print(f"| {c} | " + " | ".join(f"{results[c].get(k, float('nan')):.3f}" for k in KEYS) + " |")
    print(f"({results['seconds']['total']:.0f} s)")


if __name__ == "__main__":
    main()
