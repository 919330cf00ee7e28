"""The ``lmac`` pipeline stage: train the L-MAC-style mask decoder of the classifier (a benchmark row)."""

from __future__ import annotations

from typing import Any

__all__ = ["lmac_stage"]


def lmac_stage(ctx, settings: dict) -> dict:
    """Train the L-MAC decoder of ``ctx.artifacts["classifier"]`` (settings: ``config``, default
    experiments/synthetic/lmac.yaml; ``overrides``: extra CLI arguments). Sets ``ctx.artifacts["lmac"]``."""
    from callbacks.wandb_runs import nested_stage
    from experiments.stages import fit_stage_config

    if "classifier" not in ctx.artifacts:
        raise ValueError("lmac stage: no classifier artifact; run the 'classifier' stage first or give artifacts.classifier")
    with nested_stage("lmac", ctx.artifacts):  # trained on demand by the benchmark stage: its own job_type
        fit = fit_stage_config(ctx, "lmac", settings, "experiments/synthetic/lmac.yaml",
                               ["--model.init_args.classifier_checkpoint", str(ctx.artifacts["classifier"])], test=False)
    ctx.artifacts["lmac"] = str(fit.checkpoint)
    figures: dict[str, Any] = {"train_seconds": round(fit.train_seconds, 2), "epochs": int(fit.trainer.current_epoch),
                               "checkpoint": str(fit.checkpoint)}
    for key, value in fit.trainer.callback_metrics.items():
        if key.startswith("val/"):
            figures[key.replace("/", "_")] = float(value)
            ctx.descriptions[f"lmac.{key.replace('/', '_')}"] = f"{key} of the L-MAC decoder at the end of training"
    ctx.descriptions["lmac.train_seconds"] = "L-MAC decoder training time (s)"
    ctx.descriptions["lmac.checkpoint"] = "trained L-MAC decoder"
    return figures
