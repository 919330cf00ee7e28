"""The ``bydesign`` pipeline stage: train the by-design model with the classifier's backbone and budget,
test it, and score its interpretations with the evaluation suite (same clips as the post-hoc interpreter)."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["bydesign_stage"]


def bydesign_stage(ctx, settings: dict) -> dict:
    """settings: ``config`` (default experiments/synthetic/bydesign.yaml), ``overrides`` (CLI arguments),
    ``from_classifier`` (start the front-end and backbone from the classifier stage's checkpoint instead of from
    scratch: ``model.init_args.classifier_checkpoint``; default false), ``threshold`` (relevance τ),
    ``max_batches`` (test batches scored by the suite, default all), ``noise_snr_db`` (default none)."""
    from experiments.stages import fit_stage_config
    from l2i.evaluation import DESCRIPTIONS, evaluate_interpreter
    from lightning_modules.artifacts import load_artifact

    if "dictionary" not in ctx.artifacts:
        raise ValueError("bydesign stage: no dictionary artifact; run the 'dictionary' stage first")
    extra = ["--model.init_args.dictionary_path", str(ctx.artifacts["dictionary"])]
    if settings.get("from_classifier"):
        if "classifier" not in ctx.artifacts:
            raise ValueError("bydesign stage: from_classifier is set but there is no classifier artifact; run the "
                             "'classifier' stage first")
        extra += ["--model.init_args.classifier_checkpoint", str(ctx.artifacts["classifier"])]
    run = fit_stage_config(ctx, "bydesign", settings, "experiments/synthetic/bydesign.yaml", extra)
    final = run.checkpoint
    ctx.artifacts["bydesign"] = str(final)
    figures: dict[str, Any] = {}
    for key, value in run.test.items():
        name = key.replace("test/", "test_")
        figures[name] = value
        ctx.descriptions[f"bydesign.{name}"] = f"{key} of the by-design model (its prediction is Θ(H)) on the test split"
    black_box = ctx.report.get("classifier.test_accuracy")
    if black_box is not None and "test_accuracy" in figures:
        figures["accuracy_gap"] = round(float(black_box) - figures["test_accuracy"], 4)
        ctx.descriptions["bydesign.accuracy_gap"] = "black-box classifier minus by-design test accuracy (target <= 0.02)"

    model = load_artifact(final, "bydesign", verb="the bydesign stage").to("cpu")
    dm = run.datamodule
    dm.setup("test")
    start = time.perf_counter()
    scores = evaluate_interpreter(
        model, model.as_classifier(), dm.test_dataloader(), threshold=float(settings.get("threshold", model.hparams.threshold)),
        noise_snr_db=settings.get("noise_snr_db") or None, max_batches=settings.get("max_batches"), seed=ctx.seed,
    )
    for key, value in scores.items():
        figures[key] = value
        ctx.descriptions.setdefault(f"bydesign.{key}", DESCRIPTIONS.get(key.split(".")[0], ""))
    figures["train_seconds"] = round(run.train_seconds, 2)
    figures["eval_seconds"] = round(time.perf_counter() - start, 2)
    figures["epochs"] = int(run.trainer.current_epoch)
    figures["checkpoint"] = str(final)
    ctx.descriptions["bydesign.train_seconds"] = "by-design training time (s)"
    ctx.descriptions["bydesign.checkpoint"] = "trained by-design model"
    return figures
