"""``l2i evaluate --config <interpreter fit config> --ckpt <interpreter checkpoint>``: the evaluation suite of
:mod:`l2i.evaluation` for a trained interpreter -> one JSON and one markdown table.

The config is the ``l2i fit`` config the interpreter was trained with (its ``model.class_path`` names the
LightningModule — anything with ``interpret(...)`` — and its ``data`` section the DataModule). The checkpoint
is loaded with ``<class>.load_from_checkpoint``; the explained classifier f is the module's ``classifier``, else
the checkpoint named by its ``hparams.classifier_checkpoint`` (loaded frozen), else its own
``frontend`` + ``backbone``. Writes ``<out_dir>/evaluation.json`` (flat ``family.key -> value``, plus the
settings) and ``<out_dir>/evaluation.md``; on data with known sources the markdown (and the printout) opens with
the ground-truth report as one table (:func:`l2i.evaluation.ground_truth_markdown`: per estimate of class c's
source, median (mean) SI-SDR on all, single- and multi-source clips, the share of pairs better than the mixture,
the specificity). With ``--overlap λ`` the suite also runs on overlap mixtures
(clip A + λ·clip B of another class) of the same split, under ``overlap.*`` keys.

:func:`evaluation_stage` is the same as a pipeline stage (``l2i demo``): it evaluates
``ctx.artifacts["interpreter"]`` on the synthetic test split and returns the figures for the report.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

__all__ = ["main", "evaluate_checkpoint", "evaluation_stage", "FrozenClassifier"]


class FrozenClassifier(nn.Module):
    """f from a module's ``frontend`` + ``backbone``: ``waveform (B, N) -> logits (B, C)``."""

    def __init__(self, frontend: nn.Module, backbone: nn.Module, task: str):
        super().__init__()
        self.frontend, self.backbone, self.task = frontend, backbone, task

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.frontend(waveform).logmel)


def _import(class_path: str):
    module, _, name = class_path.rpartition(".")
    if not module:
        raise ValueError(f"class_path must be 'module.Class', got {class_path!r}")
    return getattr(importlib.import_module(module), name)


def _section(config: dict, key: str) -> tuple[Any, dict]:
    sec = config.get(key)
    if not isinstance(sec, dict) or "class_path" not in sec:
        raise ValueError(f"evaluate: the config's '{key}' section needs a class_path (and init_args)")
    return _import(sec["class_path"]), dict(sec.get("init_args") or {})


def classifier_for(module, device: torch.device | str = "cpu"):
    """The black box f explained by ``module`` (see the module docstring)."""
    clf = getattr(module, "classifier", None)
    if isinstance(clf, nn.Module):
        return clf
    path = getattr(getattr(module, "hparams", {}), "get", lambda *_: None)("classifier_checkpoint")
    if path and Path(path).is_file():
        from lightning_modules.classifier import ClassifierModule

        return ClassifierModule.load_frozen(path, map_location=device)
    if getattr(module, "frontend", None) is not None and getattr(module, "backbone", None) is not None:
        return FrozenClassifier(module.frontend, module.backbone, getattr(module, "task", "multiclass")).eval()
    raise ValueError(f"{type(module).__name__} exposes no classifier (classifier, hparams.classifier_checkpoint, or frontend + backbone)")


