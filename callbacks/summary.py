"""Runs that say what they did: a short summary printed to the terminal at the end of every verb.

* :class:`RunSummary` - a Lightning callback (added to every ``l2i fit|validate|test|predict`` through the
  CLI's trainer defaults) that prints, once the stage is over: the best checkpoint with the monitored value
  and the epoch it was reached at, the last checkpoint, the metrics of a validation / test run, the W&B run
  folder with its ``wandb sync`` line (or its URL when online), the CSV log and the interpretation gallery's
  ``index.html``;
* :func:`print_summary` - the same block for the project's own verbs (``l2i nmf``, ``interpret``,
  ``evaluate``, ``demo``, ``benchmark``, ``crossval``), each calling it with what it wrote;
  (deprecations inside Lightning's CLI and pytree helpers, the frozen classifier's eval-mode notice).

The block looks like::

    [l2i fit] summary
      best checkpoint : runs/custom_classifier/checkpoints/best.ckpt (val/loss = 0.4123 at epoch 3, step 120)
      last checkpoint : runs/custom_classifier/checkpoints/last.ckpt (epoch 4, step 150)
      W&B run         : runs/wandb/offline-run-20261128_173810-4pzeo9wi
      upload with     : wandb sync runs/wandb/offline-run-20261128_173810-4pzeo9wi
      CSV log         : runs/csv/listen-to-interpret/version_0/metrics.csv
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import lightning as L
import torch

__all__ = ["RunSummary", "print_summary", "format_summary", "wandb_lines", "latest_wandb_run"]


# ----------------------------------------------------------------------------------------------------------
# formatting
# ----------------------------------------------------------------------------------------------------------
def show_path(path: str | os.PathLike) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    p = Path(path).absolute()
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple)):  # several files: those that exist
        return ", ".join(show_path(p) for p in v if p is not None and Path(p).exists())
    if isinstance(v, torch.Tensor):
        v = v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, (Path, os.PathLike)):
        return show_path(v)
    return str(v)


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """``name = value, …`` sorted by name."""
    return ", ".join(f"{k} = {_value(v)}" for k, v in sorted(metrics.items()))


def format_summary(verb: str, items: Iterable[tuple[str, Any]]) -> str:
    """The summary block: a title line and one ``label : value`` line per item (``None`` values left out)."""
    rows = [(str(k), _value(v)) for k, v in items if v is not None]
    rows = [(k, v) for k, v in rows if v != ""]
    width = max((len(k) for k, _ in rows), default=0)
    lines = [f"[l2i {verb}] summary"] + [f"  {k.ljust(width)} : {v}" for k, v in rows]
    return "\n".join(lines)


def print_summary(verb: str, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), *,
                  metrics: Mapping[str, Any] | None = None, wandb_run_dir: str | os.PathLike | None = None,
                  gallery: str | os.PathLike | None = None, stream=None) -> str:
    """Print (and return) the end-of-run summary of ``l2i <verb>``.

    ``items``: ``{label: path or value}`` in order (paths are shown relative to the working directory; a
    list of paths shows those that exist);
    ``metrics``: shown on one line; ``wandb_run_dir``: a W&B run folder (adds its ``wandb sync`` line);
    ``gallery``: the interpretation gallery's ``index.html``. ``None`` entries are left out."""
    rows = list(items.items() if isinstance(items, Mapping) else items)
    if metrics:
        rows.append(("metrics", format_metrics(metrics)))
    if wandb_run_dir is not None:
        rows += wandb_lines(wandb_run_dir)
    if gallery is not None:
        rows.append(("gallery", gallery))
    text = format_summary(verb, rows)
    print(text, file=stream or sys.stdout, flush=True)
    return text


def wandb_lines(run_dir: str | os.PathLike, url: str | None = None) -> list[tuple[str, str]]:
    """``W&B run`` and ``upload with: wandb sync <run_dir>`` (offline) or ``W&B page: <url>`` (online)."""
    rows = [("W&B run", show_path(run_dir))]
    if url:
        rows.append(("W&B page", url))
    else:
        rows.append(("upload with", f"wandb sync {show_path(run_dir)}"))
    return rows


def latest_wandb_run(directory: str | os.PathLike) -> Path | None:
    """The newest W&B run folder below ``directory`` (``<directory>/wandb/latest-run``, which W&B points at
    the run it started last, or the newest ``*run-*`` folder), or ``None``."""
    base = Path(directory) / "wandb"
    link = base / "latest-run"
    if link.exists():
        return link.resolve()
    runs = [p for p in base.glob("*run-*") if p.is_dir()] if base.is_dir() else []
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


# ----------------------------------------------------------------------------------------------------------
# the Lightning callback
# ----------------------------------------------------------------------------------------------------------
def _checkpoint_position(path: str) -> tuple[int | None, int | None]:
    """``(epoch, global_step)`` stored in a checkpoint (memory-mapped read, nothing copied), or Nones."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return ckpt.get("epoch"), ckpt.get("global_step")
    except Exception:  # noqa: BLE001 - a summary never fails a run
        return None, None


def checkpoint_lines(trainer: L.Trainer) -> list[tuple[str, str]]:
    """Best and last checkpoint of each ``ModelCheckpoint`` of ``trainer``, with monitor value and epoch."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    rows: list[tuple[str, str]] = []
    for cb in trainer.callbacks:
        if not isinstance(cb, ModelCheckpoint):
            continue
        best, last = cb.best_model_path, cb.last_model_path
        if best and cb.monitor and Path(best).is_file():
            epoch, step = _checkpoint_position(best)
            score = cb.best_model_score
            where = f"at epoch {epoch}, step {step}" if epoch is not None else "epoch unknown"
            rows.append(("best checkpoint", f"{show_path(best)} ({cb.monitor} = {_value(score)} {where})"))
        elif cb.monitor:
            rows.append(("best checkpoint", f"none ({cb.monitor} was never logged)"))
        if last and Path(last).is_file() and last != best:
            epoch, step = _checkpoint_position(last)
            rows.append(("last checkpoint", show_path(last) + (f" (epoch {epoch}, step {step})" if epoch is not None else "")))
    return rows


