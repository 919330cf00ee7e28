"""W&B that can fail without taking the run down — the project's failure tolerance for logging lives here.

:class:`SafeWandbLogger` is a drop-in ``WandbLogger`` (offline by default) that

* **always** mirrors every metric and hyper-parameter to a CSV log (Lightning's ``CSVLogger``, in
  ``<save_dir>/csv/<name>/version_<n>/metrics.csv``), whatever happens to W&B;
* turns every W&B failure — ``wandb`` not importable, ``wandb.init`` failing (no disk space for its folder,
  service error, timeout), a failing ``log`` / ``log_table`` / ``config.update`` / checkpoint upload — into one
  warning, after which it keeps running as a CSV-only logger (``failed`` holds the reason); no crash, no lost
  epoch: the CSV row of the failing call is written before W&B is tried.

Runs started inside a pipeline stage take its W&B ``group``, ``job_type`` and artifacts, and every table /
image / audio it logs is staged inside the run's own folder (:mod:`callbacks.wandb_runs`).

Use it in configs as ``trainer.logger: {class_path: callbacks.safe_logging.SafeWandbLogger, init_args: {...}}``
(same arguments as ``WandbLogger``), or build loggers with :func:`safe_loggers`. Callbacks that log media to
W&B (:class:`~callbacks.interpretation_logger.InterpretationLogger`) use :func:`wandb_run` to get a usable run
or ``None``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.loggers.logger import DummyExperiment

from callbacks.wandb_runs import current_stage, local_cache, staging_in

__all__ = ["SafeWandbLogger", "safe_loggers", "wandb_run", "csv_logger_of"]


class SafeWandbLogger(WandbLogger):
    """``WandbLogger`` + a CSV mirror; W&B failures disable W&B only (see the module docstring).

    Args:
        csv: keep the CSV mirror (default True).
        offline: ``None`` (default): offline unless the environment says ``WANDB_MODE=online``;
            ``True`` / ``False``: as given (Lightning's ``offline=True`` overrides ``WANDB_MODE``).
        **kwargs: ``WandbLogger`` arguments (``project``, ``name``, ``save_dir``, …).
    """

    def __init__(self, *args: Any, csv: bool = True, offline: bool | None = None, **kwargs: Any):
        self.failed: str | None = None
        for key in ("save_dir", "dir"):
            # absolute: W&B's service process may run in another working folder and would resolve a relative
            # folder against its own (a test suite's runs then land in the repository)
            if kwargs.get(key):
                kwargs[key] = os.path.abspath(kwargs[key])
        kwargs = _with_pipeline_identity(kwargs)
        local_cache(kwargs.get("save_dir") or kwargs.get("dir") or os.environ.get("WANDB_DIR"))
        if offline is None:
            offline = os.environ.get("WANDB_MODE", "offline").strip().lower() not in ("online", "run")
        try:
            super().__init__(*args, offline=offline, **kwargs)
        except Exception as err:  # wandb missing or refusing its arguments: CSV only
            Logger.__init__(self)
            self._experiment = None
            self._save_dir = kwargs.get("save_dir") or kwargs.get("dir") or "."
            self._name = kwargs.get("name")
            self._project = kwargs.get("project", "lightning_logs")
            self._id = kwargs.get("version") or kwargs.get("id")
            self._offline = offline
            self._log_model = False
            self._checkpoint_callback = None
            self._logged_model_time = {}
            self._prefix = kwargs.get("prefix", "")
            self._checkpoint_name = None
            self._wandb_init = {}
            self._fail("construct the W&B logger", err)
        if getattr(self, "_wandb_init", {}).get("anonymous", "") is None:
            # Lightning passes anonymous=None, which W&B (0.19+) answers with a deprecation notice on every run
            self._wandb_init.pop("anonymous")
        save_dir = self._save_dir or os.environ.get("WANDB_DIR") or "."
        self._csv = CSVLogger(save_dir=str(Path(save_dir) / "csv"), name=str(kwargs.get("name") or self._project or "run")) if csv else None

    # -- failure handling ------------------------------------------------------------------------------
    def _fail(self, what: str, err: BaseException) -> None:
        if self.failed is None:
            self.failed = f"{what}: {type(err).__name__}: {err}"
            warnings.warn(
                f"W&B failed to {what} ({type(err).__name__}: {err}); training goes on, metrics go to the CSV log only",
                RuntimeWarning,
                stacklevel=3,
            )

    @property
    def usable(self) -> bool:
        """Whether W&B still works (no failure so far)."""
        return self.failed is None

    @property
    def csv(self) -> CSVLogger | None:
        return self._csv

    @property
    def experiment(self):  # type: ignore[override]
        if self.failed is not None:
            return DummyExperiment()
        try:
            return WandbLogger.experiment.fget(self)
        except Exception as err:
            self._experiment = None
            self._fail("start the run (wandb.init)", err)
            return DummyExperiment()

    def _guard(self, what: str, fn, *args, **kwargs):
        if self.failed is not None:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            self._fail(what, err)
            return None

    # -- Logger API ------------------------------------------------------------------------------------
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self._csv is not None:
            self._csv.log_metrics(metrics, step)
        self._guard("log metrics", super().log_metrics, metrics, step)

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        if self._csv is not None:
            try:
                self._csv.log_hyperparams(params)
            except Exception as err:  # hparams that YAML cannot hold must not stop training either
                warnings.warn(f"CSV log could not store the hyper-parameters ({err})", RuntimeWarning, stacklevel=2)
        self._guard("log hyper-parameters", super().log_hyperparams, params, *args, **kwargs)

    def _staged(self, fn):
        """``fn`` with W&B's artifact staging inside this run's folder (tables' media stay with the run)."""
        def call(*args: Any, **kwargs: Any):
            with staging_in(self.experiment):
                return fn(*args, **kwargs)
        return call

    def log_table(self, *args: Any, **kwargs: Any) -> None:
        self._guard("log a table", self._staged(super().log_table), *args, **kwargs)

    def log_text(self, *args: Any, **kwargs: Any) -> None:
        self._guard("log text", self._staged(super().log_text), *args, **kwargs)

    def log_image(self, *args: Any, **kwargs: Any) -> None:
        self._guard("log an image", self._staged(super().log_image), *args, **kwargs)

    def log_audio(self, *args: Any, **kwargs: Any) -> None:
        self._guard("log audio", self._staged(super().log_audio), *args, **kwargs)

    def name_run(self, job_type: str | None = None, artifacts: dict[str, str] | None = None) -> None:
        """Give the run a ``job_type`` (if it has none yet and has not started) and name the artifacts it used
        in its config (``config["l2i"]["artifacts"]``); see :mod:`callbacks.wandb_runs`."""
        if self.failed is not None or not hasattr(self, "_wandb_init"):
            return
        if self._experiment is None:  # not started: wandb.init will take them
            if job_type and not self._wandb_init.get("job_type"):
                self._wandb_init["job_type"] = job_type
            if artifacts is not None:
                config = dict(self._wandb_init.get("config") or {})
                l2i = dict(config.get("l2i") or {})
                l2i["artifacts"] = {**dict(artifacts), **dict(l2i.get("artifacts") or {})}
                config["l2i"] = l2i
                self._wandb_init["config"] = config
        elif artifacts is not None:
            def update() -> None:
                l2i = dict(self.experiment.config.get("l2i") or {})
                l2i["artifacts"] = {**dict(artifacts), **dict(l2i.get("artifacts") or {})}
                self.experiment.config.update({"l2i": l2i}, allow_val_change=True)
            self._guard("record the artifacts used", update)

    def watch(self, *args: Any, **kwargs: Any) -> None:
        self._guard("watch the model", super().watch, *args, **kwargs)

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        self._guard("record a checkpoint", super().after_save_checkpoint, checkpoint_callback)

    def save(self) -> None:
        if self._csv is not None:
            self._csv.save()
        self._guard("save", super().save)

    def finalize(self, status: str) -> None:
        if self._csv is not None:
            self._csv.finalize(status)
        self._guard("finish the run", super().finalize, status)


def _with_pipeline_identity(kwargs: dict) -> dict:
    """``kwargs`` with the running pipeline stage's group, job_type and config (:func:`current_stage`) where
    the caller gave none."""
    stage = current_stage()
    if stage is None:
        group = os.environ.get("WANDB_RUN_GROUP")
        # passed explicitly: W&B reads its variables once per process (at its first setup), so a variable set
        # later in the same process (a notebook, a test) would be ignored
        return {**kwargs, "group": group} if group and not kwargs.get("group") else kwargs
    out = dict(kwargs)
    if not out.get("group"):
        out["group"] = stage.group
    if not out.get("job_type"):
        out["job_type"] = stage.job_type
    out["config"] = {**stage.config(), **dict(out.get("config") or {})}
    return out


def safe_loggers(save_dir: str | os.PathLike = "runs", name: str | None = None, project: str = "listen-to-interpret", **wandb_kwargs: Any) -> list[Logger]:
    """``[SafeWandbLogger(...)]`` (which mirrors to CSV); ``[CSVLogger]`` if even constructing it fails."""
    try:
        return [SafeWandbLogger(save_dir=str(save_dir), name=name, project=project, **wandb_kwargs)]
    except Exception as err:  # pragma: no cover - SafeWandbLogger already degrades; belt and braces
        warnings.warn(f"W&B logger unavailable ({err}); logging to CSV only", RuntimeWarning, stacklevel=2)
        return [CSVLogger(save_dir=str(save_dir), name=name or project)]


def wandb_run(trainer) -> Any | None:
    """The trainer's usable W&B run (a ``wandb`` Run), or ``None`` (no W&B logger, W&B failed, not rank zero)."""
    for logger in getattr(trainer, "loggers", []) or []:
        if not isinstance(logger, WandbLogger):
            continue
        if isinstance(logger, SafeWandbLogger) and not logger.usable:
            continue
        try:
            run = logger.experiment
        except Exception as err:
            if isinstance(logger, SafeWandbLogger):
                logger._fail("start the run (wandb.init)", err)
            else:
                warnings.warn(f"W&B run unavailable ({err})", RuntimeWarning, stacklevel=2)
            continue
        if run is None or isinstance(run, DummyExperiment):
            continue
        return run
    return None


def csv_logger_of(trainer) -> CSVLogger | None:
    """The CSV log of the trainer (a ``CSVLogger`` or a :class:`SafeWandbLogger`'s mirror), if any."""
    for logger in getattr(trainer, "loggers", []) or []:
        if isinstance(logger, CSVLogger):
            return logger
        if isinstance(logger, SafeWandbLogger) and logger.csv is not None:
            return logger.csv
    return None
