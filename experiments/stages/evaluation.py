"""The ``evaluation`` pipeline stage: the evaluation suite of ``l2i evaluate`` for the post-hoc interpreter the
``posthoc`` stage trained."""

from __future__ import annotations

import json

import torch

from experiments.evaluate import evaluate_checkpoint, write_results

__all__ = ["evaluation_stage"]


def evaluation_stage(ctx, settings: dict) -> dict:
    """Pipeline stage: the suite for ``ctx.artifacts["interpreter"]`` (settings: ``config`` (the interpreter's fit
    config, default experiments/synthetic/posthoc.yaml), ``noise_snr_db`` (list, default [10]), ``overlap`` (λ or
    null, default 1.0), ``max_batches`` (default 4), ``threshold``). Returns the figures (``<family>.<key>``)."""
    from callbacks.wandb_runs import stage_run
    from l2i.evaluation import DESCRIPTIONS

    if "interpreter" not in ctx.artifacts:
        raise ValueError("the evaluation stage needs an interpreter: run the 'posthoc' stage first")
    config = settings.get("config", "experiments/synthetic/posthoc.yaml")
    out = ctx.stage_dir("evaluation")
    # the stage's own W&B run (job_type "evaluation", the pipeline's group), its figures in the run's summary
    with stage_run(out, "evaluation", "evaluation", {"evaluation": json.loads(json.dumps(settings, default=str))}) as run:
        results = evaluate_checkpoint(
            config, ctx.artifacts["interpreter"], split="test", threshold=settings.get("threshold"),
            noise_snr_db=settings.get("noise_snr_db", [10.0]), overlap=settings.get("overlap", 1.0),
            max_batches=settings.get("max_batches", 4), seed=ctx.seed,
            device=settings.get("device", "cuda" if torch.cuda.is_available() else "cpu"),
        )
        write_results(results, out, "evaluation suite (synthetic test split)", dict(settings))
        if run is not None:
            try:
                run.summary.update({k: v for k, v in results.items() if isinstance(v, (int, float))})
            except Exception:  # noqa: BLE001 - W&B never takes the stage down
                pass
    for key in results:
        family = key.split(".")[0] if not key.startswith("overlap.") else key.split(".")[1]
        family = "noise" if family.startswith("noise_") else family
        ctx.descriptions.setdefault(f"evaluation.{key}", DESCRIPTIONS.get(family, ""))
    return results
