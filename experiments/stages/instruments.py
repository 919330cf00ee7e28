"""``l2i demo`` stage ``instruments``: the real-recording set, tiny, the authors' settings beside the recipe.

On :class:`datamodules.instruments.InstrumentDataModule` (sampled instruments, stems known; rendered once into
the cache), all in-process and small: a ``small_cnn`` multilabel classifier, two dictionaries (the authors':
one NMF of the clips; the recipe's: class blocks learnt on the single-instrument clips), two post-hoc
interpreters on the same classifier, both scored by the one evaluator
(:func:`l2i.evaluation.evaluate_interpreter`) on the test split:

* ``authors``: attention pooling, log1p mask, τ 0.2, on the authors' dictionary;
* ``recipe``: as ``experiments/instruments/posthoc_blocks.yaml`` sets it (:data:`RECIPE_KEYS`): Θ tied to the class
  blocks with a per-class offset, max pooling, Ψ trained with the classifier-gated block loss, and its
  interpretation options (the separation gated by the interpreter's own decisions).

Figures: ``instruments.ground_truth.<authors|recipe>.<all|single|multi>.<key>`` (the evaluator's ground-truth
keys), ``instruments.fidelity.<authors|recipe>``, the classifier's macro PR-AUC, each phase's wall and CPU time
(``<phase>_seconds``, ``<phase>_cpu_seconds``); both ground-truth tables as ``l2i evaluate`` prints them in
``<out>/instruments/ground_truth.md``; the listening table (:func:`experiments.listening.listening_table`:
mixture, true source, both interpretations, each at its own threshold and options; clips with several
instruments first) under
``<out>/instruments/listening/index.html``, also logged with the ground-truth table to the stage's W&B run
(offline by default, ``<out>/instruments/wandb``). Nothing is tuned on the test split (the recipe's settings
come from the benchmark's validation split).
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from pathlib import Path
from typing import Any

import torch

__all__ = ["instruments_stage", "DEFAULTS"]

REPO = Path(__file__).resolve().parents[2]
#: the recipe's settings are read from here (its post-hoc overlay), never copied
RECIPE = "experiments/instruments/posthoc_blocks.yaml"
#: what the stage takes from the recipe (its epochs and data stay the stage's own, small ones)
RECIPE_KEYS = ("pooling", "block_evidence", "theta_bias", "block_gate", "block_gate_threshold", "threshold",
               "interpret_options")

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


class _Clock:
    """Wall and CPU time (user + system, every thread) of the stage's phases: ``<phase>_seconds`` and
    ``<phase>_cpu_seconds`` in the figures."""

    def __init__(self, figures: dict):
        self.figures = figures

    @contextlib.contextmanager
    def __call__(self, phase: str):
        from experiments.pipeline import cpu_seconds

        wall, cpu = time.perf_counter(), cpu_seconds()
        try:
            yield
        finally:
            self.figures[f"{phase}_seconds"] = round(time.perf_counter() - wall, 2)
            self.figures[f"{phase}_cpu_seconds"] = round(cpu_seconds() - cpu, 2)


def instruments_stage(ctx, settings: dict) -> dict:
    import lightning as L

    from datamodules.instruments import InstrumentDataModule
    from experiments.listening import listening_table
    from l2i.evaluation import evaluate_interpreter, ground_truth_markdown
    from lightning_modules.classifier import ClassifierModule
    from lightning_modules.posthoc import PostHocInterpreterModule

    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"instruments stage: unknown setting(s) {unknown}; known: {sorted(DEFAULTS)}")
    s = {**DEFAULTS, **settings}
    out = ctx.stage_dir("instruments")
    figures: dict[str, Any] = {}
    clock = _Clock(figures)
    dm = InstrumentDataModule(instruments=list(s["instruments"]), num_classes=len(s["instruments"]),
                              max_labels=int(s["max_labels"]), num_train=int(s["num_train"]), num_val=int(s["num_val"]),
                              num_test=int(s["num_test"]), sample_rate=int(s["sample_rate"]),
                              duration_s=float(s["duration_s"]), seed=ctx.seed, batch_size=int(s["batch_size"]),
                              cache_dir=s["cache_dir"])
    with clock("data"):
        for split in ("train", "val", "test"):
            dm.dataset(split)
    fe = _frontend(int(s["sample_rate"]))

    L.seed_everything(ctx.seed, verbose=False)
    clf = ClassifierModule(backbone="small_cnn", backbone_kwargs={"channels": [8, 16, 32, 32]}, frontend=fe,
                           task="multilabel", num_classes=dm.num_classes, class_names=dm.class_names, lr=5e-3)
    with clock("classifier"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _trainer(int(s["classifier_epochs"])).fit(clf, datamodule=dm)
    clf.eval().requires_grad_(False)
    dm.setup("test")
    test = dm.test_dataloader()
    figures["classifier_prauc"] = _prauc(clf, test)

    with clock("dictionary"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain, blocks = _dictionaries(dm, fe, s, out, ctx.seed)

    schedule = {"reconstruction": {0: 5.0}, "fidelity": {1: 0.5, 2: 1.0}, "sparsity": {1: 0.4}}
    rows = {"authors": (plain, {"pooling": "attention", "threshold": 0.2}), "recipe": (blocks, _recipe(schedule))}
    entries, tables = [], [f"# Real recordings: the authors' settings and the recipe ({dm.num_classes} instruments, "
                           f"test split, {len(test.dataset)} clips, seed {ctx.seed})", ""]
    for name, (art, options) in rows.items():
        L.seed_everything(ctx.seed, verbose=False)
        model = PostHocInterpreterModule(classifier=clf, dictionary=art, hidden=32, lr=5e-3, class_threshold=0.5,
                                         **{"loss_weights": schedule, **options})
        with clock(f"train.{name}"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _trainer(int(s["posthoc_epochs"])).fit(model, datamodule=dm)
        model.eval().requires_grad_(False)
        with clock(f"eval.{name}"):
            res = evaluate_interpreter(model, clf, test, threshold=float(model.hparams.threshold), noise_snr_db=None,
                                       seed=ctx.seed, device="cpu", classifier_thresholds=0.5, thresholds=0.5)
        for subset in ("all", "single", "multi"):
            for key in REPORTED:
                value = res.get(f"ground_truth.{subset}.{key}")
                if value is not None:
                    figures[f"ground_truth.{name}.{subset}.{key}"] = value
        figures[f"fidelity.{name}"] = res.get("fidelity.accuracy", res.get("fidelity.top1"))
        tables.append(ground_truth_markdown(res, title=f"{name}: SI-SDR (dB) against the instrument's stem, median (mean)"))
        entries.append((name, model, clf))
    with clock("listening"):
        batch = several_first(next(iter(dm.test_dataloader())), int(s["listening_clips"]))
        # each interpreter at its own threshold and interpretation options: what the evaluator scored
        page = listening_table(out / "listening", entries, batch, dm.class_names, threshold=None,
                               clips=int(s["listening_clips"]),
                               title="Real recordings — mixture, true source, the authors' settings and the recipe")
    figures["listening"] = str(page["page"])
    figures["ground_truth_md"] = str(out / "ground_truth.md")
    (out / "ground_truth.md").write_text("\n".join(tables))
    figures["wandb"] = _log_wandb(ctx, out, s, figures, page)
    _describe(ctx, figures)
    return figures



def _frontend(rate: int) -> dict:
    """The stage's front-end at ``rate`` Hz (the instruments' classifier's at 16 kHz, half the sizes below)."""
    wide = rate >= 16000
    return {"sample_rate": rate, "n_fft": 512 if wide else 256, "hop_length": 256 if wide else 128,
            "n_mels": 64 if wide else 32, "top_db": 80.0}


