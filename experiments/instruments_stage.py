"""``l2i demo`` stage ``instruments``: the real-recording set, tiny, the authors' settings beside the recipe.

On :class:`datamodules.instruments.InstrumentDataModule` (sampled instruments, stems known; rendered once into
the cache), all in-process and small: a ``small_cnn`` multilabel classifier, two dictionaries (the authors':
one NMF of the clips; the recipe's: class blocks learnt on the single-instrument clips), two post-hoc
interpreters on the same classifier, both scored by the one evaluator
(:func:`l2i.evaluation.evaluate_interpreter`) on the test split:

* ``authors``: attention pooling, log1p mask, τ 0.2, on the authors' dictionary;
* ``recipe``: Θ tied to the class blocks with a per-class offset, max pooling, and the interpretation options of
  ``experiments/instruments/posthoc_blocks.yaml`` (the separation gated by the classifier's decisions at 0.2).

Figures: ``instruments.ground_truth.<authors|recipe>.<all|single|multi>.<key>`` (the evaluator's ground-truth
keys), ``instruments.fidelity.<authors|recipe>``, the classifier's macro PR-AUC; the listening table
(:func:`experiments.listening.listening_table`: mixture, true source, both interpretations) under
``<out>/instruments/listening/index.html``. Nothing is tuned on the test split (the recipe's settings come from
the benchmark's validation split).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

__all__ = ["instruments_stage", "DEFAULTS"]

REPO = Path(__file__).resolve().parents[1]

#: the stage's default settings (each may be given in the stage's section of the demo config)
DEFAULTS: dict[str, Any] = {
    "instruments": ["piano", "violin", "cello", "flute", "trumpet", "clarinet"],
    "num_train": 240, "num_val": 24, "num_test": 48, "sample_rate": 8000, "duration_s": 2.0, "max_labels": 3,
    "classifier_epochs": 6, "posthoc_epochs": 3, "authors_components": 32, "block_components": 12,
    "nmf_epochs": 2, "batch_size": 16, "listening_clips": 4, "cache_dir": None,
}
#: the ground-truth keys reported (of the evaluator's ``ground_truth.<subset>.<key>``)
REPORTED = ("pairs", "interpretation_median", "mixture_median", "over_mixture_median", "better_than_mixture",
            "specificity", "other_class_median", "random_median", "oracle_median")


def _trainer(epochs: int):
    import lightning as L

    return L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)


def instruments_stage(ctx, settings: dict) -> dict:
    import lightning as L

    from datamodules.instruments import InstrumentDataModule
    from experiments.listening import listening_table
    from experiments.nmf import NMFSettings, learn_dictionary
    from l2i.evaluation import evaluate_interpreter
    from lightning_modules.classifier import ClassifierModule
    from lightning_modules.posthoc import PostHocInterpreterModule

    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"instruments stage: unknown setting(s) {unknown}; known: {sorted(DEFAULTS)}")
    s = {**DEFAULTS, **settings}
    out = ctx.stage_dir("instruments")
    figures: dict[str, Any] = {}
    t0 = time.perf_counter()
    dm = InstrumentDataModule(instruments=list(s["instruments"]), num_classes=len(s["instruments"]),
                              max_labels=int(s["max_labels"]), num_train=int(s["num_train"]), num_val=int(s["num_val"]),
                              num_test=int(s["num_test"]), sample_rate=int(s["sample_rate"]),
                              duration_s=float(s["duration_s"]), seed=ctx.seed, batch_size=int(s["batch_size"]),
                              cache_dir=s["cache_dir"])
    for split in ("train", "val", "test"):
        dm.dataset(split)
    figures["data_seconds"] = round(time.perf_counter() - t0, 2)
    fe = {"sample_rate": int(s["sample_rate"]), "n_fft": 512 if int(s["sample_rate"]) >= 16000 else 256,
          "hop_length": 256 if int(s["sample_rate"]) >= 16000 else 128, "n_mels": 64 if int(s["sample_rate"]) >= 16000 else 32,
          "top_db": 80.0}

    L.seed_everything(ctx.seed, verbose=False)
    clf = ClassifierModule(backbone="small_cnn", backbone_kwargs={"channels": [8, 16, 32, 32]}, frontend=fe,
                           task="multilabel", num_classes=dm.num_classes, class_names=dm.class_names, lr=5e-3)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _trainer(int(s["classifier_epochs"])).fit(clf, datamodule=dm)
    clf.eval().requires_grad_(False)
    figures["classifier_seconds"] = round(time.perf_counter() - start, 2)
    dm.setup("test")
    test = dm.test_dataloader()
    figures["classifier_prauc"] = _prauc(clf, test)

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain, _ = learn_dictionary(dm, fe, NMFSettings(n_components=int(s["authors_components"]), epochs=int(s["nmf_epochs"]),
                                                        seed=ctx.seed), out / "dictionary_authors.pt", device="cpu",
                                    save_images=False, progress=False, eval_split=None, threads=1)
        blocks, _ = learn_dictionary(dm, fe, NMFSettings(per_class_components=int(s["block_components"]),
                                                         per_class_source="single_label", epochs=int(s["nmf_epochs"]),
                                                         seed=ctx.seed), out / "dictionary_blocks.pt", device="cpu",
                                     save_images=False, progress=False, eval_split=None, threads=1)
    figures["dictionary_seconds"] = round(time.perf_counter() - start, 2)

    recipe_args = yaml.safe_load((REPO / "experiments/instruments/posthoc_blocks.yaml").read_text())["model"]["init_args"]
    schedule = {"reconstruction": {0: 5.0}, "fidelity": {1: 0.5, 2: 1.0}, "sparsity": {1: 0.4}}
    rows = {
        "authors": (plain, {"pooling": "attention", "threshold": 0.2}),
        "recipe": (blocks, {k: recipe_args[k] for k in ("pooling", "block_evidence", "theta_bias", "threshold",
                                                          "interpret_options")}),
    }
    entries = []
    for name, (art, options) in rows.items():
        L.seed_everything(ctx.seed, verbose=False)
        model = PostHocInterpreterModule(classifier=clf, dictionary=art, hidden=32, lr=5e-3, loss_weights=schedule,
                                         class_threshold=0.5, **options)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _trainer(int(s["posthoc_epochs"])).fit(model, datamodule=dm)
        model.eval().requires_grad_(False)
        figures[f"train_seconds.{name}"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        res = evaluate_interpreter(model, clf, test, threshold=float(model.hparams.threshold), noise_snr_db=None,
                                   seed=ctx.seed, device="cpu", classifier_thresholds=0.5, thresholds=0.5)
        figures[f"eval_seconds.{name}"] = round(time.perf_counter() - start, 2)
        for subset in ("all", "single", "multi"):
            for key in REPORTED:
                value = res.get(f"ground_truth.{subset}.{key}")
                if value is not None:
                    figures[f"ground_truth.{name}.{subset}.{key}"] = value
        figures[f"fidelity.{name}"] = res.get("fidelity.accuracy", res.get("fidelity.top1"))
        entries.append((name, model, clf))
    batch = next(iter(dm.test_dataloader()))
    page = listening_table(out / "listening", entries, batch, dm.class_names, clips=int(s["listening_clips"]))
    figures["listening"] = str(page["page"])
    _describe(ctx)
    return figures


@torch.no_grad()
def _prauc(clf, loader) -> float:
    from torchmetrics.functional.classification import multilabel_average_precision

    scores, targets = [], []
    for batch in loader:
        scores.append(clf(batch["waveform"]).sigmoid())
        targets.append(batch["target"].long())
    t = torch.cat(targets)
    return float(multilabel_average_precision(torch.cat(scores), t, num_labels=t.shape[1], average="macro"))


def _describe(ctx) -> None:
    d = ctx.descriptions
    d["instruments.data_seconds"] = "rendering (or reading the cached) instrument clips (s)"
    d["instruments.classifier_prauc"] = "the black box's macro PR-AUC on the instruments' test split"
    d["instruments.ground_truth"] = ("the evaluator's ground truth of the authors' settings and of the class-block recipe "
                                     "(posthoc_blocks.yaml), per subset: SI-SDR (dB) against the instrument's stem")
    d["instruments.listening"] = "listening table: mixture, true source, both interpretations"
