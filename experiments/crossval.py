"""``l2i crossval``: k-fold cross-validation of one fit config (ESC-50's official 5 folds by default).

One run per fold, each built by the project's LightningCLI from the same config plus per-fold overrides
(``--data.init_args.test_fold k`` and ``--data.init_args.val_fold``), then ``fit`` and ``test`` (on the
best checkpoint when a ``ModelCheckpoint`` kept one). The per-fold test metrics and their mean ± std go to
``<out_dir>/crossval.json`` and ``<out_dir>/crossval.md``.

Usage::

    l2i crossval --config experiments/esc50/classifier.yaml [--folds 1 2 3 4 5] [--val next_fold|fraction]
                 [--out_dir runs/crossval/esc50] [-- any LightningCLI overrides, e.g. --trainer.max_epochs 5]

``--val next_fold``: validation on fold k+1 (5 -> 1), training on the other three; ``fraction``: validation
is the DataModule's ``val_fraction`` of the four training folds (grouped by source clip).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Sequence

__all__ = ["main", "run_crossval", "write_report"]

FOLDS = (1, 2, 3, 4, 5)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="l2i crossval",
        description="k-fold cross-validation of a fit config: one run per fold, mean ± std of the test metrics.",
        epilog="Arguments after the known ones (or after --) go to LightningCLI, e.g. --trainer.max_epochs 5.",
    )
    p.add_argument("--config", "-c", required=True, help="a fit config whose data module has test_fold/val_fold")
    p.add_argument("--folds", type=int, nargs="+", default=list(FOLDS), help="test folds to run (default 1-5)")
    p.add_argument("--val", choices=("next_fold", "fraction"), default="next_fold",
                   help="validation: the next fold, or the data module's val_fraction of the training folds")
    p.add_argument("--out_dir", default=None, help="default: runs/crossval/<config stem>-<data set>")
    return p


def _fold_overrides(fold: int, val: str, out_dir: Path) -> list[str]:
    val_fold = (fold % len(FOLDS)) + 1 if val == "next_fold" else None
    return [
        "--data.init_args.test_fold", str(fold),
        "--data.init_args.val_fold", "null" if val_fold is None else str(val_fold),
        "--trainer.default_root_dir", str(out_dir / f"fold-{fold}"),
    ]


def _scalar_metrics(results: Sequence[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for d in results:
        for k, v in d.items():
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                continue
    return out


def check_folds(config: str | Path, extra: Sequence[str] = ()) -> None:
    """Refuse, in one line and before anything is built, a config whose data module has no folds.

    The config and the dotted overrides among ``extra`` are read as ``l2i fit`` reads them
    (:func:`experiments.cli.instantiate`, nothing built); crossval sets the data module's ``test_fold`` and
    ``val_fold``, so its constructor must take them."""
    import importlib
    import inspect

    from experiments.cli import instantiate, split_overrides

    rest, overrides = split_overrides(list(extra))
    overrides += [("data", rest[i + 1]) for i, arg in enumerate(rest[:-1]) if arg == "--data"]
    section = instantiate(config, overrides, sections=()).config.get("data") or {}
    class_path = section.get("class_path") if isinstance(section, dict) else None
    if not class_path:
        raise ValueError(f"{config}: no data.class_path; crossval needs a data module with folds (e.g. ESC-50's)")
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"{config}: data.class_path {class_path!r} cannot be imported ({err})") from err
    params = inspect.signature(cls.__init__).parameters
    if "test_fold" not in params or "val_fold" not in params:
        raise ValueError(f"crossval needs a data module with folds (test_fold / val_fold, e.g. datamodules.ESC50DataModule); "
                         f"{config} uses {name}, which has none")


def run_fold(config: str, fold: int, val: str, out_dir: Path, extra: Sequence[str]) -> dict:
    """Fit and test one fold -> ``{"fold", "val_fold", "metrics" {name: float}, "best_checkpoint", "seconds"}``."""
    from experiments.cli import lightning_cli

    start = time.perf_counter()
    args = ["--config", config, *extra, *_fold_overrides(fold, val, out_dir)]
    cli = lightning_cli(args, run=False)
    dm = cli.datamodule
    if not hasattr(dm, "test_fold"):
        raise ValueError(f"{config}: the data module {type(dm).__name__} has no test_fold; crossval needs folds "
                         "(e.g. datamodules.ESC50DataModule)")
    cli.trainer.fit(cli.model, datamodule=dm)
    ckpt_cb = cli.trainer.checkpoint_callback
    best = getattr(ckpt_cb, "best_model_path", "") if ckpt_cb is not None else ""
    results = cli.trainer.test(cli.model, datamodule=dm, ckpt_path=best or None, verbose=False)
    from callbacks.wandb_runs import finish_loggers

    finish_loggers(cli.trainer)  # one W&B run per fold: a run left open is silently reused by the next fold
    return {
        "fold": fold,
        "val_fold": dm.val_fold,
        "metrics": _scalar_metrics(results),
        "best_checkpoint": best or None,
        "seconds": round(time.perf_counter() - start, 2),
    }


def run_crossval(config: str, folds: Sequence[int] = FOLDS, val: str = "next_fold",
                 out_dir: str | Path | None = None, extra: Sequence[str] = ()) -> dict:
    """All folds, then the summary; writes ``crossval.json`` and ``crossval.md`` into ``out_dir``."""
    from datamodules.esc50 import summarize_folds
    from experiments.cli import resolve_config

    bad = [f for f in folds if f not in FOLDS]
    if bad or not folds:
        raise ValueError(f"folds must be among {FOLDS}, got {list(folds)}")
    if len(set(folds)) != len(folds):
        raise ValueError(f"folds repeat: {list(folds)}")
    config_path = resolve_config(config)
    check_folds(config_path, extra)
    out = Path(out_dir) if out_dir else Path("runs") / "crossval" / config_path.parent.name
    out.mkdir(parents=True, exist_ok=True)
    runs = [run_fold(str(config_path), f, val, out, extra) for f in folds]
    test_names = sorted(set.intersection(*(set(r["metrics"]) for r in runs)))
    summary = summarize_folds([{k: r["metrics"][k] for k in test_names} for r in runs], ddof=0) if test_names else {}
    report = {"config": str(config_path), "folds": list(folds), "val": val, "overrides": list(extra),
              "runs": runs, "summary": summary}
    write_report(report, out)
    return report


def write_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """``crossval.json`` (everything) and ``crossval.md`` (a table: one row per metric, per-fold values and
    mean ± std, std over folds with ddof 0)."""
    out = Path(out_dir)
    json_path = out / "crossval.json"
    json_path.write_text(json.dumps(report, indent=2, allow_nan=True))
    folds = [r["fold"] for r in report["runs"]]
    lines = [
        f"# Cross-validation: {Path(report['config']).as_posix()}",
        "",
        f"Test folds {', '.join(map(str, folds))}; validation: {report['val']}."
        + (f" Overrides: `{' '.join(report['overrides'])}`." if report["overrides"] else ""),
        "",
        "| metric | " + " | ".join(f"fold {f}" for f in folds) + " | mean ± std |",
        "|---" * (len(folds) + 2) + "|",
    ]
    for name, s in report["summary"].items():
        values = [r["metrics"][name] for r in report["runs"]]
        cells = " | ".join("nan" if math.isnan(v) else f"{v:.4f}" for v in values)
        lines.append(f"| {name} | {cells} | {s['text']} |")
    md_path = out / "crossval.md"
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        i = argv.index("--")
        known, extra = _parser().parse_args(argv[:i]), argv[i + 1:]
    else:
        known, extra = _parser().parse_known_args(argv)
    report = run_crossval(known.config, known.folds, known.val, known.out_dir, extra)
    out = Path(known.out_dir) if known.out_dir else Path("runs") / "crossval" / Path(report["config"]).parent.name
    for name, s in report["summary"].items():
        print(f"{name}: {s['text']} (n={s['n']})")
    print(f"report: {out / 'crossval.md'} and {out / 'crossval.json'}")
    from callbacks.summary import print_summary  # what the run wrote, where

    print_summary("crossval", {"report": [out / "crossval.md", out / "crossval.json"],
                               "folds": [out / f"fold-{k}" for k in known.folds]},
                  metrics={name: s["text"] for name, s in report["summary"].items()})
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
