"""The ``benchmark`` pipeline stage (``l2i benchmark``, ``l2i demo``): every interpreter on **the same test clips**,
scored by the evaluation suite (:func:`l2i.evaluation.evaluate_interpreter`), one table
(``<out_dir>/benchmark/benchmark.{md,csv,tex,json}``), rewritten after every row.

``protocol: authors`` (``--protocol authors``): the post-hoc row interprets as the authors' preset does
(:func:`l2i.interpreter.protocol.get_protocol`: at most the top 5 components above τ, in the suite and the
listening table), and every row of an NMF interpreter (:data:`AUTHORS_KINDS`: post-hoc and by-design) also gets
the authors' figures (:func:`l2i.evaluation.authors.evaluate_authors_protocol`: top-1/3/5 or 11-threshold AUPRC
fidelity, median drops against random components, L-MAC's table on 0.8 / 0.2 mixtures) under ``authors.*`` in
its ``results`` (``benchmark.json``, ``report.json``) and in an "Authors' protocol" table in ``benchmark.md``.

Rows (``benchmark.interpreters``, name -> settings; ``kind`` defaults to the name):

* ``posthoc`` — L2I's post-hoc interpreter (``ctx.artifacts["interpreter"]``) of the classifier f;
* ``bydesign`` — the by-design model (``ctx.artifacts["bydesign"]``), explaining its own prediction Θ(H);
* ``lmac`` — the L-MAC-style mask decoder (``ctx.artifacts["lmac"]``, trained by
  :func:`experiments.stages.lmac.lmac_stage`);
* ``saliency`` / ``integrated_gradients`` / ``gradcam`` / ``occlusion`` — Captum on the log-mel input
  (:mod:`l2i.baselines.attribution`);
* ``random_components`` / ``all_components`` / ``oracle_components`` — component sets on the post-hoc
  interpreter's dictionary and activations (:mod:`l2i.baselines.components`);
* ``ideal_ratio_mask`` — the oracle ideal ratio mask from the true sources (:mod:`l2i.baselines.oracle`), the
  ceiling of any mask on the mixture's STFT.

Columns: see :data:`COLUMNS` (accuracy of the explained model, fidelity, faithfulness by removal, L-MAC's
AI/AD/AG/FF/FidIn/SPS/COMP, ground-truth SI-SDR where the clips have sources, interpretation time per clip,
training time; the ground-truth report's medians on single- and multi-source clips, share of pairs better than
the mixture, specificity and the ideal ratio mask, where the clips have sources).
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from experiments.stages.lmac import lmac_stage

__all__ = [
    "COLUMNS",
    "ROW_KINDS",
    "benchmark_stage",
    "resolve_settings",
    "table_markdown",
    "write_tables",
    "aggregate_seeds",
]


#: ``(column, source, description, better)``: ``source`` is a suite key (``family.key``) or a row field
COLUMNS: list[tuple[str, str, str, str]] = [
    ("accuracy", "row.accuracy", "accuracy of the explained model on the benchmark clips (multilabel: per-label accuracy at its class threshold)", "higher"),
    ("fidelity", "fidelity", "agreement of the interpreter's own prediction with the explained model (top-1; multilabel F1); 1 by construction for baselines that explain f directly", "higher"),
    ("removal_prob_drop", "faithfulness.relevant_prob_drop_mean", "faithfulness: drop of the explained class's probability when the interpretation is removed (residual audio)", "higher"),
    ("removal_logit_drop", "faithfulness.relevant_logit_drop_mean", "faithfulness: drop of the explained class's logit when the interpretation is removed", "higher"),
    ("AI", "lmac.AI", "L-MAC average increase (%): masked-in input more confident than the input", "higher"),
    ("AD", "lmac.AD", "L-MAC average drop (%) of confidence on the masked-in input", "lower"),
    ("AG", "lmac.AG", "L-MAC average gain (%) of confidence on the masked-in input", "higher"),
    ("FF", "lmac.FF", "L-MAC faithfulness (%): probability drop on the masked-out input", "higher"),
    ("FidIn", "lmac.FidIn", "L-MAC input fidelity (%): masked-in input keeps the class", "higher"),
    ("SPS", "lmac.SPS", "mask sparseness (Gini index)", "higher"),
    ("COMP", "lmac.COMP", "mask complexity (entropy, nats)", "lower"),
    ("si_sdr", "ground_truth.all.interpretation_mean", "SI-SDR (dB) of the interpretation of the true class against its true source", "higher"),
    ("si_sdri", "ground_truth.all.over_mixture_mean", "SI-SDR improvement (dB) over the mixture itself", "higher"),
    ("energy_in_support", "ground_truth.all.energy_in_support_mean", "share of the interpretation's energy inside the true source's support", "higher"),
    ("si_sdr_single", "ground_truth.single.interpretation_median", "median SI-SDR (dB) of the interpretation of c against c's source, clips with one class present", "higher"),
    ("si_sdr_multi", "ground_truth.multi.interpretation_median", "median SI-SDR (dB) of the interpretation of c against c's source, clips with several classes present", "higher"),
    ("mixture_multi", "ground_truth.multi.mixture_median", "median SI-SDR (dB) of the mixture itself against c's source, same pairs (the same for every row)", "higher"),
    ("beats_mixture_multi", "ground_truth.multi.better_than_mixture", "share of the multi-source pairs where the interpretation is closer to c's source than the mixture", "higher"),
    ("specificity", "ground_truth.multi.specificity", "share of the multi-source pairs where c's own interpretation is closer to c's source than another present class's (chance 0.5)", "higher"),
    ("oracle_multi", "ground_truth.multi.oracle_median", "median SI-SDR (dB) of the ideal ratio mask, same pairs (the ceiling; the same for every row)", "higher"),
    ("interp_ms_per_clip", "row.interp_ms_per_clip", "interpretation time per clip (ms, mean over every interpret call of the suite; depends on the machine and its load: compare rows of one run, not runs)", "lower"),
    ("train_s", "row.train_seconds", "training time of what the row needs beyond classifier and dictionary (s): post-hoc Ψ/Θ (also for the component baselines, which use its activations), the whole by-design model, the L-MAC decoder; 0 for Captum attributions and reused artifacts of unknown cost", "lower"),
]
GROUND_TRUTH_COLUMNS = {"si_sdr", "si_sdri", "energy_in_support", "si_sdr_single", "si_sdr_multi", "mixture_multi",
                        "beats_mixture_multi", "specificity", "oracle_multi"}

#: row kinds and what they need from ``ctx.artifacts``
ROW_KINDS = {
    "posthoc": "interpreter",
    "bydesign": "bydesign",
    "lmac": "lmac",
    "saliency": "classifier",
    "integrated_gradients": "classifier",
    "gradcam": "classifier",
    "occlusion": "classifier",
    "random_components": "interpreter",
    "all_components": "interpreter",
    "oracle_components": "interpreter",
    "ideal_ratio_mask": "classifier",
}
#: row kinds the authors' protocol applies to (interpreters of NMF components ranked by relevance)
AUTHORS_KINDS = {"posthoc", "bydesign"}

#: row kinds that need the clips' true sources (they observe each batch before interpreting it)
SOURCE_KINDS = {"oracle_components", "ideal_ratio_mask"}

DEFAULT_INTERPRETERS: dict[str, dict] = {
    "posthoc": {},
    "bydesign": {},
    "lmac": {},
    "saliency": {},
    "integrated_gradients": {"n_steps": 8},
    "gradcam": {},
    "occlusion": {"patch": [16, 16]},
    "random_components": {},
    "all_components": {},
    "oracle_components": {},
    "ideal_ratio_mask": {},
}


# -- timing wrapper -----------------------------------------------------------------------------------------


class _Timed:
    """Forwards ``interpret`` (and every attribute) to ``inner``, adding up the time and the clips."""

    def __init__(self, inner):
        self.__dict__["inner"] = inner
        self.__dict__["seconds"] = 0.0
        self.__dict__["clips"] = 0

    def __getattr__(self, name: str):
        return getattr(self.__dict__["inner"], name)

    def _call(self, waveform, **kwargs):
        start = time.perf_counter()
        out = self.inner.interpret(waveform, **kwargs)
        self.__dict__["seconds"] += time.perf_counter() - start
        self.__dict__["clips"] += int(waveform.shape[0])
        return out


class _TimedPlain(_Timed):
    def interpret(self, waveform, target=None, threshold=0.2):
        return self._call(waveform, target=target, threshold=threshold)


class _TimedComponents(_Timed):
    def interpret(self, waveform, target=None, threshold=0.2, components=None):
        kw = {} if components is None else {"components": components}
        return self._call(waveform, target=target, threshold=threshold, **kw)


class _TopK:
    """Forwards every attribute to ``inner``; its ``interpret`` caps each interpretation at ``top_k`` components
    unless the caller gives its own ``top_k`` (the authors' faithfulness passes 0: every component above τ).
    Leaves the shared model as it is (the component baselines use the same post-hoc interpreter)."""

    def __init__(self, inner, top_k: int):
        self.inner, self.top_k = inner, int(top_k)

    def __getattr__(self, name: str):
        return getattr(self.__dict__["inner"], name)

    def interpret(self, waveform, target=None, threshold=None, **kwargs):
        kwargs.setdefault("top_k", self.top_k)
        return self.inner.interpret(waveform, target, threshold, **kwargs)


def _timed(interpreter) -> _Timed:
    from l2i.evaluation.common import supports_components

    return (_TimedComponents if supports_components(interpreter) else _TimedPlain)(interpreter)


# -- loading artifacts --------------------------------------------------------------------------------------


def _artifact(ctx, key: str, row: str) -> str:
    path = ctx.artifacts.get(key)
    if not path:
        raise ValueError(f"benchmark row {row!r} needs the {key!r} artifact: run its stage first or give artifacts.{key}: PATH")
    if not Path(path).is_file():
        raise FileNotFoundError(f"benchmark row {row!r}: artifacts.{key} = {path} does not exist")
    return str(path)


class _Loaded:
    """Loads each artifact once and keeps it (rows share the classifier and the post-hoc interpreter)."""

    def __init__(self, ctx, device: str):
        self.ctx, self.device, self.cache = ctx, device, {}

    #: the kind of checkpoint each artifact key holds (:func:`lightning_modules.artifacts.load_artifact`)
    KINDS = {"classifier": "classifier", "interpreter": "posthoc", "bydesign": "bydesign", "lmac": "lmac"}

    def get(self, key: str, row: str):
        if key not in self.cache:
            from lightning_modules.artifacts import load_artifact

            if key not in self.KINDS:
                raise ValueError(f"benchmark: unknown artifact {key!r}")
            obj = load_artifact(_artifact(self.ctx, key, row), self.KINDS[key], map_location=self.device,
                                verb=f"benchmark row {row!r}")
            obj = obj.to(self.device).eval()
            obj.requires_grad_(False)
            self.cache[key] = obj
        return self.cache[key]


def build_row(name: str, spec: dict, loaded: _Loaded, seed: int, protocol: str = "project"):
    """``(interpreter, explained classifier, explained-model key, settings)`` of one benchmark row. ``protocol``:
    the interpretation details of the post-hoc row (``authors``: the preset's ``top_k``)."""
    from l2i.baselines import ATTRIBUTIONS, SOURCE_ORACLES, build_baseline
    from l2i.interpreter.protocol import get_protocol

    spec = dict(spec or {})
    kind = spec.pop("kind", name)
    if kind not in ROW_KINDS:
        raise ValueError(f"benchmark.interpreters.{name}: unknown kind {kind!r}; known: {sorted(ROW_KINDS)}")
    if kind == "bydesign":
        model = loaded.get("bydesign", name)
        if spec:
            raise ValueError(f"benchmark.interpreters.{name}: the by-design row takes no settings, got {sorted(spec)}")
        return model, model.as_classifier(), "bydesign", {"kind": kind}
    classifier = loaded.get("classifier", name)
    if kind == "posthoc":
        if spec:
            raise ValueError(f"benchmark.interpreters.{name}: the posthoc row takes no settings, got {sorted(spec)}")
        model = loaded.get("interpreter", name)
        preset = get_protocol(protocol)
        if preset.top_k is not None:
            return _TopK(model, preset.top_k), classifier, "classifier", {"kind": kind, "protocol": preset.name,
                                                                          "top_k": preset.top_k}
        return model, classifier, "classifier", {"kind": kind}
    if kind == "lmac":
        model = loaded.get("lmac", name)
        if "mask" in spec:
            if spec["mask"] not in ("soft", "threshold"):
                raise ValueError(f"benchmark.interpreters.{name}.mask must be soft|threshold, got {spec['mask']!r}")
            model.interpreter.mask_mode = spec.pop("mask")
        if spec:
            raise ValueError(f"benchmark.interpreters.{name}: unknown L-MAC settings {sorted(spec)} (only mask)")
        return model, classifier, "classifier", {"kind": kind, "mask": model.interpreter.mask_mode}
    try:
        if kind in ATTRIBUTIONS or kind in SOURCE_ORACLES:
            interp = build_baseline(kind, classifier=classifier, **spec).to(loaded.device)
        else:
            if kind == "random_components":
                spec.setdefault("seed", seed)
            interp = build_baseline(kind, posthoc=loaded.get("interpreter", name), **spec)
    except TypeError as err:
        raise ValueError(f"benchmark.interpreters.{name}: bad settings for {kind}: {err}") from err
    return interp, classifier, "classifier", {"kind": kind, **getattr(interp, "settings", {}), **spec}


# -- data -----------------------------------------------------------------------------------------------------


def _datamodule(settings: dict):
    """The benchmark's DataModule and its record: ``settings["data_config"]`` (a data set's ``data.yaml`` or a recipe
    whose ``data`` section is used; default the synthetic post-hoc config when ``settings["data"]`` is absent), with
    ``settings["data"]`` over it (a whole ``{class_path, init_args}`` section, or overrides such as
    ``{init_args: {root: ...}}``), read as ``l2i fit`` reads it (:func:`experiments.cli.instantiate`);
    ``settings["batch_size"]`` overrides its batch size."""
    from experiments.cli import instantiate, read_config
    from experiments.evaluate import batch_size_override

    configs: list[dict] = []
    source = "benchmark.data"
    if settings.get("data_config") or not settings.get("data"):
        path = settings.get("data_config", "experiments/synthetic/posthoc.yaml")
        loaded = read_config(path)
        section = loaded if "class_path" in loaded else loaded.get("data")
        if not section:
            raise ValueError(f"benchmark: {path} has no 'data' section (class_path + init_args)")
        configs.append({"data": section})
        source = str(path)
    if settings.get("data"):
        configs.append({"data": settings["data"]})
    try:
        overrides = [batch_size_override(configs, [], settings["batch_size"])] if settings.get("batch_size") else []
        read = instantiate(configs, overrides, sections=("data",))
    except ValueError as err:
        raise ValueError(f"benchmark: {source}: {err}") from err
    section = read.config["data"]
    return read.data, {"source": source, "class_path": section["class_path"], "init_args": dict(section.get("init_args") or {})}


def _batches(dm, split: str, max_batches: int | None) -> list[dict]:
    if split not in ("test", "val"):
        raise ValueError(f"benchmark.split must be test|val, got {split!r}")
    dm.setup("test" if split == "test" else "validate")
    loader = dm.test_dataloader() if split == "test" else dm.val_dataloader()
    out = []
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= int(max_batches):
            break
        out.append(batch)
    if not out:
        raise ValueError(f"benchmark: the {split} split yielded no batch")
    return out


@torch.no_grad()
def _accuracy(model, batches: list[dict], task: str, device: str, class_threshold: float = 0.5) -> float:
    correct = total = 0.0
    for batch in batches:
        logits = model(batch["waveform"].to(device).float())
        target = batch["target"].to(device)
        if task == "multiclass":
            correct += float((logits.argmax(-1) == target).sum())
            total += float(target.numel())
        else:
            correct += float(((logits.sigmoid() > class_threshold) == (target > 0.5)).sum())
            total += float(target.numel())
    return correct / max(total, 1.0)


# -- the table ------------------------------------------------------------------------------------------------


def _value(source: str, results: dict, row: dict) -> float:
    if source.startswith("row."):
        return float(row[source[4:]])
    if source == "fidelity":
        return float(results.get("fidelity.top1", results.get("fidelity.f1", 0.0)))
    return float(results.get(source, 0.0))


def _fmt(v: float) -> str:
    """Every cell of every table: two decimals (whole numbers from 1000 on), the same for every column."""
    if not math.isfinite(v):
        return str(v)
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.2f}"


def _cell(r: dict, c: str) -> str:
    """A row's cell: ``mean ± std`` when the row aggregates seeds, else the value."""
    if "std" in r and c in r["std"]:
        return f"{_fmt(r['columns'][c])} ± {_fmt(r['std'][c])}"
    return _fmt(r["columns"][c])


def best_rows(rows: list[dict], columns: list[str]) -> dict[str, set[str]]:
    """Per column, the names of the rows with the best value (by :data:`COLUMNS`' direction; ties all marked).
    The bound rows ``all_components`` / ``oracle_components`` (reference points, not interpreters) are left out."""
    better = {c: b for c, _, _, b in COLUMNS}
    out: dict[str, set[str]] = {}
    for c in columns:
        cands = [r for r in rows if r.get("kind", r["name"]) not in REFERENCE_KINDS and c in r["columns"]]
        if len(cands) < 2 or c not in better:
            continue
        values = [round(r["columns"][c], 2) for r in cands]
        target = max(values) if better[c] == "higher" else min(values)
        out[c] = {r["name"] for r, v in zip(cands, values) if v == target}
    return out


#: an L-MAC decoder whose mean mask reaches this passes (almost) everything: the table says so
ALL_PASS = 0.99

#: rows that are reference points (the whole input, the true sources), not interpreters: never marked best
REFERENCE_KINDS = {"all_components", "oracle_components"}


def table_markdown(rows: list[dict], columns: list[str], title: str | None = None) -> str:
    """Rows = interpreters, columns = figures; ``rows`` are ``{"name", "columns": {col: value}}`` (plus ``std``
    when they aggregate seeds). The best interpreter of each column is bold."""
    best = best_rows(rows, columns)
    lines = [f"## {title}", ""] if title else []
    lines.append("| interpreter | " + " | ".join(columns) + " |")
    lines.append("|---|" + "---:|" * len(columns))
    for r in rows:
        cells = [f"**{_cell(r, c)}**" if r["name"] in best.get(c, ()) else _cell(r, c) for c in columns]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    return str(text).replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


def table_latex(rows: list[dict], columns: list[str], caption: str | None = None) -> str:
    """The table for a paper: booktabs rules (``\\usepackage{booktabs}``), best interpreter per column bold, an
    arrow per column for its direction, ``mean $\\pm$ std`` cells when the rows aggregate seeds."""
    better = {c: b for c, _, _, b in COLUMNS}
    best = best_rows(rows, columns)
    up, down = r"$\uparrow$", r"$\downarrow$"
    head = " & ".join(f"{_tex(c)} {up if better.get(c) == 'higher' else down}" for c in columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{l" + "r" * len(columns) + "}", r"\toprule",
             f"interpreter & {head} \\\\", r"\midrule"]
    for r in rows:
        cells = []
        for c in columns:
            cell = _cell(r, c).replace("±", r"$\pm$")
            cells.append(f"\\textbf{{{cell}}}" if r["name"] in best.get(c, ()) else cell)
        lines.append(f"{_tex(r['name'])} & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(f"\\caption{{{_tex(caption)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_tables(out: Path, rows: list[dict], columns: list[str], title: str, record: dict, complete: bool = True) -> None:
    """``benchmark.md`` (table, legend, one line per row), ``benchmark.csv``, ``benchmark.tex`` (booktabs),
    ``benchmark.json`` (everything). Called after every row, so a killed run keeps the rows it finished
    (``complete: false`` in the JSON and a note under the Markdown title)."""
    descriptions = {c: d for c, _, d, _ in COLUMNS}
    better = {c: b for c, _, _, b in COLUMNS}
    note = "" if complete else f"\n*Partial: {len(rows)} row(s) finished; the run stopped or is still running.*\n"
    md = table_markdown(rows, columns, title)
    legend = "\n".join(f"- `{c}` ({better.get(c, '?')} is better): {descriptions.get(c, '')}" for c in columns)
    row_notes = "\n".join(
        f"- `{r['name']}`: kind {r['kind']}, explains {r['explained_model']}, "
        + (f"seeds {r['seeds']}" if "seeds" in r else f"seed {r['seed']}")
        + f", τ {r['threshold']}, settings {json.dumps(r['settings'], default=str)}, artifact {r.get('artifact')}"
        for r in rows)
    extra = record.get("notes") or []
    authors = authors_markdown(rows)
    (out / "benchmark.md").write_text(md + note + "\n" + "\n".join(extra + [""]) + "Bold: the best interpreter per "
                                      "column (the reference rows all_components / oracle_components left out).\n\n"
                                      + legend + "\n\nRows:\n\n" + row_notes + "\n"
                                      + (f"\n{authors}" if authors else ""))
    with open(out / "benchmark.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        stds = any("std" in r for r in rows)
        head = ["interpreter", *columns] + ([f"{c}_std" for c in columns] if stds else [])
        writer.writerow(head + ["kind", "explained_model", "seeds" if stds else "seed", "threshold", "settings", "artifact"])
        for r in rows:
            values = [repr(float(r["columns"][c])) for c in columns]
            if stds:
                values += [repr(float(r["std"][c])) for c in columns]
            writer.writerow([r["name"], *values, r["kind"], r["explained_model"],
                             " ".join(map(str, r["seeds"])) if stds else r["seed"], r["threshold"],
                             json.dumps(r["settings"], default=str), r.get("artifact") or ""])
    (out / "benchmark.tex").write_text(table_latex(rows, columns, title))
    (out / "benchmark.json").write_text(json.dumps({**record, "complete": complete, "columns": columns,
                                                    "descriptions": {c: descriptions.get(c, "") for c in columns},
                                                    "rows": rows}, indent=2, default=str) + "\n")


def aggregate_seeds(per_seed: list[list[dict]]) -> list[dict]:
    """Rows of several seeds -> one row per interpreter: ``columns`` the mean, ``std`` the sample standard
    deviation (ddof 1; 0 for one seed), ``seeds`` the seeds, ``per_seed`` the values. Rows missing from a seed
    (a killed run) aggregate the seeds that have them."""
    import statistics

    names: list[str] = []
    for rows in per_seed:
        names += [r["name"] for r in rows if r["name"] not in names]
    out = []
    for name in names:
        found = [r for rows in per_seed for r in rows if r["name"] == name]
        columns = [c for c in found[0]["columns"] if all(c in r["columns"] for r in found)]
        row = {k: v for k, v in found[0].items() if k not in ("columns", "results", "seed", "eval_seconds")}
        row["seeds"] = [r["seed"] for r in found]
        row["columns"] = {c: statistics.fmean(r["columns"][c] for r in found) for c in columns}
        row["std"] = {c: (statistics.stdev([r["columns"][c] for r in found]) if len(found) > 1 else 0.0) for c in columns}
        row["per_seed"] = {c: [r["columns"][c] for r in found] for c in columns}
        out.append(row)
    return out


def _log_wandb(ctx, rows: list[dict], columns: list[str], settings: dict, listening: dict | None = None) -> str | None:
    """The table (and the listening table, :func:`experiments.listening.log_listening`) as W&B tables (offline by
    default) through the safe logger; returns the failure, if any."""
    try:
        from callbacks.safe_logging import SafeWandbLogger

        logger = SafeWandbLogger(project=settings.get("wandb_project", "listen-to-interpret"), name="benchmark",
                                 save_dir=str(ctx.out_dir), offline=True, csv=False)
        logger.log_hyperparams({"benchmark": json.loads(json.dumps(settings, default=str)), "seed": ctx.seed})
        logger.log_table(key="benchmark", columns=["interpreter", *columns],
                         data=[[r["name"], *[r["columns"][c] for c in columns]] for r in rows])
        if listening is not None:
            from experiments.listening import log_listening

            log_listening(logger, listening)
        logger.finalize("success")
        run = getattr(logger, "_experiment", None)
        if run is not None and hasattr(run, "finish"):
            run.finish()  # end this run: a W&B run left open is silently reused by the next logger in the process
        return logger.failed
    except Exception as err:  # never let logging take the benchmark down
        return f"{type(err).__name__}: {err}"


def resolve_settings(settings: dict | None) -> dict:
    """The benchmark settings: ``config: <benchmark YAML>`` takes that file's ``benchmark`` section (and its
    ``stages.lmac`` as the L-MAC settings), then the other keys given here override it. This is how ``l2i demo``'s
    benchmark stage and ``l2i benchmark`` share one configuration."""
    settings = dict(settings or {})
    path = settings.pop("config", None)
    if not path:
        return settings
    from experiments.cli import load_pipeline_config

    file = load_pipeline_config(path)
    base = dict(file.get("benchmark") or {})
    lmac = (file.get("stages") or {}).get("lmac")
    if lmac is not None and "lmac" not in base:
        base["lmac"] = lmac
    return {**base, **settings}


def _checked_settings(settings: dict | None) -> tuple[dict, dict[str, dict], str]:
    """``(settings, interpreters to run, protocol name)`` of :func:`benchmark_stage`, refusing unknown keys, rows
    and protocols with one line each."""
    from l2i.interpreter.protocol import get_protocol

    settings = resolve_settings(settings)
    known = {"interpreters", "data", "data_config", "batch_size", "split", "max_batches", "threshold", "lmac", "device",
             "wandb", "wandb_project", "title", "rows", "listening_clips", "protocol"}
    unknown = set(settings) - known
    if unknown:
        raise ValueError(f"benchmark settings: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    interpreters = settings.get("interpreters") or DEFAULT_INTERPRETERS
    if not isinstance(interpreters, dict):
        raise ValueError("benchmark.interpreters must be a mapping {row name: settings}")
    if settings.get("rows"):
        wanted = [r.strip() for r in settings["rows"].split(",")] if isinstance(settings["rows"], str) else list(settings["rows"])
        missing = [r for r in wanted if r not in interpreters]
        if missing:
            raise ValueError(f"benchmark rows {missing} are not in the config's interpreters; it has {list(interpreters)}")
        interpreters = {r: interpreters[r] for r in wanted if r}
    try:
        protocol = get_protocol(settings.get("protocol")).name
    except ValueError as err:
        raise ValueError(f"benchmark.protocol: {err}") from None
    return settings, interpreters, protocol


def _ensure_lmac(ctx, settings: dict, kinds: dict[str, str]) -> None:
    """Train the L-MAC decoder (:func:`lmac_stage`) when a row needs it and no L-MAC artifact exists."""
    if "lmac" in kinds.values() and "lmac" not in ctx.artifacts:
        start = time.perf_counter()
        figures = lmac_stage(ctx, dict(settings.get("lmac") or {}))
        for k, v in figures.items():
            ctx.report[f"lmac.{k}"] = v
        ctx.report["lmac.seconds"] = round(time.perf_counter() - start, 2)


def _score_row(ctx, name: str, spec: dict, kind: str, loaded: _Loaded, batches: list[dict], has_sources: bool,
               tau: float, protocol: str, data_source: str, accuracy_cache: dict[str, float]) -> tuple[dict, Any, Any]:
    """One row of the table: ``(row record, interpreter, explained classifier)`` after the suite (and, under the
    authors' protocol, their figures) on ``batches``."""
    from l2i.evaluation import evaluate_interpreter

    seed, device = int(ctx.seed), loaded.device
    torch.manual_seed(seed)
    interp, classifier, model_key, row_settings = build_row(name, spec, loaded, seed, protocol)
    task = getattr(classifier, "task", None) or getattr(interp, "task", "multiclass")
    if model_key not in accuracy_cache:
        thr = getattr(getattr(interp, "hparams", {}), "get", lambda *_: None)("class_threshold") or 0.5
        accuracy_cache[model_key] = _accuracy(classifier, batches, task, device, float(thr))
    timed = _timed(interp)
    loader: Iterable[dict] = batches
    if kind in SOURCE_KINDS:
        if not has_sources:
            raise ValueError(f"benchmark row {name!r} ({kind}) needs clips with sources; {data_source} has none")
        loader = interp.observing(batches)
    start = time.perf_counter()
    results = evaluate_interpreter(timed, classifier, loader, task=task, threshold=tau, noise_snr_db=None, seed=seed,
                                   device=device)
    if protocol == "authors" and kind in AUTHORS_KINDS:
        results.update(_authors_figures(interp, classifier, batches, task, seed, device))
        row_settings = {**row_settings, "protocol": protocol}
    row = {"name": name, "kind": kind, "explained_model": model_key, "accuracy": accuracy_cache[model_key],
           "interp_ms_per_clip": 1000.0 * timed.seconds / max(timed.clips, 1), "train_seconds": _train_seconds(ctx, kind),
           "eval_seconds": round(time.perf_counter() - start, 2), "seed": seed, "threshold": tau, "settings": row_settings,
           "artifact": ctx.artifacts.get(ROW_KINDS[kind]), "results": results}
    row["columns"] = {c: _value(src, results, row) for c, src, _, _ in COLUMNS if has_sources or c not in GROUND_TRUTH_COLUMNS}
    bad = [c for c, v in row["columns"].items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"benchmark row {name!r}: non-finite column(s) {bad}")
    return row, interp, classifier


def _stage_figures(ctx, rows: list[dict], out: Path, batches: list[dict], wandb_failure: str | None,
                   listening: dict | None) -> dict:
    """The benchmark stage's flat figures (``<row>.<column>``, ``<row>.authors.<figure>``, the table's files …)
    and their descriptions in ``ctx``."""
    columns = list(rows[0]["columns"])
    descriptions = {c: d for c, _, d, _ in COLUMNS}
    figures: dict[str, Any] = {}
    for r in rows:
        for c in columns:
            figures[f"{r['name']}.{c}"] = r["columns"][c]
            ctx.descriptions[f"benchmark.{r['name']}.{c}"] = descriptions[c]
        for k, v in r["results"].items():
            if k.startswith("authors."):
                figures[f"{r['name']}.{k}"] = v
                ctx.descriptions[f"benchmark.{r['name']}.{k}"] = "the authors' protocol (l2i.evaluation.authors)"
    figures["table"] = str(out / "benchmark.md")
    figures["csv"] = str(out / "benchmark.csv")
    figures["latex"] = str(out / "benchmark.tex")
    figures["clips"] = int(sum(b["waveform"].shape[0] for b in batches))
    figures["wandb"] = "ok" if wandb_failure is None else str(wandb_failure)
    if listening is not None:
        figures["listening"] = listening["page"]
        ctx.descriptions["benchmark.listening"] = "listening table: every interpreter's interpretation of the same clips (HTML)"
    ctx.descriptions["benchmark.table"] = "the benchmark table (markdown; CSV, LaTeX and JSON beside it)"
    ctx.descriptions["benchmark.clips"] = "clips every interpreter was scored on"
    return figures


def benchmark_stage(ctx, settings: dict) -> dict:
    """Evaluate every interpreter on the same clips and write the table (see the module docstring).

    settings:
        interpreters: ``{row name: {kind: …, <baseline arguments>}}`` (default :data:`DEFAULT_INTERPRETERS`).
        data: a ``{class_path, init_args}`` DataModule section, else the ``data`` of ``data_config`` (default
            experiments/synthetic/posthoc.yaml); ``batch_size`` overrides its batch size.
        split: ``test`` (default) or ``val``; max_batches: batches of that split scored (default 4).
        threshold: relevance threshold τ of every interpreter (default 0.2).
        lmac: settings of :func:`lmac_stage` when a ``lmac`` row is asked for and no L-MAC artifact exists.
        device: default cuda when available.
        wandb: log the W&B table (default true).
        listening_clips: rows of the listening table (default 8; 0: no listening table).
        rows: names of the interpreters to run (list or comma-separated; default all).
        protocol: ``project`` (default) or ``authors`` (see the module docstring).
        config: a benchmark YAML whose ``benchmark`` section is the default of all the above (see
            :func:`resolve_settings`).
    Returns flat figures ``<row>.<column>`` (and ``<row>.authors.<figure>`` under ``protocol: authors``) plus
    ``table`` (markdown path).
    """
    settings, interpreters, protocol = _checked_settings(settings)
    device = settings.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    tau = float(settings.get("threshold", 0.2))
    out = ctx.stage_dir("benchmark")
    kinds = {name: (spec or {}).get("kind", name) for name, spec in interpreters.items()}
    _ensure_lmac(ctx, settings, kinds)

    dm, data_record = _datamodule(settings)
    batches = _batches(dm, settings.get("split", "test"), settings.get("max_batches", 4))
    has_sources = all("sources" in b and "source_labels" in b for b in batches)
    loaded = _Loaded(ctx, device)

    title = settings.get("title", f"benchmark ({data_record['class_path'].rsplit('.', 1)[-1]}, {settings.get('split', 'test')} split, {int(sum(b['waveform'].shape[0] for b in batches))} clips, seed {ctx.seed})")
    record = {"settings": settings, "data": data_record, "seed": int(ctx.seed), "artifacts": dict(ctx.artifacts),
              "protocol": protocol}
    mask_mean = ctx.report.get("lmac.val_mask_mean")
    if "lmac" in kinds.values() and isinstance(mask_mean, (int, float)) and mask_mean >= ALL_PASS:
        record["notes"] = [f"The lmac row is an all-pass mask (mean mask {mask_mean:.3f} on the validation clips): its "
                           "figures are those of the unmasked input, not of an interpretation. With the recipe's loss "
                           "weights passing everything is the decoder's optimum on this classifier; see "
                           "experiments/synthetic/lmac.yaml.", ""]
    rows: list[dict] = []
    entries: list[tuple] = []  # (row name, interpreter, explained model): the listening table's columns
    accuracy_cache: dict[str, float] = {}
    for name, spec in interpreters.items():
        row, interp, classifier = _score_row(ctx, name, spec, kinds[name], loaded, batches, has_sources, tau, protocol,
                                             data_record["source"], accuracy_cache)
        rows.append(row)
        entries.append((name, interp, classifier))
        write_tables(out, rows, list(rows[0]["columns"]), title, record, complete=len(rows) == len(interpreters))
        print(f"[l2i] benchmark {name}: " + ", ".join(f"{c}={_fmt(v)}" for c, v in row["columns"].items()), flush=True)

    listening = _listening(out, entries, batches[0], dm, tau, settings, device)
    wandb_failure = (_log_wandb(ctx, rows, list(rows[0]["columns"]), settings, listening) if settings.get("wandb", True)
                     else "disabled")
    return _stage_figures(ctx, rows, out, batches, wandb_failure, listening)


def _authors_figures(interp, classifier, batches: list[dict], task: str, seed: int, device: str) -> dict[str, float]:
    """The authors' figures of one row on the benchmark's clips, as ``authors.<figure>`` (the same as ``l2i evaluate
    --protocol authors``: :func:`l2i.evaluation.authors.evaluate_authors_protocol` with its per-task defaults)."""
    from l2i.evaluation.authors import evaluate_authors_protocol

    hp = getattr(interp, "hparams", None) or {}
    class_threshold = hp.get("class_threshold") if hasattr(hp, "get") else None
    num_classes = int(getattr(interp, "num_classes", 0) or getattr(classifier, "num_classes", 0) or 0)
    figures = evaluate_authors_protocol(interp, classifier, batches, task=task, num_classes=num_classes,
                                        classifier_thresholds=0.5 if class_threshold is None else class_threshold,
                                        seed=seed, device=device)
    bad = [k for k, v in figures.items() if not math.isfinite(float(v))]
    if bad:
        raise ValueError(f"the authors' protocol gave non-finite figure(s) {bad}")
    return {f"authors.{k}": float(v) for k, v in figures.items()}


def authors_markdown(rows: list[dict]) -> str:
    """The rows' authors' figures (``results["authors.*"]``) as a Markdown table, or ``""`` when none has them.
    Counts, thresholds and the per-class random counts stay in the JSON."""
    keyed = [r for r in rows if any(k.startswith("authors.") for k in r.get("results", {}))]
    if not keyed:
        return ""
    keys: list[str] = []
    for r in keyed:
        keys += [k for k in r["results"] if k.startswith("authors.") and k not in keys
                 and not k.endswith((".count", ".threshold")) and ".random_count." not in k]
    heads = [k[len("authors."):] for k in keys]
    lines = ["## Authors' protocol", "",
             "The authors' figures on the same clips (`l2i evaluate --protocol authors`): fidelity, median drops when "
             "every component above their τ is removed vs random components, L-MAC's table on 0.8 / 0.2 mixtures. "
             "Rows of other kinds: not applicable (no relevance-ranked NMF components).", "",
             "| interpreter | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for r in keyed:
        lines.append(f"| {r['name']} | " + " | ".join(_fmt(float(r['results'][k])) if k in r["results"] else "—"
                                                      for k in keys) + " |")
    return "\n".join(lines) + "\n"


def _listening(out: Path, entries: list[tuple], batch: dict, dm, tau: float, settings: dict, device: str) -> dict | None:
    """The listening table (:mod:`experiments.listening`) of the first ``listening_clips`` clips (default 8;
    0 = none) in ``<out>/listening/``."""
    from experiments.listening import listening_table

    clips = int(settings.get("listening_clips", 8))
    if clips <= 0:
        return None
    names = list(getattr(dm, "class_names", None) or [])
    return listening_table(out / "listening", entries, batch, names, threshold=tau, clips=clips, device=device)


def _train_seconds(ctx, kind: str) -> float:
    key = {"posthoc": "posthoc.train_seconds", "random_components": "posthoc.train_seconds",
           "all_components": "posthoc.train_seconds", "oracle_components": "posthoc.train_seconds",
           "bydesign": "bydesign.train_seconds", "lmac": "lmac.train_seconds"}.get(kind)
    value = ctx.report.get(key) if key else 0.0
    try:
        value = float(value or 0.0)
    except (TypeError, ValueError):
        value = 0.0
    return value if math.isfinite(value) else 0.0
