"""The main job as a pipeline of named stages: classifier -> (dictionary -> post-hoc -> by-design -> …).

Each stage reads what earlier stages left in the :class:`PipelineContext` (artifact paths), does its work,
and returns flat figures (``{"test_accuracy": 0.97}``) that land in the report as ``<stage>.<key>``.
The report is rewritten after every stage, so a run stopped half-way still leaves what it measured.
The stages themselves live in :mod:`experiments.stages`, one per file.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from experiments.stages import LAZY_STAGES, STAGES, get_stage

__all__ = ["PipelineContext", "run_pipeline", "write_report", "demo_main"]


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
    #: figure key -> requirement (``">= 3"``), checked in the report's summary
    targets: dict[str, str] = field(default_factory=dict)
    #: wall time (s) of each stage :func:`run_pipeline` ran itself (not of the stages those ran inside them)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def stage_dir(self, name: str) -> Path:
        d = self.out_dir / name
        d.mkdir(parents=True, exist_ok=True)
        return d


#: figure names (last part of a key) that count things: written as integers
COUNT_NAMES = ("clips", "frames", "epochs", "n_components", "n_freq", "noise_components", "components", "count",
               "steps", "batches", "rows", "examples", "pairs")


def format_value(key: str, value: Any) -> str:
    """One number format for every report: counts as integers, seconds with one decimal, other figures with three
    decimals (``1.23e-05`` style below 0.001), strings and booleans as they are."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        last = key.rsplit(".", 1)[-1]
        if value.is_integer() and (last in COUNT_NAMES or last.endswith(tuple(f"_{c}" for c in COUNT_NAMES))):
            return str(int(value))
        if last.endswith("seconds") or last.endswith("_s"):
            return f"{value:.1f}"
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.2e}"
        return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.1f}"
    return str(value)


#: the figures of the summary, in order (those the run produced): ``key -> short label``
HEADLINE: dict[str, str] = {
    "classifier.test_accuracy": "classifier: test accuracy",
    "dictionary.n_components": "dictionary: components K",
    "dictionary.relative_error": "dictionary: relative reconstruction error",
    "posthoc.fidelity.top1": "post-hoc interpreter: fidelity to the classifier (top-1)",
    "posthoc.ground_truth.multi.interpretation_mean": "post-hoc interpretation of each class present: SI-SDR vs its true source (dB), clips with several sources",
    "posthoc.ground_truth.multi.mixture_mean": "the mixture itself: SI-SDR vs the same sources (dB)",
    "posthoc.ground_truth.multi.over_mixture_mean": "interpretation minus mixture (dB)",
    "posthoc.ground_truth.multi.random_mean": "as many random active components: SI-SDR (dB)",
    "posthoc.ground_truth.multi.specificity": "specificity: class c's own interpretation closer to c's source than another present class's",
    "posthoc.faithfulness.relevant_prob_drop_mean": "removal: probability drop, chosen components",
    "posthoc.faithfulness.random_prob_drop_mean": "removal: probability drop, as many random components",
    "bydesign.test_accuracy": "by-design model: test accuracy",
    "bydesign.accuracy_gap": "accuracy gap classifier minus by-design",
}

#: the real-recording stage's side-by-side table in the summary: ``figure of ground_truth.<row>.multi -> label``
#: (``fidelity`` is ``instruments.fidelity.<row>``)
REAL_RECORDINGS: dict[str, str] = {
    "interpretation_median": "interpretation of instrument c: SI-SDR vs c's stem, median (dB)",
    "mixture_median": "the mixture itself, median (dB)",
    "over_mixture_median": "interpretation minus mixture, median (dB)",
    "better_than_mixture": "pairs where the interpretation is closer to the stem than the mixture",
    "specificity": "specificity: c's own interpretation closer to c's stem than another present instrument's",
    "oracle_median": "ideal ratio mask (oracle), median (dB)",
    "fidelity": "interpreter fidelity to the classifier",
    "pairs": "(clip, instrument present) pairs",
}

