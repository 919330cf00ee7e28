"""The pipeline's stages, one per file, and the helper they are built on.

A stage is a function ``(ctx, settings) -> figures``: it reads what earlier stages left in the
:class:`~experiments.pipeline.PipelineContext` (artifact paths), does its work in ``<out>/<stage>`` and returns
flat figures that land in the report as ``<stage>.<key>``. :data:`LAZY_STAGES` names each stage's module, imported
only when a pipeline uses it; :func:`register_stage` adds a stage defined elsewhere. A stage that trains a
LightningCLI config does it through :func:`fit_stage_config` (which returns a :class:`FitResult`).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from callbacks.wandb_runs import finish_loggers

if TYPE_CHECKING:
    from experiments.pipeline import PipelineContext

__all__ = ["STAGES", "LAZY_STAGES", "register_stage", "get_stage", "FitResult", "fit_stage_config", "finish_loggers"]

StageFn = Callable[["PipelineContext", dict], dict]
STAGES: dict[str, StageFn] = {}
#: every stage, ``name -> "module:function"``, imported when a pipeline uses it
LAZY_STAGES: dict[str, str] = {
    "classifier": "experiments.stages.classifier:classifier_stage",
    "dictionary": "experiments.stages.dictionary:dictionary_stage",
    "posthoc": "experiments.stages.posthoc:posthoc_stage",
    "bydesign": "experiments.stages.bydesign:bydesign_stage",
    "evaluation": "experiments.stages.evaluation:evaluation_stage",
    "lmac": "experiments.stages.lmac:lmac_stage",
    "benchmark": "experiments.stages.benchmark:benchmark_stage",
    "instruments": "experiments.stages.instruments:instruments_stage",
}


def register_stage(name: str) -> Callable[[StageFn], StageFn]:
    def deco(fn: StageFn) -> StageFn:
        STAGES[name] = fn
        return fn

    return deco


def get_stage(name: str) -> StageFn:
    """The stage function registered under ``name`` (importing its module for lazy stages)."""
    if name not in STAGES and name in LAZY_STAGES:
        import importlib

        module, func = LAZY_STAGES[name].split(":")
        STAGES[name] = getattr(importlib.import_module(module), func)
    if name not in STAGES:
        raise ValueError(f"unknown pipeline stage {name!r}; known stages: {sorted({*STAGES, *LAZY_STAGES})}")
    return STAGES[name]


@dataclass
class FitResult:
    """What :func:`fit_stage_config` leaves: the trained module, its DataModule and trainer, the copied best
    checkpoint, the test metrics (``test/…`` keys, empty when not tested) and the fit time (s)."""

    trainer: Any
    model: Any
    datamodule: Any
    checkpoint: Path
    test: dict[str, float]
    train_seconds: float


def fit_stage_config(ctx: PipelineContext, stage: str, settings: dict, default_config: str,
                     extra_args: list[str] = (), test: bool = True) -> FitResult:
    """Fit a LightningCLI config as a pipeline stage: run folder ``<out>/<stage>``, the context's seed, W&B run
    ``<stage>``, extra arguments (paths of earlier artifacts) and ``settings["overrides"]``; then copy the best
    checkpoint to ``<out>/<stage>/<stage>.ckpt`` and (``test``) test it. The arguments are written to
    ``<out>/<stage>/args.yaml`` so the run can be repeated; the resolved config is ``<out>/<stage>/config.yaml``
    (``l2i fit --config`` reads it), the checkpoints ``<out>/<stage>/checkpoints/{best,last}.ckpt``."""
    from experiments.cli import lightning_cli

    out = ctx.stage_dir(stage)
    args = ["--config", settings.get("config", default_config)]
    args += ["--seed_everything", str(ctx.seed), "--trainer.default_root_dir", str(out)]
    # the stage's W&B run, CSV mirror, config.yaml and checkpoints/ all live in <out>/<stage>
    args += ["--trainer.logger.init_args.save_dir", str(out), "--trainer.logger.init_args.name", stage]
    args += [str(a) for a in extra_args] + [str(a) for a in settings.get("overrides", [])]
    cli = lightning_cli(args, run=False)
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    train_seconds = time.perf_counter() - start
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    results = trainer.test(model, datamodule=dm, ckpt_path=best or None, verbose=False)[0] if test else {}
    final = out / f"{stage}.ckpt"
    if best:
        shutil.copyfile(best, final)
    else:
        trainer.save_checkpoint(final)
    (out / "args.yaml").write_text(yaml.safe_dump({"command": "l2i fit", "args": args}, sort_keys=False))
    finish_loggers(trainer)
    return FitResult(trainer, model, dm, final, {k: float(v) for k, v in results.items()}, train_seconds)