def _dictionaries(dm, fe: dict, s: dict, out: Path, seed: int):
    """The authors' dictionary (one NMF of the clips) and the recipe's class blocks (learnt on the
    single-instrument clips), saved in ``out``; returns both artifacts."""
    from experiments.nmf import NMFSettings, learn_dictionary

    common = dict(device="cpu", save_images=False, progress=False, eval_split=None, threads=1)
    plain, _ = learn_dictionary(dm, fe, NMFSettings(n_components=int(s["authors_components"]), epochs=int(s["nmf_epochs"]),
                                                    seed=seed), out / "dictionary_authors.pt", **common)
    blocks, _ = learn_dictionary(dm, fe, NMFSettings(per_class_components=int(s["block_components"]),
                                                     per_class_source="single_label", epochs=int(s["nmf_epochs"]),
                                                     seed=seed), out / "dictionary_blocks.pt", **common)
    return plain, blocks


def _recipe(schedule: dict) -> dict:
    """The recipe's post-hoc settings (:data:`RECIPE_KEYS` of :data:`RECIPE`); Ψ trained as the recipe trains it:
    with the classifier-gated block loss at the recipe's weight, beside the stage's short ``schedule``."""
    from experiments.cli import read_config

    recipe_args = read_config(REPO / RECIPE)["model"]["init_args"]
    recipe = {k: recipe_args[k] for k in RECIPE_KEYS if k in recipe_args}
    if recipe.get("block_gate"):
        recipe["loss_weights"] = {**schedule, "block_gate": recipe_args["loss_weights"]["block_gate"]}
    return recipe