#: descriptions of figures whose stage gave none (fnmatch patterns, first match wins)
FALLBACK_DESCRIPTIONS: dict[str, str] = {
    "*.seconds": "wall time of the stage (s)",
    "posthoc.ground_truth.all.*": "as the ground_truth.multi figures, over every (clip, class present) pair: the "
                                  "mixture of a clip without distractor is already close to its target",
    "posthoc.faithfulness.*": "removal faithfulness of the chosen components against as many random ones",
    "*.threshold": "relevance threshold τ these figures were computed with",
    "benchmark.wandb": "W&B table: 'ok', or why it was not logged",
    "benchmark.csv": "the benchmark table as CSV",
    "benchmark.latex": "the benchmark table as LaTeX (booktabs)",
    "*.checkpoint": "the stage's artifact (input of later stages)",
    "*.epochs": "training epochs run",
}

_OPS = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}


def parse_target(text: str) -> tuple[str, float]:
    """``">= 3"`` -> ``(">=", 3.0)``; refuses anything else with a message naming the text."""
    text = str(text).strip()
    for op in (">=", "<=", ">", "<"):
        if text.startswith(op):
            try:
                return op, float(text[len(op):])
            except ValueError:
                break
    raise ValueError(f"target {text!r}: expected '<op> <number>' with op one of >=, >, <=, <")


def check_targets(report: dict, targets: dict[str, str]) -> list[dict]:
    """``[{key, target, value, passed}]`` for every target (``passed`` None when the run has no such figure)."""
    rows = []
    for key, text in targets.items():
        op, bound = parse_target(text)
        value = report.get(key)
        passed = None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
            passed = bool(_OPS[op](float(value), bound))
        rows.append({"key": key, "target": f"{op} {bound:g}", "value": value, "passed": passed})
    return rows


def _describe(ctx: "PipelineContext", key: str) -> str:
    import fnmatch

    text = ctx.descriptions.get(key, "")
    if text:
        return text
    for pattern, fallback in FALLBACK_DESCRIPTIONS.items():
        if fnmatch.fnmatchcase(key, pattern):
            return fallback
    return ""


def _link(ctx: "PipelineContext", path: str | Path) -> str:
    p = Path(path)
    try:
        rel = p.resolve().relative_to(ctx.out_dir.resolve())
    except ValueError:
        rel = p
    return f"[{rel.as_posix()}]({rel.as_posix()})"