def evaluate_checkpoint(
    config: dict,
    ckpt: str | None,
    *,
    split: str = "test",
    threshold: float | None = None,
    noise_snr_db: list[float] | None = (10.0,),
    overlap: float | None = None,
    max_batches: int | None = None,
    batch_size: int | None = None,
    device: str = "cpu",
    seed: int = 0,
    tune: bool = False,
    thresholds: list[float] | float | None = None,
    classifier_thresholds: list[float] | float | None = None,
    protocol: str = "project",
) -> dict[str, float]:
    """Load the interpreter (``ckpt``, or the config's untrained model when ``None``) and its data; run the suite.

    ``protocol="authors"`` adds the authors' figures (:func:`l2i.evaluation.authors.evaluate_authors_protocol`)
    under ``authors.*`` keys."""
    from torch.utils.data import DataLoader

    from l2i.evaluation import OverlapMixtures, evaluate_interpreter, tune_interpreter_thresholds

    model_cls, model_args = _section(config, "model")
    data_cls, data_args = _section(config, "data")
    if batch_size:
        data_args["batch_size"] = int(batch_size)
    dm = data_cls(**data_args)
    if ckpt:
        from l2i.checkpoints import safe_load

        safe_load(ckpt, what="interpreter checkpoint")  # clear refusal of missing / unsafe files, naming them
        module = model_cls.load_from_checkpoint(ckpt, map_location=device, weights_only=True)
    else:
        module = model_cls(**model_args)
    module.eval().to(device)
    module.requires_grad_(False)
    classifier = classifier_for(module, device)
    classifier.eval().to(device)
    dm.setup("test" if split == "test" else "validate")
    loader = dm.test_dataloader() if split == "test" else dm.val_dataloader()
    tau = float(threshold if threshold is not None else getattr(getattr(module, "hparams", {}), "get", lambda *_: None)("threshold") or 0.2)
    task = getattr(classifier, "task", None) or getattr(module, "task", None)
    hp = getattr(module, "hparams", {})
    clf_thr = classifier_thresholds if classifier_thresholds is not None else (hp.get("class_threshold") if hasattr(hp, "get") else None)
    common = dict(task=task, threshold=tau, max_batches=max_batches, seed=seed, device=device,
                  classifier_thresholds=0.5 if clf_thr is None else clf_thr)
    if thresholds is not None:
        common["thresholds"] = thresholds
    tuned = None
    if tune and task == "multilabel":
        dm.setup("validate")
        tuned = tune_interpreter_thresholds(module, classifier, dm.val_dataloader(), threshold=tau, max_batches=max_batches,
                                            device=device, classifier_thresholds=common["classifier_thresholds"])
        common["thresholds"] = tuned
    results = evaluate_interpreter(module, classifier, loader, noise_snr_db=noise_snr_db, **common)
    if overlap is not None:
        dataset = dm.dataset(split) if hasattr(dm, "dataset") else loader.dataset
        mix = DataLoader(OverlapMixtures(dataset, weight=float(overlap), seed=seed), batch_size=loader.batch_size or 16)
        for k, v in evaluate_interpreter(module, classifier, mix, noise_snr_db=None, **common).items():
            results[f"overlap.{k}"] = v
    if protocol == "authors":
        from l2i.evaluation.authors import evaluate_authors_protocol

        num_classes = int(getattr(module, "num_classes", 0) or data_args.get("num_classes") or 0)
        for k, v in evaluate_authors_protocol(module, classifier, loader, task=task, num_classes=num_classes,
                                              classifier_thresholds=common["classifier_thresholds"],
                                              max_batches=max_batches, seed=seed, device=device).items():
            results[f"authors.{k}"] = v
    elif protocol != "project":
        raise ValueError(f"evaluate: protocol must be project|authors, got {protocol!r}")
    results["threshold"] = tau
    if tuned is not None:
        for c, t in enumerate(tuned.tolist()):
            results[f"tuned_threshold.{c}"] = float(t)
    return results


def write_results(results: dict[str, float], out_dir: Path, title: str, settings: dict) -> tuple[Path, Path]:
    from l2i.evaluation import DESCRIPTIONS, ground_truth_markdown, results_markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / "evaluation.json"
    js.write_text(json.dumps({"settings": settings, "results": results}, indent=2, sort_keys=True) + "\n")
    md = out_dir / "evaluation.md"
    legend = "\n".join(f"- `{k}`: {v}" for k, v in DESCRIPTIONS.items())
    reports = [ground_truth_markdown(results), ground_truth_markdown(
        results, prefix="overlap.ground_truth", title="ground truth on overlap mixtures: SI-SDR (dB), median (mean)")]
    md.write_text("".join(r + "\n" for r in reports if r) + results_markdown(results, title=title) + "\n" + legend + "\n")
    return js, md


def _floats(text: str | None) -> list[float] | float | None:
    if text is None or str(text).strip() == "":
        return None
    vals = [float(v) for v in str(text).split(",") if v.strip()]
    return vals[0] if len(vals) == 1 else vals


