"""How the W&B runs of one pipeline find each other in the dashboard, and keep their media in their own folder.

**One pipeline, one group.** ``l2i demo``, ``l2i benchmark`` (and a user's chain of ``l2i fit`` / ``l2i nmf``
runs) make one W&B run per stage. Every run started inside :func:`pipeline_stage` gets

* ``group``: the pipeline's group — ``WANDB_RUN_GROUP`` when set (W&B's own variable, which plain ``l2i fit``
  / ``l2i nmf`` runs also obey, so ``WANDB_RUN_GROUP=exp1 l2i fit …; WANDB_RUN_GROUP=exp1 l2i nmf …`` groups a
  hand-made chain), else the command's ``--group``, else ``<out_dir name>-<UTC start time>``
  (:func:`pipeline_group`);
* ``job_type``: the stage (``classifier``, ``posthoc``, ``bydesign``, ``lmac``, ``benchmark``, …);
* ``config["l2i"]``: ``{"group", "stage", "artifacts": {key: path}}`` — the artifacts of earlier stages the
  stage was given.

:class:`~callbacks.safe_logging.SafeWandbLogger` reads these when it is built (:func:`current_stage`); a
standalone ``l2i fit`` names its ``job_type`` after the LightningModule (:func:`job_type_of`). Work done outside
a Lightning trainer (``l2i nmf``, the demo's ``dictionary`` and ``evaluation`` stages) opens its run with
:func:`stage_run`, which takes the same identity.

**Self-contained offline runs.** W&B stores a table's media (its WAVs and images) in the table's artifact,
staged under ``$WANDB_DATA_DIR/artifacts/staging`` — by default in the user's home (``~/.local/share/wandb``),
outside the run folder, never cleaned. :func:`staging_in` points ``WANDB_DATA_DIR`` at ``<run folder>/staging``
while media are logged, so ``cp -r`` of the run folder carries them (W&B's record names them by absolute
path: ``wandb sync`` the copy at the same path, e.g. after restoring an archive); :func:`local_cache` points
W&B's cache (service logs) under the logger's ``save_dir`` unless ``WANDB_CACHE_DIR`` is set. Nothing is
written under ``~/.local/share/wandb`` or ``~/.cache/wandb``.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

__all__ = ["PipelineStage", "pipeline_group", "pipeline_stage", "nested_stage", "current_stage", "staging_in", "run_folder",
           "local_cache", "job_type_of", "used_artifacts", "stage_run"]

#: folder of a run's staged W&B media, inside the run folder (``…/wandb/offline-run-…/staging``)
STAGING = "staging"


@dataclass(frozen=True)
class PipelineStage:
    """The W&B identity of the stage now running: its pipeline's ``group``, its ``job_type`` and the artifacts
    (key -> path) it was given."""

    group: str
    job_type: str
    artifacts: dict[str, str] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        return {"l2i": {"group": self.group, "stage": self.job_type, "artifacts": dict(self.artifacts)}}


_STACK: list[PipelineStage] = []


def pipeline_group(out_dir: str | os.PathLike, given: str | None = None) -> str:
    """The group of a pipeline writing to ``out_dir``: ``WANDB_RUN_GROUP``, else ``given``, else
    ``<out_dir name>-<UTC time now>`` (each invocation of a pipeline its own group)."""
    env = os.environ.get("WANDB_RUN_GROUP")
    if env:
        return env
    if given:
        return str(given)
    return f"{Path(out_dir).resolve().name or 'pipeline'}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


@contextlib.contextmanager
def pipeline_stage(job_type: str, group: str | None = None, artifacts: dict[str, str] | None = None) -> Iterator[PipelineStage]:
    """W&B runs started inside get ``group``, ``job_type`` and the artifacts (see the module docstring).
    Nested stages (a stage that trains another one) inherit the group of the enclosing stage."""
    if group is None:
        if not _STACK:
            raise ValueError("pipeline_stage: no group given and no enclosing pipeline stage to take it from")
        group = _STACK[-1].group
    stage = PipelineStage(str(group), str(job_type), {k: str(v) for k, v in (artifacts or {}).items()})
    _STACK.append(stage)
    try:
        yield stage
    finally:
        _STACK.remove(stage)


def nested_stage(job_type: str, artifacts: dict[str, str] | None = None):
    """:func:`pipeline_stage` inside the running one (same group), or nothing when no pipeline runs."""
    return pipeline_stage(job_type, None, artifacts) if _STACK else contextlib.nullcontext()


def current_stage() -> PipelineStage | None:
    """The innermost :func:`pipeline_stage` now running, or ``None``."""
    return _STACK[-1] if _STACK else None


def run_folder(run: Any) -> Path | None:
    """A W&B run's own folder (``…/wandb/offline-run-<time>-<id>``; ``run.dir`` is its ``files/``)."""
    d = getattr(run, "dir", None)
    return Path(d).parent if isinstance(d, (str, os.PathLike)) and str(d) else None  # a dummy run has none


