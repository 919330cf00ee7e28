"""The ``classifier`` pipeline stage: train the black-box classifier f, test its best checkpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from experiments.stages import fit_stage_config

if TYPE_CHECKING:
    from experiments.pipeline import PipelineContext

__all__ = ["classifier_stage"]


def classifier_stage(ctx: PipelineContext, settings: dict) -> dict:
    """Train the black-box classifier f from a LightningCLI config, test its best checkpoint.

    settings: ``config`` (path of a ``l2i fit`` config), ``overrides`` (extra CLI arguments, list).
    """
    run = fit_stage_config(ctx, "classifier", settings, "experiments/synthetic/classifier.yaml")
    ctx.artifacts["classifier"] = str(run.checkpoint)
    figures: dict[str, Any] = {}
    for key, value in run.test.items():
        name = key.replace("test/", "test_")
        figures[name] = value
        ctx.descriptions[f"classifier.{name}"] = f"{key} of the classifier on the test split"
    figures["epochs"] = int(run.trainer.current_epoch)
    figures["train_seconds"] = round(run.train_seconds, 2)
    figures["checkpoint"] = str(run.checkpoint)
    hparams = getattr(run.model, "hparams", {}) or {}
    if hparams.get("backbone"):
        figures["backbone"] = str(hparams["backbone"])
        ctx.descriptions["classifier.backbone"] = "the classifier's backbone"
    figures["data"] = type(run.datamodule).__name__
    ctx.descriptions["classifier.data"] = "the data module it was trained on"
    ctx.descriptions["classifier.epochs"] = "training epochs run"
    ctx.descriptions["classifier.train_seconds"] = "classifier training time (s)"
    ctx.descriptions["classifier.checkpoint"] = "trained classifier (input of later stages)"
    return figures