def _log_wandb(ctx, out: Path, settings: dict, figures: dict, listening: dict) -> str:
    """The stage's W&B run (offline by default, in ``<out>/wandb``): its settings, the ground-truth figures (as
    metrics and as the table ``ground_truth``, one row per interpreter) and the listening table ``listening``
    (:func:`experiments.listening.log_listening`: audio of the mixture, the true source and both interpretations).
    Returns ``"ok"`` or why not (logging never takes the stage down)."""
    try:
        from callbacks.safe_logging import SafeWandbLogger
        from experiments.listening import log_listening

        logger = SafeWandbLogger(project="listen-to-interpret", name="instruments", save_dir=str(out), csv=False)
        logger.log_hyperparams({"instruments": json.loads(json.dumps(settings, default=str)), "seed": ctx.seed,
                                "recipe": RECIPE})
        logger.log_metrics({f"instruments/{k}": float(v) for k, v in figures.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool) and "seconds" not in k})
        columns = [f"{subset}.{key}" for subset in ("multi", "single", "all") for key in REPORTED]
        columns = [c for c in columns if any(f"ground_truth.{n}.{c}" in figures for n in ("authors", "recipe"))]
        logger.log_table(key="ground_truth", columns=["interpreter", "fidelity", *columns],
                         data=[[n, figures.get(f"fidelity.{n}"), *[figures.get(f"ground_truth.{n}.{c}") for c in columns]]
                               for n in ("authors", "recipe")])
        log_listening(logger, listening)
        logger.finalize("success")
        run = getattr(logger, "_experiment", None)
        if run is not None and hasattr(run, "finish"):
            run.finish()  # a run left open would be reused by the next stage's logger in this process
        return "ok" if logger.failed is None else str(logger.failed)
    except Exception as err:  # noqa: BLE001 - W&B is a convenience, never a reason to fail the stage
        return f"{type(err).__name__}: {err}"


def several_first(batch: dict, clips: int) -> dict:
    """The first ``clips`` clips of ``batch`` with those of several instruments first (where an interpretation has
    something to separate; a single-instrument clip's mixture already is its source), in their order."""
    n = int(batch["waveform"].shape[0])
    several = batch["target"].sum(-1) >= 2
    order = torch.cat([torch.nonzero(several).flatten(), torch.nonzero(~several).flatten()])[: max(int(clips), 0)]
    picked = order.tolist()

    def take(v):
        if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == n:
            return v[order]
        if isinstance(v, (list, tuple)) and len(v) == n:
            return [v[i] for i in picked]
        return v

    return {k: take(v) for k, v in batch.items()}


@torch.no_grad()
def _prauc(clf, loader) -> float:
    from torchmetrics.functional.classification import multilabel_average_precision

    scores, targets = [], []
    for batch in loader:
        scores.append(clf(batch["waveform"]).sigmoid())
        targets.append(batch["target"].long())
    t = torch.cat(targets)
    return float(multilabel_average_precision(torch.cat(scores), t, num_labels=t.shape[1], average="macro"))


def _describe(ctx, figures: dict) -> None:
    from l2i.evaluation import DESCRIPTIONS

    d = ctx.descriptions
    who = {"authors": "the authors' settings (attention pooling, log1p mask, τ 0.2)",
           "recipe": f"the class-block recipe ({RECIPE})"}
    phases = {"data": "rendering (or reading the cached) instrument clips", "classifier": "training the black box",
              "dictionary": "learning both dictionaries", "listening": "writing the listening table"}
    for key in figures:
        full = f"instruments.{key}"
        parts = key.split(".")
        if parts[0] == "ground_truth":
            d[full] = f"{who[parts[1]]}: {DESCRIPTIONS['ground_truth']}"
        elif parts[0] == "fidelity":
            d[full] = f"{who[parts[1]]}: {DESCRIPTIONS['fidelity']}"
        elif key.endswith("_seconds"):
            phase = key.rsplit("_cpu_seconds" if key.endswith("_cpu_seconds") else "_seconds", 1)[0]
            what = phases.get(phase) or (f"training the {phase.split('.')[1]} interpreter" if phase.startswith("train.")
                                         else f"scoring the {phase.split('.')[1]} interpreter with the evaluator")
            d[full] = f"{what}: {'CPU time, user + system' if key.endswith('_cpu_seconds') else 'wall time'} (s)"
    d["instruments.classifier_prauc"] = "the black box's macro PR-AUC on the instruments' test split"
    d["instruments.listening"] = "listening table: mixture, true source, both interpretations, side by side"
    d["instruments.ground_truth_md"] = "both ground-truth tables of the evaluator (as `l2i evaluate` prints them)"
    d["instruments.wandb"] = "W&B run of the stage (settings, ground-truth table, listening table): 'ok', or why not"