@contextlib.contextmanager
def staging_in(run: Any) -> Iterator[Path | None]:
    """While inside, W&B stages artifact files (a table's media) under ``<run folder>/staging``; the previous
    ``WANDB_DATA_DIR`` is restored after. A run without a folder (a dummy run) changes nothing."""
    folder = run_folder(run)
    if folder is None:
        yield None
        return
    staging = folder / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("WANDB_DATA_DIR")
    os.environ["WANDB_DATA_DIR"] = str(staging)
    try:
        yield staging
    finally:
        if old is None:
            os.environ.pop("WANDB_DATA_DIR", None)
        else:
            os.environ["WANDB_DATA_DIR"] = old


def local_cache(save_dir: str | os.PathLike | None) -> None:
    """Point W&B's cache (its service's debug logs) at ``<save_dir>/wandb/cache`` unless ``WANDB_CACHE_DIR`` is
    set. W&B reads it when its service starts (the first run of the process), so later calls change nothing."""
    if save_dir is not None and not os.environ.get("WANDB_CACHE_DIR"):
        os.environ["WANDB_CACHE_DIR"] = str((Path(save_dir) / "wandb" / "cache").resolve())


#: LightningModule class name -> job type of a standalone ``l2i fit``
_JOB_TYPES = {"ClassifierModule": "classifier", "PostHocInterpreterModule": "posthoc", "ByDesignModule": "bydesign",
              "LMACModule": "lmac"}


def job_type_of(model: Any) -> str:
    """The job type of a run training ``model``: the pipeline stage's name for the project's modules
    (``classifier``, ``posthoc``, ``bydesign``, ``lmac``), else the class name in lower case."""
    name = type(model).__name__
    return _JOB_TYPES.get(name, name.lower())


def used_artifacts(hparams: Any) -> dict[str, str]:
    """The files a model was built from, by hyper-parameter name: every string hyper-parameter naming an
    existing file (a classifier checkpoint, a dictionary, …)."""
    found = {}
    for key, value in dict(hparams or {}).items():
        if isinstance(value, (str, os.PathLike)) and str(value) and len(str(value)) < 4096:
            try:
                if Path(value).is_file():
                    found[str(key)] = str(value)
            except OSError:
                continue
    return found


@contextlib.contextmanager
def stage_run(save_dir: str | os.PathLike, name: str, job_type: str, config: dict[str, Any] | None = None,
              project: str = "listen-to-interpret") -> Iterator[Any]:
    """A W&B run for work done outside a Lightning trainer, finished on leaving; yields the run, or ``None`` when
    W&B cannot start one (a warning; the work goes on without it).

    Offline unless ``WANDB_MODE`` says otherwise; the run folder is ``<save_dir>/wandb/offline-run-…`` (W&B's cache
    beside it, :func:`local_cache`). Inside a :func:`pipeline_stage` the run takes the stage's ``group``,
    ``job_type`` and ``config["l2i"]`` (the artifacts it was given); outside, ``job_type`` (and W&B's own
    ``WANDB_RUN_GROUP``)."""
    import warnings

    stage = current_stage()
    run = None
    try:
        import wandb

        folder = Path(save_dir).resolve()  # absolute: W&B's service resolves paths against its own folder
        folder.mkdir(parents=True, exist_ok=True)
        local_cache(folder)
        kwargs: dict[str, Any] = {"project": project, "name": name, "dir": str(folder), "job_type": job_type,
                                  "config": dict(config or {}), "mode": os.environ.get("WANDB_MODE") or "offline",
                                  "reinit": "finish_previous"}
        if stage is not None:
            kwargs.update(group=stage.group, job_type=stage.job_type, config={**stage.config(), **kwargs["config"]})
        run = wandb.init(**kwargs)
    except Exception as exc:  # noqa: BLE001 - W&B is a convenience, never a reason to fail the job
        warnings.warn(f"W&B run not started ({type(exc).__name__}: {exc}); continuing without it", RuntimeWarning,
                      stacklevel=3)
        run = None
    try:
        yield run
    finally:
        if run is not None:
            try:
                run.finish()
            except Exception:  # noqa: BLE001
                pass


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