def summary_lines(ctx: "PipelineContext") -> list[str]:
    """The report's first screen: what ran, the key figures, each target with pass / fail, where to listen."""
    r = ctx.report
    lines = ["## Summary", ""]
    ran = [k[: -len(".seconds")] for k in r if k.endswith(".seconds") and not ctx.descriptions.get(k, "").startswith("(from")]
    earlier = sorted({k.split(".", 1)[0] for k, d in ctx.descriptions.items() if d.startswith("(from the earlier run")})
    reused = [k.split(".", 1)[1] for k in r if k.startswith("reused.")]
    trained = []
    if "classifier.backbone" in r:
        trained.append(f"classifier `{r['classifier.backbone']}` on {r.get('classifier.data', 'the data set')}"
                       + (f", {int(r['classifier.epochs'])} epoch(s)" if "classifier.epochs" in r else ""))
    if "dictionary.n_components" in r:
        trained.append(f"NMF dictionary of {format_value('dictionary.n_components', r['dictionary.n_components'])} components")
    for stage, what in (("posthoc", "post-hoc interpreter"), ("bydesign", "by-design model"), ("lmac", "L-MAC decoder")):
        if f"{stage}.checkpoint" in r:
            trained.append(what)
    if "instruments.classifier_prauc" in r:
        trained.append("on real recordings (instruments): a classifier, the authors' and the class-block dictionaries, "
                       "a post-hoc interpreter on each")
    # a stage run inside another (the benchmark's L-MAC stage) is in the outer one's time already
    top = ctx.stage_seconds or {s: r[f"{s}.seconds"] for s in ran if isinstance(r.get(f"{s}.seconds"), (int, float))}
    total = sum(float(v) for v in top.values())
    lines.append(f"- **Stages run:** {', '.join(ran) or 'none'} in {total:.1f} s"
                 + (f"; figures kept from the earlier run: {', '.join(earlier)}" if earlier else "")
                 + (f"; artifacts reused: {', '.join(reused)}" if reused else "") + ".")
    if trained:
        lines.append(f"- **Trained:** {'; '.join(trained)}.")
    links = []
    galleries = sorted(ctx.out_dir.rglob("interpretations/index.html"))
    if galleries:
        links.append("listen: " + ", ".join(_link(ctx, g) for g in galleries))
    for key, label in (("benchmark.listening", "every interpreter on the same clips"),
                       ("instruments.listening", "real recordings: mixture, true source, both interpretations"),
                       ("benchmark.table", "benchmark table"), ("evaluation.md", "evaluation"),
                       ("instruments.ground_truth_md", "real recordings' ground truth")):
        if isinstance(r.get(key), str) and Path(r[key]).is_file():
            links.append(f"{label}: {_link(ctx, r[key])}")
    evaluation_md = ctx.out_dir / "evaluation" / "evaluation.md"
    if evaluation_md.is_file() and "evaluation.md" not in r:
        links.append(f"evaluation suite: {_link(ctx, evaluation_md)}")
    if links:
        lines.append(f"- **Open:** {'; '.join(links)}.")
    lines.append("")
    key_rows = [(k, label) for k, label in HEADLINE.items() if k in r]
    if key_rows:
        lines += ["| key figure | value |", "|---|---:|"]
        lines += [f"| {label} (`{k}`) | {format_value(k, r[k])} |" for k, label in key_rows]
        lines.append("")
    lines += real_recording_lines(r)
    checks = check_targets(r, ctx.targets)
    if checks:
        passed = sum(1 for c in checks if c["passed"])
        lines += [f"Targets: **{passed} of {len(checks)} met**.", "", "| target | value | required | result |",
                  "|---|---:|---:|---|"]
        for c in checks:
            verdict = "not run" if c["passed"] is None else ("pass" if c["passed"] else "**FAIL**")
            value = "—" if c["value"] is None else format_value(c["key"], c["value"])
            lines.append(f"| `{c['key']}` | {value} | {c['target']} | {verdict} |")
        lines.append("")
    return lines


