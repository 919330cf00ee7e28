"""``l2i benchmark --config experiments/benchmark/<dataset>.yaml``: post-hoc L2I vs the by-design model vs baseline
interpreters, one table per data set.

The command trains (or reuses, by path) the classifier, the dictionary, the post-hoc interpreter, the by-design
model and the L-MAC decoder — the pipeline's own stage functions, called with one
:class:`~experiments.pipeline.PipelineContext` — then :func:`~experiments.stages.benchmark.benchmark_stage` runs
the evaluation suite (:func:`l2i.evaluation.evaluate_interpreter`) on **the same test clips** for every interpreter and writes one
table: ``<out_dir>/benchmark/benchmark.md``, ``benchmark.csv``, ``benchmark.tex`` (LaTeX, booktabs) and
``benchmark.json`` (every row's seed, settings, artifact and all suite figures), rewritten after every row so a
stopped run keeps its finished rows, and a W&B table (``benchmark``, via the safe logger: W&B failures never stop
it). ``--seeds N`` repeats the whole run per seed and writes the mean ± std of every cell (:func:`run_seeds`);
``--rows`` and ``--max_batches`` make a quick look from the command line. ``l2i demo``'s benchmark stage reads the
same config (``config: experiments/benchmark/synthetic.yaml``,
:func:`~experiments.stages.benchmark.resolve_settings`), so the two tables are comparable.
A listening table (:mod:`experiments.listening`): every interpreter's interpretation of the same clips, with
the mixture and the true source, in ``<out_dir>/benchmark/listening/index.html`` and as the W&B table ``listening``.

The rows, the columns and the authors' protocol: :mod:`experiments.stages.benchmark`.

Cost, measured on the shared 2-core CPU with the synthetic default (128 test clips, ten rows, IG 8 steps, occlusion
16×16 patches, L-MAC 2 × 16 batches): 66 s on an idle machine (L-MAC training 20 s; evaluations 45 s, occlusion
17.5 s and IG 9.6 s of it), about 10× that while other jobs loaded the CPU. The figures reproduce exactly from run
to run (same seed).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from experiments.stages.benchmark import aggregate_seeds, benchmark_stage, write_tables
from experiments.stages.lmac import lmac_stage

__all__ = [
    "STAGE_ARTIFACT",
    "run_benchmark",
    "run_seeds",
    "main",
]

#: which artifact each training stage leaves in ``ctx.artifacts`` (a stage is skipped when it is given by path)
STAGE_ARTIFACT = {"classifier": "classifier", "dictionary": "dictionary", "posthoc": "interpreter",
                  "bydesign": "bydesign", "lmac": "lmac"}


# -- the command ----------------------------------------------------------------------------------------------


def run_benchmark(config: dict, out_dir: str | Path | None = None, stages: list[str] | None = None,
                  artifacts: dict[str, str] | None = None, group: str | None = None):
    """Train/reuse the artifacts (``config["stages"]``, ``config["artifacts"]``), then :func:`benchmark_stage`
    (``config["benchmark"]``). Returns the :class:`~experiments.pipeline.PipelineContext`. Every W&B run shares
    one group (``group``, default :func:`callbacks.wandb_runs.pipeline_group`), each stage's its job_type."""
    from callbacks.wandb_runs import pipeline_group, pipeline_stage
    from experiments.pipeline import PipelineContext, get_stage, write_report

    known = {"out_dir", "seed", "artifacts", "stages", "benchmark"}
    unknown = set(config) - known
    if unknown:
        raise ValueError(f"benchmark config: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    ctx = PipelineContext(out_dir=Path(out_dir or config.get("out_dir") or "runs/benchmark"), seed=int(config.get("seed", 0)))
    ctx.wandb_group = pipeline_group(ctx.out_dir, group)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    print(f"[l2i] W&B group of this benchmark's runs: {ctx.wandb_group}", flush=True)
    given = {**{k: v for k, v in (config.get("artifacts") or {}).items() if v}, **{k: v for k, v in (artifacts or {}).items() if v}}
    for key, path in given.items():
        if key not in STAGE_ARTIFACT.values():
            raise ValueError(f"benchmark config: artifacts.{key} is not an artifact; known: {sorted(set(STAGE_ARTIFACT.values()))}")
        if not Path(path).is_file():
            raise FileNotFoundError(f"benchmark config: artifacts.{key} = {path} does not exist")
        ctx.artifacts[key] = str(path)
        ctx.report[f"reused.{key}"] = str(path)
        ctx.descriptions[f"reused.{key}"] = "artifact given by path (its stage was skipped)"
    stage_settings: dict = dict(config.get("stages") or {})
    if stages:
        missing = [s for s in stages if s not in stage_settings]
        if missing:
            raise ValueError(f"benchmark: stage(s) {missing} not in the config; it has {list(stage_settings)}")
        stage_settings = {s: stage_settings[s] for s in stages}
    local: dict[str, Callable] = {"lmac": lmac_stage}
    for name, settings in stage_settings.items():
        artifact = STAGE_ARTIFACT.get(name)
        if artifact and artifact in ctx.artifacts:
            print(f"[l2i] stage {name!r}: reusing {ctx.artifacts[artifact]}", flush=True)
            continue
        fn = local.get(name) or get_stage(name)
        print(f"[l2i] stage {name!r} …", flush=True)
        start = time.perf_counter()
        with pipeline_stage(name, ctx.wandb_group, ctx.artifacts):
            figures = fn(ctx, dict(settings or {}))
        figures["seconds"] = round(time.perf_counter() - start, 2)
        ctx.descriptions.setdefault(f"{name}.seconds", "wall time of the stage (s)")
        for key, value in figures.items():
            ctx.report[f"{name}.{key}"] = value
        write_report(ctx, title="benchmark report")
        print(f"[l2i] stage {name!r} done in {figures['seconds']:.1f} s", flush=True)
    start = time.perf_counter()
    with pipeline_stage("benchmark", ctx.wandb_group, ctx.artifacts):
        figures = benchmark_stage(ctx, dict(config.get("benchmark") or {}))
    figures["seconds"] = round(time.perf_counter() - start, 2)
    for key, value in figures.items():
        ctx.report[f"benchmark.{key}"] = value
    write_report(ctx, title="benchmark report")
    return ctx


def run_seeds(config: dict, seeds: int, out_dir: str | Path | None = None, stages: list[str] | None = None,
              artifacts: dict[str, str] | None = None, group: str | None = None) -> Path:
    """The benchmark ``seeds`` times, seeds ``config["seed"] + 0 … seeds-1``: each run in ``<out_dir>/seed-<s>``
    (its own artifacts, trained with that seed unless given by path, and its own table), then one table of
    ``mean ± std`` per cell in ``<out_dir>/benchmark/benchmark.{md,csv,tex,json}`` (rewritten after every seed,
    so a killed run keeps the seeds it finished). Returns the aggregate Markdown path."""
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    root = Path(out_dir or config.get("out_dir") or "runs/benchmark")
    base = int(config.get("seed", 0))
    given = {k for k, v in {**(config.get("artifacts") or {}), **(artifacts or {})}.items() if v}
    per_seed: list[list[dict]] = []
    out = root / "benchmark"
    out.mkdir(parents=True, exist_ok=True)
    for i in range(seeds):
        seed = base + i
        print(f"[l2i] benchmark seed {seed} ({i + 1} of {seeds})", flush=True)
        ctx = run_benchmark({**config, "seed": seed}, root / f"seed-{seed}", stages, artifacts, group=group)
        record = json.loads((ctx.out_dir / "benchmark" / "benchmark.json").read_text())
        per_seed.append(record["rows"])
        rows = aggregate_seeds(per_seed)
        columns = [c for c in record["columns"] if all(c in r["columns"] for r in rows)]
        seed_list = [base + j for j in range(len(per_seed))]
        varied = "the benchmark's own randomness only (every artifact given by path)" if given >= set(STAGE_ARTIFACT.values()) \
            else ("training of " + ", ".join(sorted(set(STAGE_ARTIFACT.values()) - given)) + " and the benchmark's randomness"
                  + (f"; fixed (given by path): {', '.join(sorted(given))}" if given else ""))
        title = f"benchmark, mean ± std over {len(per_seed)} seed(s) {seed_list}"
        notes = [f"Seeds vary: {varied}. Std: sample standard deviation (ddof 1) over seeds; per-seed tables in "
                 f"seed-<s>/benchmark/.", ""]
        write_tables(out, rows, columns, title, {"seeds": seed_list, "settings": record.get("settings"),
                                                 "data": record.get("data"), "notes": notes,
                                                 "per_seed_tables": [str(root / f"seed-{s}" / "benchmark" / "benchmark.json")
                                                                     for s in seed_list]},
                     complete=len(per_seed) == seeds)
    return out / "benchmark.md"


def main(argv: list[str]) -> int:
    """``l2i benchmark --config experiments/benchmark/synthetic.yaml [--out_dir DIR] [--stages a,b] [--rows a,b]
    [--max_batches N] [--seeds N] [--device auto] [--protocol authors] [--classifier PATH] [--dictionary PATH] [--interpreter PATH]
    [--bydesign PATH] [--lmac PATH] [--data.init_args.KEY VALUE …]``."""
    from jsonargparse import ArgumentParser

    from experiments.cli import load_pipeline_config, split_overrides

    p = ArgumentParser(prog="l2i benchmark", description="Post-hoc vs by-design vs baseline interpreters on the same "
                       "clips: one table (<out_dir>/benchmark/benchmark.{md,csv,tex,json}), rows written as they finish.")
    p.add_argument("--config", default="experiments/benchmark/synthetic.yaml", help="benchmark config")
    p.add_argument("--out_dir", default=None, help="where artifacts and the table go (default: the config's out_dir)")
    p.add_argument("--stages", default=None, help="comma-separated subset of the config's training stages, among "
                   f"{', '.join(STAGE_ARTIFACT)}")
    p.add_argument("--rows", default=None, help="comma-separated subset of the config's interpreters (table rows), e.g. "
                   "posthoc,gradcam,occlusion (default: all)")
    p.add_argument("--max_batches", type=int, default=None, help="test batches scored per row (default: the config's)")
    p.add_argument("--seeds", type=int, default=1, help="repeat with seeds seed, seed+1, … and report mean ± std per "
                   "cell (each seed in <out_dir>/seed-<s>)")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1 …")
    p.add_argument("--protocol", default=None, choices=["project", "authors"],
                   help="authors: the post-hoc row interprets with the authors' preset (top 5 components above τ) and "
                        "the post-hoc and by-design rows also get the authors' figures (authors.*; default: the "
                        "config's benchmark.protocol, else project)")
    for key in sorted(set(STAGE_ARTIFACT.values())):
        p.add_argument(f"--{key}", default=None, help=f"reuse this {key} artifact (path) instead of training it")
    p.add_argument("--group", default=None, help="W&B group of the runs (default: $WANDB_RUN_GROUP, else <out_dir name>-<start time>)")
    # dotted overrides as for `l2i fit`: --data.init_args.root DIR sets the benchmark's data, any other
    # --a.b.c VALUE the config's key a.b.c (e.g. --benchmark.threshold 0.3)
    argv, overrides = split_overrides(argv)
    args = p.parse_args(argv)
    config = load_pipeline_config(args.config, [(f"benchmark.{k}" if k.startswith("data.") else k, v) for k, v in overrides])
    bench = dict(config.get("benchmark") or {})
    if args.max_batches is not None:
        if args.max_batches < 1:
            raise ValueError(f"--max_batches must be >= 1, got {args.max_batches}")
        bench["max_batches"] = args.max_batches
    if args.rows:
        bench["rows"] = args.rows
    if args.device and args.device != "auto":
        bench["device"] = args.device
    if args.protocol is not None:
        bench["protocol"] = args.protocol
    config["benchmark"] = bench
    stages = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    given = {k: getattr(args, k) for k in set(STAGE_ARTIFACT.values()) if getattr(args, k)}
    if args.seeds != 1:
        table = run_seeds(config, args.seeds, args.out_dir, stages, given, group=args.group)
        print(table.read_text())
        print(f"[l2i] benchmark over {args.seeds} seeds: {table}, {table.with_suffix('.csv')}, {table.with_suffix('.tex')}, "
              f"{table.with_suffix('.json')}")
        return 0
    ctx = run_benchmark(config, args.out_dir, stages, given, group=args.group)
    table = Path(ctx.report["benchmark.table"])
    print(table.read_text())
    print(f"[l2i] benchmark: {table}, {table.with_suffix('.csv')}, {table.with_suffix('.tex')}, {table.with_suffix('.json')}; "
          f"report {ctx.out_dir / 'report.md'}")
    from callbacks.summary import print_summary  # what the run wrote, where

    print_summary("benchmark", {"table": [table, table.with_suffix(".csv"), table.with_suffix(".tex"),
                                          table.with_suffix(".json")], "report": ctx.out_dir / "report.md"})
    return 0