def logger_lines(trainer: L.Trainer) -> list[tuple[str, str]]:
    """W&B run folder + how to upload it (or why W&B is off), and the CSV log."""
    from lightning.pytorch.loggers import WandbLogger

    from callbacks.safe_logging import SafeWandbLogger, csv_logger_of

    rows: list[tuple[str, str]] = []
    for logger in trainer.loggers:
        if isinstance(logger, SafeWandbLogger) and not logger.usable:
            rows.append(("W&B", f"off ({logger.failed})"))
            continue
        if not isinstance(logger, WandbLogger) or getattr(logger, "_experiment", None) is None:
            continue
        run = logger._experiment
        folder = getattr(run, "dir", None)
        if not folder:
            continue
        settings = getattr(run, "settings", None)
        offline = getattr(settings, "mode", "offline") in ("offline", "dryrun") or getattr(settings, "_offline", True)
        url = None if offline else getattr(run, "url", None)
        rows += wandb_lines(Path(folder).parent, url)
    csv = csv_logger_of(trainer)
    if csv is not None and csv.log_dir and (Path(csv.log_dir) / "metrics.csv").is_file():
        rows.append(("CSV log", show_path(Path(csv.log_dir) / "metrics.csv")))
    return rows


def gallery_lines(trainer: L.Trainer) -> list[tuple[str, str]]:
    """The interpretation gallery's ``index.html`` (all epochs) of each logger callback that wrote one."""
    rows = []
    for cb in trainer.callbacks:
        pages = getattr(cb, "galleries", None)
        if pages:
            index = Path(pages[-1]).parent.parent / "index.html"
            rows.append(("gallery", show_path(index if index.is_file() else pages[-1])))
    return rows


class RunSummary(L.Callback):
    """Print what a ``fit`` / ``validate`` / ``test`` / ``predict`` run did once it is over (rank zero);
    a run stopped by an exception or Ctrl-C prints where it stopped and the checkpoints it left.

    fit: checkpoints (best with the monitored value and its epoch, last); validate / test: the stage's
    metrics; all: W&B run folder and ``wandb sync`` line, CSV log, interpretation gallery. The printed text
    is kept in :attr:`texts` (one entry per finished stage)."""

    STAGE_VERB = {"fit": "fit", "validate": "validate", "test": "test", "predict": "predict"}
    STAGE_PREFIX = {"validate": "val", "test": "test"}

    def __init__(self) -> None:
        self.texts: list[str] = []

    def summary_rows(self, trainer: L.Trainer, stage: str) -> list[tuple[str, str]]:
        rows: list[tuple[str, str]] = []
        if stage == "fit":
            rows += checkpoint_lines(trainer)
            if trainer.interrupted:
                rows.insert(0, ("stopped", f"interrupted at epoch {trainer.current_epoch}, step {trainer.global_step}"))
        prefix = self.STAGE_PREFIX.get(stage)
        if prefix:
            metrics = {k: v for k, v in trainer.callback_metrics.items()
                       if k.startswith(prefix + "/") or k.startswith(prefix + "_")}
            scalars = {k: v for k, v in metrics.items() if not isinstance(v, torch.Tensor) or v.numel() == 1}
            ckpt = getattr(trainer, "ckpt_path", None)
            if ckpt:
                rows.append(("checkpoint", show_path(ckpt)))
            rows.append((f"{'validation' if prefix == 'val' else 'test'} metrics",
                         format_metrics(scalars) if scalars else "none logged"))
        rows += logger_lines(trainer)
        rows += gallery_lines(trainer)
        return rows

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not trainer.is_global_zero or stage not in self.STAGE_VERB:
            return
        try:
            rows = self.summary_rows(trainer, stage)
        except Exception as err:  # noqa: BLE001 - a summary never fails a run
            rows = [("summary failed", f"{type(err).__name__}: {err}")]
        self._print(self.STAGE_VERB[stage], rows)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """A run that stops on an error (or Ctrl-C) still says where it stood and what it left on disk."""
        if not trainer.is_global_zero:
            return
        stage = getattr(trainer.state.fn, "value", None) or "fit"
        rows = [("stopped", f"{type(exception).__name__} at epoch {trainer.current_epoch}, step {trainer.global_step}")]
        try:
            rows += checkpoint_lines(trainer) + logger_lines(trainer)
        except Exception as err:  # noqa: BLE001
            rows.append(("summary failed", f"{type(err).__name__}: {err}"))
        self._print(self.STAGE_VERB.get(stage, stage), rows)

    def _print(self, verb: str, rows: list[tuple[str, str]]) -> None:
        text = format_summary(verb, rows)
        self.texts.append(text)
        print(text, flush=True)
