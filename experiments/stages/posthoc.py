"""The ``posthoc`` pipeline stage (``l2i demo``): train the interpreter of ``ctx.artifacts["classifier"]`` with the
dictionary ``ctx.artifacts["dictionary"]`` and score it on the synthetic test split with the project's one evaluator,
:func:`l2i.evaluation.evaluate_interpreter`: fidelity, faithfulness (probability drop when the chosen vs random
components are removed), L-MAC's mask metrics and the ground-truth report (per class present: interpretation vs
mixture, another class's interpretation, random / all components, ideal ratio mask; single- and multi-source
clips apart). Its figures land in the report as ``posthoc.<family>.<key>``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from experiments.interpret import write_interpretations

__all__ = ["score_posthoc", "SCORE_DESCRIPTIONS", "posthoc_stage"]


# -- scoring ----------------------------------------------------------------------------------------------

#: what the non-family keys of :func:`score_posthoc` mean
SCORE_DESCRIPTIONS = {
    "threshold": "relevance threshold τ of the interpretations",
    "components_mean": "mean number of chosen components per interpretation",
    "clips": "test clips scored",
    "random_baseline": "1 when the random-component baselines were computed",
}


@torch.no_grad()
def score_posthoc(model, classifier_checkpoint: str, batches, *, threshold: float | None = None, mask_mode: str | None = None,
                  seed: int = 0, max_batches: int | None = None) -> dict:
    """The post-hoc interpreter ``model`` scored by :func:`l2i.evaluation.evaluate_interpreter` (no noise
    experiment), explaining the classifier of ``classifier_checkpoint``; ``mask_mode`` (default: the model's
    ``interpret_options``, else log1p) is passed to every ``interpret``. Returns the suite's flat ``family.key`` figures (but ``seconds``) plus ``threshold``."""
    from l2i.evaluation import evaluate_interpreter
    from lightning_modules.artifacts import load_artifact

    device = next(model.parameters()).device
    classifier = load_artifact(classifier_checkpoint, "classifier", map_location=device, verb="scoring an interpreter")
    tau = float(model.hparams.threshold if threshold is None else threshold)
    cls_thr = float(model.hparams.class_threshold)
    scores = evaluate_interpreter(model, classifier, batches, threshold=tau, thresholds=cls_thr, classifier_thresholds=cls_thr,
                                  noise_snr_db=None, seed=seed, max_batches=max_batches, device=device,
                                  interpret_kwargs={} if mask_mode is None else {"mask_mode": mask_mode})
    scores.pop("seconds", None)  # the stage reports its own eval_seconds
    scores["threshold"] = tau
    return scores


# -- the pipeline stage ----------------------------------------------------------------------------------


def _write_examples(model, dm, n_examples: int, out: Path, threshold: float | None) -> None:
    """The interpretations of the first ``n_examples`` test clips as files (:func:`write_interpretations`)."""
    if n_examples <= 0:
        return
    test = dm.dataset("test") if hasattr(dm, "dataset") else dm.test_dataloader().dataset
    items = [test[i] for i in range(min(n_examples, len(test)))]
    write_interpretations(model, torch.stack([x["waveform"] for x in items]), [x.get("id", str(i)) for i, x in enumerate(items)],
                          out, threshold=threshold)


def posthoc_stage(ctx, settings: dict) -> dict:
    """Train the post-hoc interpreter of the demo classifier and score it on the synthetic test split.

    settings:
        config: posthoc LightningCLI config (default ``experiments/synthetic/posthoc.yaml``).
        overrides: extra CLI arguments (list).
        threshold: relevance threshold τ for the evaluation (default: the model's).
        mask_mode: ``log1p`` or ``share`` (default: the model's ``interpret_options``, else ``log1p``).
        max_batches: test batches scored (default all).
        examples: number of test clips whose interpretations are written (WAV/JSON/PNG), default 4.
    """
    from experiments.cli import lightning_cli

    if "classifier" not in ctx.artifacts:
        raise ValueError("posthoc stage: no classifier artifact; run the 'classifier' stage first")
    out = ctx.stage_dir("posthoc")
    dictionary_path = ctx.artifacts.get("dictionary")
    if not dictionary_path:
        raise ValueError("posthoc stage: no dictionary artifact; run the 'dictionary' stage first (l2i nmf learns it)")
    args = ["--config", settings.get("config", "experiments/synthetic/posthoc.yaml")]
    args += ["--seed_everything", str(ctx.seed), "--trainer.default_root_dir", str(out)]
    args += ["--trainer.logger.init_args.save_dir", str(ctx.out_dir), "--trainer.logger.init_args.name", "posthoc"]
    args += ["--model.init_args.classifier_checkpoint", str(ctx.artifacts["classifier"])]
    figures: dict[str, Any] = {}
    args += ["--model.init_args.dictionary_path", str(dictionary_path)]
    args += [str(a) for a in settings.get("overrides", [])]
    cli = lightning_cli(args, run=False)
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    figures["train_seconds"] = round(time.perf_counter() - start, 2)
    ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    final = out / "interpreter.ckpt"
    if ckpt:
        shutil.copyfile(ckpt, final)
        from lightning_modules.artifacts import load_artifact

        model = load_artifact(final, "posthoc", verb="the posthoc stage")
    else:
        trainer.save_checkpoint(final)
    ctx.artifacts["interpreter"] = str(final)
    from experiments.stages import finish_loggers

    finish_loggers(trainer)
    (out / "config.yaml").write_text(yaml.safe_dump({"args": args}, sort_keys=False))
    model.eval()
    dm.setup("test")
    start = time.perf_counter()
    scores = score_posthoc(model, ctx.artifacts["classifier"], dm.test_dataloader(), threshold=settings.get("threshold"),
                           mask_mode=settings.get("mask_mode"), seed=ctx.seed, max_batches=settings.get("max_batches"))
    figures["eval_seconds"] = round(time.perf_counter() - start, 2)
    _write_examples(model, dm, int(settings.get("examples", 4)), out / "examples", settings.get("threshold"))
    from l2i.evaluation import DESCRIPTIONS

    for key, value in scores.items():
        figures[key] = value
        family = key.split(".")[0]
        ctx.descriptions[f"posthoc.{key}"] = DESCRIPTIONS.get(family, SCORE_DESCRIPTIONS.get(key, ""))
    ctx.descriptions["posthoc.train_seconds"] = "interpreter training time (s)"
    ctx.descriptions["posthoc.eval_seconds"] = "evaluation time on the test split (s)"
    figures["epochs"] = int(trainer.current_epoch)
    figures["checkpoint"] = str(final)
    ctx.descriptions["posthoc.checkpoint"] = "trained post-hoc interpreter"
    return figures