def real_recording_lines(r: dict) -> list[str]:
    """The real-recording stage's figures side by side (the authors' settings, the recipe) on the clips with several
    instruments, or nothing when the stage did not run."""
    rows = [n for n in ("authors", "recipe") if f"instruments.ground_truth.{n}.multi.pairs" in r]
    if not rows:
        return []
    head = {"authors": "authors' settings", "recipe": "recipe (class blocks, gated separation)"}
    lines = ["Real recordings (`instruments` stage; sampled instruments, held-out test clips with several instruments; "
             f"classifier macro PR-AUC {format_value('prauc', r.get('instruments.classifier_prauc', float('nan')))}):", "",
             "| figure | " + " | ".join(head[n] for n in rows) + " |", "|---|" + "---:|" * len(rows)]
    for key, label in REAL_RECORDINGS.items():
        keys = [f"instruments.fidelity.{n}" if key == "fidelity" else f"instruments.ground_truth.{n}.multi.{key}" for n in rows]
        if any(k in r for k in keys):
            cells = ["—" if r.get(k) is None else format_value(k, r[k]) for k in keys]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def write_report(ctx: PipelineContext, title: str = "listen-to-interpret report") -> tuple[Path, Path]:
    """``report.json`` (flat keys, for programs) and ``report.md`` (for people) in ``ctx.out_dir``.

    ``report.md``: a summary first (stages run, what was trained, links to the gallery / benchmark table, the key
    figures, every target of ``ctx.targets`` with pass / fail), then one section per stage. A sentence shared by
    several figures of a stage (a family of metrics) is written once above its table, not on every row; the
    benchmark's per-row figures stay in its own table (linked) and in ``report.json``."""
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    json_path = ctx.out_dir / "report.json"
    json_path.write_text(json.dumps(ctx.report, indent=2, sort_keys=True) + "\n")
    lines = [f"# {title}", ""] + summary_lines(ctx) + ["## Details", ""]
    stages: dict[str, list[str]] = {}
    for key in ctx.report:
        stages.setdefault(key.split(".", 1)[0], []).append(key)
    bench_rows = {k for k in stages.get("benchmark", []) if k.count(".") >= 2}
    for stage, keys in stages.items():
        keys = [k for k in keys if k not in bench_rows]
        descriptions = {k: _describe(ctx, k) for k in keys}
        counts: dict[str, int] = {}
        for d in descriptions.values():
            if d:
                counts[d] = counts.get(d, 0) + 1
        lines += [f"### {stage}", ""]
        if bench_rows and stage == "benchmark":
            lines += [f"Every row's figures: the table {_link(ctx, ctx.report.get('benchmark.table', ''))} "
                      "(and `report.json`).", ""]
        shared = [d for d, n in counts.items() if n > 1]
        for d in shared:
            members = [k.split(".", 1)[1] for k in keys if descriptions[k] == d]
            lines.append(f"- {', '.join(f'`{m}`' for m in members)}: {d}")
        if shared:
            lines.append("")
        lines += ["| figure | value | meaning |", "|---|---:|---|"]
        for key in keys:
            d = descriptions[key]
            lines.append(f"| `{key}` | {format_value(key, ctx.report[key])} | {'' if counts.get(d, 0) > 1 else d} |")
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


