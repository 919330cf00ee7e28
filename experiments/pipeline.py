"""The main job as a pipeline of named stages: classifier -> (dictionary -> post-hoc -> by-design -> …).

Each stage reads what earlier stages left in the :class:`PipelineContext` (artifact paths), does its work,
and returns flat figures (``{"test_accuracy": 0.97}``) that land in the report as ``<stage>.<key>``.
The report is rewritten after every stage, so a run stopped half-way still leaves what it measured.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

__all__ = ["PipelineContext", "STAGES", "register_stage", "run_pipeline", "write_report", "demo_main"]


@dataclass
class PipelineContext:
    """What stages share: the output folder, artifact paths by name, the report so far, the settings."""

    out_dir: Path
    seed: int = 0
    artifacts: dict[str, str] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    #: the W&B group of every run of this pipeline (:func:`callbacks.wandb_runs.pipeline_group`)
    wandb_group: str = ""

    def stage_dir(self, name: str) -> Path:
        d = self.out_dir / name
        d.mkdir(parents=True, exist_ok=True)
        return d


StageFn = Callable[[PipelineContext, dict], dict]
STAGES: dict[str, StageFn] = {}
#: stages defined in other modules, ``name -> "module:function"``, imported when a pipeline uses them
LAZY_STAGES: dict[str, str] = {
    "dictionary": "experiments.nmf:dictionary_stage",
    "posthoc": "experiments.interpret:posthoc_stage",
    "bydesign": "experiments.bydesign:bydesign_stage",
    "evaluation": "experiments.evaluate:evaluation_stage",
    "lmac": "experiments.benchmark:lmac_stage",
    "benchmark": "experiments.benchmark:benchmark_stage",
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


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def write_report(ctx: PipelineContext, title: str = "listen-to-interpret report") -> tuple[Path, Path]:
    """``report.json`` (flat keys, for programs) and ``report.md`` (for people) in ``ctx.out_dir``."""
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    json_path = ctx.out_dir / "report.json"
    json_path.write_text(json.dumps(ctx.report, indent=2, sort_keys=True) + "\n")
    lines = [f"# {title}", ""]
    stages: dict[str, list[str]] = {}
    for key in ctx.report:
        stages.setdefault(key.split(".", 1)[0], []).append(key)
    for stage, keys in stages.items():
        lines += [f"## {stage}", "", "| figure | value | meaning |", "|---|---|---|"]
        for key in keys:
            lines.append(f"| `{key}` | {_fmt(ctx.report[key])} | {ctx.descriptions.get(key, '')} |")
        lines.append("")
    md_path = ctx.out_dir / "report.md"
    md_path.write_text("\n".join(lines))
    return json_path, md_path


#: where each stage leaves its artifact under the pipeline's out_dir (artifact key -> relative path)
ARTIFACT_FILES = {
    "classifier": "classifier/classifier.ckpt",
    "dictionary": "dictionary/dictionary.pt",
    "interpreter": "posthoc/interpreter.ckpt",
    "bydesign": "bydesign/bydesign.ckpt",
    "lmac": "lmac/lmac.ckpt",
}


def existing_artifacts(out_dir: str | Path) -> dict[str, str]:
    """The artifacts an earlier run left in ``out_dir`` (key -> path), e.g. to run later stages alone."""
    found = {}
    for key, rel in ARTIFACT_FILES.items():
        path = Path(out_dir) / rel
        if path.is_file():
            found[key] = str(path)
    return found


def earlier_figures(out_dir: str | Path, rerun: list[str]) -> dict:
    """The figures of ``out_dir/report.json`` (an earlier run) except those of the stages in ``rerun``."""
    path = Path(out_dir) / "report.json"
    if not path.is_file():
        return {}
    try:
        figures = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in figures.items() if k.split(".", 1)[0] not in set(rerun) and not k.startswith("reused.")}


def run_pipeline(stage_settings: dict[str, dict], out_dir: str | Path, seed: int = 0,
                 artifacts: dict[str, str] | None = None, earlier: dict | None = None,
                 group: str | None = None) -> PipelineContext:
    """Run the named stages in order; ``stage_settings`` maps stage name -> its settings dict.

    ``artifacts``: artifacts of stages not run now (key -> path, see :data:`ARTIFACT_FILES`), recorded in
    the report as reused; a stage that runs replaces its own. ``earlier``: figures of those stages (from the
    run that made them), kept in the report, so it stays whole and later stages can read them (e.g. the
    benchmark's training times). ``group``: the W&B group of the stages' runs (default:
    :func:`callbacks.wandb_runs.pipeline_group`); each run's ``job_type`` is its stage.
    """
    from callbacks.wandb_runs import pipeline_group, pipeline_stage

    unknown = [s for s in stage_settings if s not in STAGES and s not in LAZY_STAGES]
    if unknown:
        raise ValueError(f"unknown pipeline stage(s) {unknown}; known stages: {sorted({*STAGES, *LAZY_STAGES})}")
    ctx = PipelineContext(out_dir=Path(out_dir), seed=seed, wandb_group=pipeline_group(out_dir, group))
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    print(f"[l2i] W&B group of this pipeline's runs: {ctx.wandb_group}", flush=True)
    for key, value in (earlier or {}).items():
        ctx.report[key] = value
        ctx.descriptions[key] = "(from the earlier run in out_dir)"
    for key, path in (artifacts or {}).items():
        ctx.artifacts[key] = str(path)
        ctx.report[f"reused.{key}"] = str(path)
        ctx.descriptions[f"reused.{key}"] = "artifact of an earlier run in out_dir (its stage was not run now)"
    for name, settings in stage_settings.items():
        print(f"[l2i] stage {name!r} …", flush=True)
        start = time.perf_counter()
        with pipeline_stage(name, ctx.wandb_group, ctx.artifacts):
            figures = get_stage(name)(ctx, dict(settings or {}))
        figures["seconds"] = round(time.perf_counter() - start, 2)
        ctx.descriptions.setdefault(f"{name}.seconds", "wall time of the stage (s)")
        for key, value in figures.items():
            ctx.report[f"{name}.{key}"] = value
        write_report(ctx)
        print(f"[l2i] stage {name!r} done in {figures['seconds']:.1f} s", flush=True)
    return ctx


# -- stages ----------------------------------------------------------------------------------------------


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


def finish_loggers(trainer) -> None:
    """End the W&B runs a stage's trainer opened: one run per stage, and a run left open would be silently
    reused by the next stage's logger in the same process."""
    for logger in getattr(trainer, "loggers", []) or []:
        run = getattr(logger, "_experiment", None)
        if run is not None and hasattr(run, "finish"):
            try:
                run.finish()
            except Exception:  # noqa: BLE001 - logging never takes a pipeline down
                pass


def fit_stage_config(ctx: PipelineContext, stage: str, settings: dict, default_config: str,
                     extra_args: list[str] = (), test: bool = True) -> FitResult:
    """Fit a LightningCLI config as a pipeline stage: run folder ``<out>/<stage>``, the context's seed, W&B run
    ``<stage>``, extra arguments (paths of earlier artifacts) and ``settings["overrides"]``; then copy the best
    checkpoint to ``<out>/<stage>/<stage>.ckpt`` and (``test``) test it. The arguments are written to
    ``<out>/<stage>/config.yaml`` so the run can be repeated."""
    from experiments.cli import lightning_cli

    out = ctx.stage_dir(stage)
    args = ["--config", settings.get("config", default_config)]
    args += ["--seed_everything", str(ctx.seed), "--trainer.default_root_dir", str(out)]
    args += ["--trainer.logger.init_args.save_dir", str(ctx.out_dir), "--trainer.logger.init_args.name", stage]
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
    (out / "config.yaml").write_text(yaml.safe_dump({"args": args}, sort_keys=False))
    finish_loggers(trainer)
    return FitResult(trainer, model, dm, final, {k: float(v) for k, v in results.items()}, train_seconds)


@register_stage("classifier")
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
    ctx.descriptions["classifier.epochs"] = "training epochs run"
    ctx.descriptions["classifier.train_seconds"] = "classifier training time (s)"
    ctx.descriptions["classifier.checkpoint"] = "trained classifier (input of later stages)"
    return figures


# -- the demo command -------------------------------------------------------------------------------------


def demo_main(argv: list[str]) -> int:
    """``l2i demo [--config experiments/demo.yaml] [--out_dir runs/demo] [--stages a,b]``."""
    from jsonargparse import ArgumentParser

    from experiments.cli import resolve_config

    parser = ArgumentParser(prog="l2i demo", description="Run the main job on the embedded synthetic data set.")
    parser.add_argument("--config", default="experiments/demo.yaml", help="pipeline config (stages and settings)")
    parser.add_argument("--out_dir", default=None, help="where the report and artifacts go (default from config)")
    parser.add_argument("--stages", default=None, help="comma-separated subset of the config's stages (artifacts of "
                        "the others are reused from out_dir when there)")
    parser.add_argument("--group", default=None, help="W&B group of the stages' runs (default: $WANDB_RUN_GROUP, else "
                        "<out_dir name>-<start time>)")
    args = parser.parse_args(argv)
    config = yaml.safe_load(resolve_config(args.config).read_text()) or {}
    stages: dict = config.get("stages") or {}
    if args.stages:
        wanted = [s.strip() for s in args.stages.split(",") if s.strip()]
        missing = [s for s in wanted if s not in stages]
        if missing:
            raise SystemExit(f"l2i demo: stage(s) {missing} not in {args.config}; it has {list(stages)}")
        stages = {s: stages[s] for s in wanted}
    out_dir = Path(args.out_dir or config.get("out_dir", "runs/demo"))
    reused = earlier = None
    if args.stages:  # a subset: the stages left out may have left their artifacts and figures in out_dir
        reused = existing_artifacts(out_dir)
        earlier = earlier_figures(out_dir, list(stages))
        for key, path in reused.items():
            print(f"[l2i] reusing {key}: {path}", flush=True)
    ctx = run_pipeline(stages, out_dir, seed=int(config.get("seed", 0)), artifacts=reused, earlier=earlier,
                       group=args.group)
    json_path, md_path = write_report(ctx)
    print(md_path.read_text())
    table = ctx.report.get("benchmark.table")
    if table and Path(table).is_file():
        print(Path(table).read_text())
        print(f"[l2i] benchmark table: {table}")
    galleries = sorted(ctx.out_dir.rglob("interpretations/index.html"))
    for gallery in galleries:
        print(f"[l2i] listen to the interpretations: {gallery}")
    listening = ctx.report.get("benchmark.listening")
    if listening:
        print(f"[l2i] every interpreter on the same clips, side by side: {listening}")
    print(f"[l2i] report: {md_path} and {json_path}")
    from callbacks.summary import print_summary  # what the run wrote, where

    print_summary("demo", {"report": md_path, "report (json)": json_path, "benchmark table": table,
                           "galleries": galleries})
    return 0
