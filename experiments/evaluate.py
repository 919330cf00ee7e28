"""``l2i evaluate --config <interpreter fit config> --ckpt <interpreter checkpoint>``: the evaluation suite of
:mod:`l2i.evaluation` for a trained interpreter -> one JSON and one markdown table.

The config is the ``l2i fit`` config the interpreter was trained with, read as ``l2i fit`` reads it
(:func:`experiments.cli.instantiate`: interpolation, links, type checks; its ``data`` section is the DataModule
evaluated on; dotted overrides such as ``--data.init_args.root`` work as for ``l2i fit``). A post-hoc
interpreter's or by-design model's checkpoint (or self-contained file) is loaded by
:func:`l2i.bundle.read_interpreter` from any folder, and f is the classifier it explains (by-design: the
model's own prediction); another LightningModule (anything with ``interpret(...)``) is loaded as the class it
stores (:func:`lightning_modules.artifacts.load_artifact`; the config's class when that cannot be told) and f is
its ``classifier``, else the checkpoint named by its
``hparams.classifier_checkpoint`` (loaded frozen), else its own ``frontend`` + ``backbone``. Writes ``<out_dir>/evaluation.json`` (flat ``family.key -> value``, plus the
settings) and ``<out_dir>/evaluation.md``; on data with known sources the markdown (and the printout) opens with
the ground-truth report as one table (:func:`l2i.evaluation.ground_truth_markdown`: per estimate of class c's
source, median (mean) SI-SDR on all, single- and multi-source clips, the share of pairs better than the mixture,
the specificity). With ``--overlap λ`` the suite also runs on overlap mixtures
(clip A + λ·clip B of another class) of the same split, under ``overlap.*`` keys.

:func:`experiments.stages.evaluation.evaluation_stage` is the same as a pipeline stage (``l2i demo``): it evaluates
``ctx.artifacts["interpreter"]`` on the synthetic test split and returns the figures for the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["main", "evaluate_checkpoint", "load_evaluated", "explained_classifier"]


def _model_section(read) -> str:
    """The config's model class name; a config without one is refused first (evaluate checks the checkpoint
    against it)."""
    name = read.class_name("model")
    if not name:
        raise ValueError("evaluate: the config's 'model' section needs a class_path (and init_args)")
    return name


def explained_classifier(module, device: torch.device | str = "cpu"):
    """The black box f explained by ``module``: its ``classifier``, else the classifier checkpoint named by its
    ``hparams.classifier_checkpoint`` (loaded frozen), else its own ``frontend`` + ``backbone``
    (:func:`l2i.classifier.classifier_of`)."""
    from l2i.classifier import classifier_of

    clf = getattr(module, "classifier", None)
    if isinstance(clf, nn.Module):
        return clf
    path = getattr(getattr(module, "hparams", {}), "get", lambda *_: None)("classifier_checkpoint")
    if path and Path(path).is_file():
        from lightning_modules.artifacts import load_artifact

        return load_artifact(path, "classifier", map_location=device, verb="evaluate")
    return classifier_of(module, f"{type(module).__name__} (classifier, hparams.classifier_checkpoint, frontend + backbone)").eval()


def load_evaluated(read, ckpt: str, device: str = "cpu", classifier: str | None = None,
                   dictionary: str | None = None):
    """The model ``l2i evaluate`` scores, from ``ckpt``, checked against the model section of ``read`` (an
    :class:`~experiments.cli.Instantiated` config).

    A post-hoc interpreter's or by-design model's checkpoint (or self-contained file) is loaded by
    :func:`l2i.bundle.read_interpreter` from any folder, whatever the config's ``model.init_args`` say
    (a config naming another model class is refused) but for ``interpret_options``: the config's,
    when it names them, replace the checkpoint's (they choose how it interprets, not what it learnt). Any other
    checkpoint is loaded as the class it stores (:func:`lightning_modules.artifacts.load_artifact`), or, when
    that cannot be told, with the config's ``<class>.load_from_checkpoint`` after the same safe read, when its
    stored class is the config's; a classifier's checkpoint is refused with what evaluate needs."""
    import importlib

    from l2i.bundle import read_interpreter
    from l2i.checkpoints import INTERPRETER_KINDS, KIND_CLASSES, CheckpointKindError, checkpoint_kind, require_kind, safe_load
    from l2i.trained import TrainedInterpreter

    state = safe_load(ckpt, what="interpreter checkpoint")
    kind = checkpoint_kind(state)
    class_path = str((read.config.get("model") or {}).get("class_path") or "")
    if kind in ("classifier", "dictionary"):
        require_kind(ckpt, state, INTERPRETER_KINDS, "evaluate")
    if kind in INTERPRETER_KINDS:
        expected = KIND_CLASSES[kind]
        if class_path and class_path.rpartition(".")[2] != expected:
            raise CheckpointKindError(f"--config's model is {class_path} but {ckpt} is a {expected} checkpoint: give the "
                                      f"config it was trained with (its data section is what evaluate reads)")
        bundle = read_interpreter(ckpt, classifier=classifier, dictionary=dictionary, verb="evaluate")
        options = read.init_args("model", given=True).get("interpret_options")
        if options is not None:
            bundle["interpreter"]["interpret_options"] = options  # interpretation settings, not weights
        return TrainedInterpreter(bundle).to(device).eval()
    stored = str(((state.get("hyper_parameters") or {}).get("_class_path")) or "")
    if stored and class_path and stored.rpartition(".")[2] != class_path.rpartition(".")[2]:
        raise CheckpointKindError(f"--config's model is {class_path} but {ckpt} is a checkpoint of {stored}: "
                                  "give the config that checkpoint was trained with")
    if kind is not None:
        from lightning_modules.artifacts import load_artifact

        return load_artifact(ckpt, kind, map_location=device, verb="evaluate")
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name).load_from_checkpoint(ckpt, map_location=device, weights_only=True)


def _check_label_space(module, dm, ckpt: str) -> None:
    """The interpreter's classes are the data's (one line naming both counts otherwise)."""
    names = getattr(module, "class_names", None)
    data_classes = getattr(dm, "num_classes", None)
    if isinstance(data_classes, int) and names and data_classes != len(names):
        raise ValueError(f"{ckpt} explains {len(names)} classes ({', '.join(map(str, names[:4]))}…) but --config's data "
                         f"({type(dm).__name__}) has {data_classes}: give the data the interpreter was trained on")


def _suite(module, clf_model, dm, loader, split: str, common: dict, noise_snr_db, overlap: float | None, protocol: str,
           tune: bool) -> tuple[dict[str, float], Any]:
    """The suite's figures on ``loader`` (plus overlap mixtures and the authors' figures when asked) and the
    tuned thresholds (or None); ``common``: the settings every call shares."""
    from torch.utils.data import DataLoader

    from l2i.evaluation import OverlapMixtures, evaluate_interpreter, tune_interpreter_thresholds

    task, seed, device, max_batches, tuned = common["task"], common["seed"], common["device"], common["max_batches"], None
    if tune and task == "multilabel":
        dm.setup("validate")
        tuned = tune_interpreter_thresholds(module, clf_model, dm.val_dataloader(), threshold=common["threshold"],
                                            max_batches=max_batches, device=device,
                                            classifier_thresholds=common["classifier_thresholds"])
        common["thresholds"] = tuned
    results = evaluate_interpreter(module, clf_model, loader, noise_snr_db=noise_snr_db, **common)
    if overlap is not None:
        dataset = dm.dataset(split) if hasattr(dm, "dataset") else loader.dataset
        mix = DataLoader(OverlapMixtures(dataset, weight=float(overlap), seed=seed), batch_size=loader.batch_size or 16)
        for k, v in evaluate_interpreter(module, clf_model, mix, noise_snr_db=None, **common).items():
            results[f"overlap.{k}"] = v
    if protocol == "authors":
        from l2i.evaluation.authors import evaluate_authors_protocol

        num_classes = int(getattr(module, "num_classes", 0) or len(getattr(module, "class_names", None) or [])
                          or getattr(dm, "num_classes", 0) or 0)
        for k, v in evaluate_authors_protocol(module, clf_model, loader, task=task, num_classes=num_classes,
                                              classifier_thresholds=common["classifier_thresholds"],
                                              max_batches=max_batches, seed=seed, device=device).items():
            results[f"authors.{k}"] = v
    elif protocol != "project":
        raise ValueError(f"evaluate: protocol must be project|authors, got {protocol!r}")
    return results, tuned



def batch_size_override(configs, overrides, batch_size: int) -> tuple[str, int]:
    """The dotted override that sets the data's batch size: in the ``loader`` group of the file-based data sets
    (``data.init_args.loader.batch_size``), else ``data.init_args.batch_size`` (the generated data sets)."""
    from experiments.cli import instantiate

    read = instantiate(configs, list(overrides or []), sections=())
    key = "loader.batch_size" if "loader" in read.init_args("data") else "batch_size"
    return f"data.init_args.{key}", int(batch_size)

def evaluate_checkpoint(
    configs,
    ckpt: str | None,
    *,
    overrides: list[tuple[str, Any]] | dict | None = None,
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
    classifier: str | None = None,
    dictionary: str | None = None,
    protocol: str = "project",
) -> dict[str, float]:
    """Read the fit config(s) ``configs`` (paths or dicts, or an already read
    :class:`~experiments.cli.Instantiated`) with the dotted ``overrides`` and ``batch_size`` as ``l2i fit`` reads them
    (:func:`experiments.cli.instantiate`: the data is built, the model section checked), load the interpreter
    ``ckpt`` (:func:`load_evaluated`) and run the suite.

    ``protocol="authors"`` adds the authors' figures (:func:`l2i.evaluation.authors.evaluate_authors_protocol`)
    under ``authors.*`` keys."""
    from experiments.cli import Instantiated, instantiate

    if not ckpt:
        raise ValueError("evaluate needs --ckpt, the trained interpreter's checkpoint (an untrained model's figures "
                         "mean nothing)")
    if isinstance(configs, Instantiated):
        read = configs
    else:
        overrides = list(overrides.items() if isinstance(overrides, dict) else overrides or [])
        if batch_size:
            overrides.append(batch_size_override(configs, overrides, batch_size))
        read = instantiate(configs, overrides, sections=("data",))
    _model_section(read)
    module = load_evaluated(read, ckpt, device, classifier=classifier, dictionary=dictionary)
    dm = read.data
    _check_label_space(module, dm, ckpt)
    module.eval().to(device)
    module.requires_grad_(False)
    clf_model = explained_classifier(module, device)
    clf_model.eval().to(device)
    dm.setup("test" if split == "test" else "validate")
    loader = dm.test_dataloader() if split == "test" else dm.val_dataloader()
    hp = getattr(module, "hparams", None) or {"threshold": getattr(module, "threshold", None),
                                               "class_threshold": getattr(module, "class_threshold", None)}
    tau = threshold if threshold is not None else hp.get("threshold")
    tau = 0.2 if tau is None else float(tau)  # the model's τ, 0.0 included
    clf_thr = classifier_thresholds if classifier_thresholds is not None else hp.get("class_threshold")
    common = dict(task=getattr(clf_model, "task", None) or getattr(module, "task", None), threshold=tau,
                  max_batches=max_batches, seed=seed, device=device, classifier_thresholds=0.5 if clf_thr is None else clf_thr)
    if thresholds is not None:
        common["thresholds"] = thresholds
    results, tuned = _suite(module, clf_model, dm, loader, split, common, noise_snr_db, overlap, protocol, tune)
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
    """``l2i evaluate --config FILE --ckpt FILE [--data.init_args.root DIR …] [--split test] [--threshold τ]
    [--noise_snr_db 10,0] [--overlap λ] [--max_batches n] [--batch_size b] [--device auto] [--thresholds …]
    [--classifier_thresholds …] [--tune_thresholds true] [--out_dir DIR]``."""
    from experiments.cli import one_line_errors

    return one_line_errors("l2i evaluate", lambda: _main(argv))


def _main(argv: list[str]) -> int:
    from jsonargparse import ArgumentParser

    from experiments.cli import default_device, instantiate, split_overrides

    p = ArgumentParser(prog="l2i evaluate", description="The evaluation suite of a trained interpreter (post-hoc or "
                       "by-design) -> JSON + markdown. Dotted overrides of the config work as for l2i fit, e.g. "
                       "--data.init_args.root /data/ESC-50-master.")
    p.add_argument("--config", required=True, action="append",
                   help="the interpreter's fit config: its data section is the data evaluated on (its model section must "
                        "name the checkpoint's class); repeat it for overlays (--config base.yaml --config overlay.yaml), "
                        "merged as l2i fit merges them")
    p.add_argument("--ckpt", default=None, help="required: the trained interpreter's checkpoint or self-contained file (l2i export)")
    p.add_argument("--classifier", default=None, help="the classifier checkpoint of an old interpreter checkpoint, when "
                   "the recorded path is not found")
    p.add_argument("--dictionary", default=None, help="the dictionary file of an old interpreter checkpoint")
    p.add_argument("--split", default="test", choices=["test", "val"], help="the split evaluated")
    p.add_argument("--threshold", type=float, default=None, help="relevance threshold τ (default: the model's)")
    p.add_argument("--noise_snr_db", default="10", help="comma-separated SNRs of the noise experiment ('' = none)")
    p.add_argument("--overlap", type=float, default=None, help="also evaluate on A + λ·B overlap mixtures")
    p.add_argument("--max_batches", type=int, default=None, help="evaluate only this many batches (a quick look)")
    p.add_argument("--batch_size", type=int, default=None, help="batch size (default: the config's)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda …")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-component baselines and the overlap mixtures")
    p.add_argument("--thresholds", default=None,
                   help="multilabel: the interpreter's decision threshold(s), one float or one per class, comma-separated")
    p.add_argument("--classifier_thresholds", default=None,
                   help="multilabel: the classifier's decision threshold(s) (default: the module's class_threshold, else 0.5)")
    p.add_argument("--tune_thresholds", type=bool, default=False,
                   help="multilabel: tune the interpreter's per-class thresholds on the validation split first")
    p.add_argument("--out_dir", default=None, help="default: <checkpoint folder>/evaluation")
    p.add_argument("--protocol", default="project", choices=["project", "authors"],
                   help="authors: also the authors' figures (top-1/3/5 or 11-threshold AUPRC fidelity, median drops "
                        "vs random components, L-MAC's table on 0.8/0.2 mixtures) under authors.*")
    argv, overrides = split_overrides(argv)
    args = p.parse_args(argv)
    batch = [batch_size_override(args.config, overrides, args.batch_size)] if args.batch_size else []
    read = instantiate(args.config, [*overrides, *batch], sections=("data",))
    _model_section(read)  # a config without a model is named first
    snrs = [float(s) for s in str(args.noise_snr_db).split(",") if s.strip()] if args.noise_snr_db else []
    device = default_device(args.device)
    if not args.ckpt:
        raise ValueError("evaluate needs --ckpt, the trained interpreter's checkpoint (an untrained model's figures "
                         "mean nothing)")
    from experiments.interpret import check_out_dir
    from l2i.checkpoints import CheckpointError, did_you_mean

    if not Path(args.ckpt).is_file():
        raise CheckpointError(f"--ckpt {args.ckpt}: {'is a directory' if Path(args.ckpt).is_dir() else 'no such file'}"
                              f"{did_you_mean(args.ckpt)}")

    out = Path(args.out_dir) if args.out_dir else Path(args.ckpt).parent / "evaluation"
    check_out_dir(out, 1_000_000)  # an unwritable folder is found before the evaluation, not after
    results = evaluate_checkpoint(
        read, args.ckpt, split=args.split, threshold=args.threshold, noise_snr_db=snrs or None, overlap=args.overlap,
        max_batches=args.max_batches, device=device, seed=args.seed,
        tune=args.tune_thresholds, thresholds=_floats(args.thresholds), classifier_thresholds=_floats(args.classifier_thresholds),
        classifier=args.classifier, dictionary=args.dictionary, protocol=args.protocol,
    )
    settings = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    settings = {k: (str(v) if not isinstance(v, (int, float, str, type(None))) else v) for k, v in settings.items()}
    settings["device"] = device
    if overrides:
        settings["overrides"] = {k: v for k, v in overrides}
    js, md = write_results(results, out, f"evaluation of {args.ckpt}", settings)
    print(md.read_text())
    print(f"[l2i] evaluation: {md} and {js}")
    from callbacks.summary import print_summary  # what the run wrote, where

    print_summary("evaluate", {"checkpoint": args.ckpt, "results": md, "results (json)": js})
    return 0