def cpu_seconds() -> float:
    """CPU time (user + system) of this process's threads and of its finished child processes so far (s)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_pipeline(stage_settings: dict[str, dict], out_dir: str | Path, seed: int = 0,
                 artifacts: dict[str, str] | None = None, earlier: dict | None = None,
                 group: str | None = None, targets: dict[str, str] | None = None) -> PipelineContext:
    """Run the named stages in order; ``stage_settings`` maps stage name -> its settings dict.

    ``artifacts``: artifacts of stages not run now (key -> path, see :data:`ARTIFACT_FILES`), recorded in
    the report as reused; a stage that runs replaces its own. ``earlier``: figures of those stages (from the
    run that made them), kept in the report, so it stays whole and later stages can read them (e.g. the
    benchmark's training times). ``group``: the W&B group of the stages' runs (default:
    :func:`callbacks.wandb_runs.pipeline_group`); each run's ``job_type`` is its stage. ``targets``: figure key ->
    requirement (``">= 3"``), checked in the report.
    """
    from callbacks.wandb_runs import pipeline_group, pipeline_stage

    unknown = [s for s in stage_settings if s not in STAGES and s not in LAZY_STAGES]
    if unknown:
        raise ValueError(f"unknown pipeline stage(s) {unknown}; known stages: {sorted({*STAGES, *LAZY_STAGES})}")
    ctx = PipelineContext(out_dir=Path(out_dir), seed=seed, wandb_group=pipeline_group(out_dir, group),
                          targets=dict(targets or {}))
    for text in ctx.targets.values():
        parse_target(text)  # a malformed target is refused before hours of training
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
        start, cpu_start = time.perf_counter(), cpu_seconds()
        with pipeline_stage(name, ctx.wandb_group, ctx.artifacts):
            figures = get_stage(name)(ctx, dict(settings or {}))
        figures["seconds"] = round(time.perf_counter() - start, 2)
        figures["cpu_seconds"] = round(cpu_seconds() - cpu_start, 2)
        ctx.stage_seconds[name] = figures["seconds"]
        ctx.descriptions.setdefault(f"{name}.seconds", "wall time of the stage (s)")
        ctx.descriptions.setdefault(f"{name}.cpu_seconds", "CPU time of the stage, user + system, every thread and "
                                    "finished worker process (s): on a loaded machine, the measure of its cost")
        for key, value in figures.items():
            ctx.report[f"{name}.{key}"] = value
        write_report(ctx)
        print(f"[l2i] stage {name!r} done in {figures['seconds']:.1f} s ({figures['cpu_seconds']:.1f} s CPU)", flush=True)
    return ctx


# -- the demo command -------------------------------------------------------------------------------------


#: the demo's stages in pipeline order (``--stages`` help)
STAGE_ORDER = ("classifier", "dictionary", "posthoc", "evaluation", "bydesign", "lmac", "benchmark", "instruments")


def demo_main(argv: list[str]) -> int:
    """``l2i demo [--config experiments/demo.yaml] [--out_dir runs/demo] [--stages a,b]``."""
    from jsonargparse import ArgumentParser

    from experiments.cli import resolve_config

    parser = ArgumentParser(prog="l2i demo", description="Run the main job on the embedded synthetic data set (train, "
                            "interpret, evaluate, benchmark), then on real recordings with known sources (instruments); "
                            "writes <out_dir>/report.md (summary first).")
    parser.add_argument("--config", default="experiments/demo.yaml", help="pipeline config (stages and their settings)")
    parser.add_argument("--out_dir", default=None, help="where the report and every stage's folder go "
                        "(default: the config's out_dir, runs/demo)")
    parser.add_argument("--stages", default=None, help="comma-separated subset of the config's stages, among "
                        f"{', '.join(STAGE_ORDER)}; the others' artifacts and figures are reused from out_dir (the "
                        "instruments stage alone, at its larger defaults: --config experiments/demo_instruments.yaml)")
    parser.add_argument("--group", default=None, help="W&B group of the stages' runs (default: $WANDB_RUN_GROUP, else "
                        "<out_dir name>-<start time>)")
    args = parser.parse_args(argv)
    config = yaml.safe_load(resolve_config(args.config).read_text()) or {}
    stages: dict = config.get("stages") or {}
    if args.stages:
        wanted = [s.strip() for s in args.stages.split(",") if s.strip()]
        missing = [s for s in wanted if s not in stages]
        if missing:
            raise ValueError(f"stage(s) {missing} not in {args.config}; it has {list(stages)}")
        stages = {s: stages[s] for s in wanted}
    out_dir = Path(args.out_dir or config.get("out_dir", "runs/demo"))
    reused = earlier = None
    if args.stages:  # a subset: the stages left out may have left their artifacts and figures in out_dir
        reused = existing_artifacts(out_dir)
        earlier = earlier_figures(out_dir, list(stages))
        for key, path in reused.items():
            print(f"[l2i] reusing {key}: {path}", flush=True)
    ctx = run_pipeline(stages, out_dir, seed=int(config.get("seed", 0)), artifacts=reused, earlier=earlier,
                       group=args.group, targets=config.get("targets") or {})
    json_path, md_path = write_report(ctx)
    print("\n".join(summary_lines(ctx)))
    table = ctx.report.get("benchmark.table")
    if table and Path(table).is_file():
        print(f"[l2i] benchmark table: {table}")
    galleries = sorted(ctx.out_dir.rglob("interpretations/index.html"))
    for gallery in galleries:
        print(f"[l2i] listen to the interpretations: {gallery}")
    listening = ctx.report.get("benchmark.listening")
    if listening:
        print(f"[l2i] every interpreter on the same clips, side by side: {listening}")
    real = ctx.report.get("instruments.listening")
    if real:
        print(f"[l2i] real recordings: mixture, true source and both interpretations, side by side: {real}")
    print(f"[l2i] report: {md_path} and {json_path}")
    from callbacks.summary import print_summary  # what the run wrote, where

    print_summary("demo", {"report": md_path, "report (json)": json_path, "benchmark table": table,
                           "galleries": galleries})
    return 0