def main(argv: list[str]) -> int:
    """``l2i evaluate --config FILE [--ckpt FILE] [--split test] [--threshold τ] [--noise_snr_db 10,0] [--overlap λ]
    [--max_batches n] [--batch_size b] [--device cpu] [--thresholds t|t1,…,tC] [--classifier_thresholds …]
    [--tune_thresholds true] [--out_dir DIR]``."""
    from jsonargparse import ArgumentParser

    from experiments.cli import resolve_config

    p = ArgumentParser(prog="l2i evaluate", description="The evaluation suite of a trained interpreter -> JSON + markdown.")
    p.add_argument("--config", required=True, help="the interpreter's fit config (model + data sections)")
    p.add_argument("--ckpt", default=None, help="interpreter checkpoint (default: the config's model, untrained)")
    p.add_argument("--split", default="test", choices=["test", "val"])
    p.add_argument("--threshold", type=float, default=None, help="relevance threshold τ (default: the model's)")
    p.add_argument("--noise_snr_db", default="10", help="comma-separated SNRs of the noise experiment ('' = none)")
    p.add_argument("--overlap", type=float, default=None, help="also evaluate on A + λ·B overlap mixtures")
    p.add_argument("--max_batches", type=int, default=None)
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--thresholds", default=None,
                   help="multilabel: the interpreter's decision threshold(s), one float or one per class, comma-separated")
    p.add_argument("--classifier_thresholds", default=None,
                   help="multilabel: the classifier's decision threshold(s) (default: the module's class_threshold, else 0.5)")
    p.add_argument("--tune_thresholds", type=bool, default=False,
                   help="multilabel: tune the interpreter's per-class thresholds on the validation split first")
    p.add_argument("--out_dir", default=None, help="default: beside the checkpoint (or runs/evaluate)")
    p.add_argument("--protocol", default="project", choices=["project", "authors"],
                   help="authors: also the authors' figures (top-1/3/5 or 11-threshold AUPRC fidelity, median drops "
                        "vs random components, L-MAC's table on 0.8/0.2 mixtures) under authors.*")
    args = p.parse_args(argv)
    config = yaml.safe_load(resolve_config(args.config).read_text()) or {}
    snrs = [float(s) for s in str(args.noise_snr_db).split(",") if s.strip()] if args.noise_snr_db else []
    results = evaluate_checkpoint(
        config, args.ckpt, split=args.split, threshold=args.threshold, noise_snr_db=snrs or None, overlap=args.overlap,
        max_batches=args.max_batches, batch_size=args.batch_size, device=args.device, seed=args.seed,
        tune=args.tune_thresholds, thresholds=_floats(args.thresholds), classifier_thresholds=_floats(args.classifier_thresholds),
        protocol=args.protocol,
    )
    out = Path(args.out_dir) if args.out_dir else (Path(args.ckpt).parent / "evaluation" if args.ckpt else Path("runs/evaluate"))
    settings = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    settings = {k: (str(v) if not isinstance(v, (int, float, str, type(None))) else v) for k, v in settings.items()}
    js, md = write_results(results, out, f"evaluation of {args.ckpt or args.config}", settings)
    print(md.read_text())
    print(f"[l2i] evaluation: {md} and {js}")
    from callbacks.summary import print_summary  # what the run wrote, where

    print_summary("evaluate", {"checkpoint": args.ckpt, "results": md, "results (json)": js})
    return 0


def evaluation_stage(ctx, settings: dict) -> dict:
    """Pipeline stage: the suite for ``ctx.artifacts["interpreter"]`` (settings: ``config`` (the interpreter's fit
    config, default experiments/synthetic/posthoc.yaml), ``noise_snr_db`` (list, default [10]), ``overlap`` (λ or
    null, default 1.0), ``max_batches`` (default 4), ``threshold``). Returns the figures (``<family>.<key>``)."""
    from experiments.cli import resolve_config
    from l2i.evaluation import DESCRIPTIONS

    if "interpreter" not in ctx.artifacts:
        raise ValueError("the evaluation stage needs an interpreter: run the 'posthoc' stage first")
    config = yaml.safe_load(resolve_config(settings.get("config", "experiments/synthetic/posthoc.yaml")).read_text())
    results = evaluate_checkpoint(
        config, ctx.artifacts["interpreter"], split="test", threshold=settings.get("threshold"),
        noise_snr_db=settings.get("noise_snr_db", [10.0]), overlap=settings.get("overlap", 1.0),
        max_batches=settings.get("max_batches", 4), seed=ctx.seed,
        device=settings.get("device", "cuda" if torch.cuda.is_available() else "cpu"),
    )
    write_results(results, ctx.stage_dir("evaluation"), "evaluation suite (synthetic test split)", dict(settings))
    for key in results:
        family = key.split(".")[0] if not key.startswith("overlap.") else key.split(".")[1]
        family = "noise" if family.startswith("noise_") else family
        ctx.descriptions.setdefault(f"evaluation.{key}", DESCRIPTIONS.get(family, ""))
    return results
