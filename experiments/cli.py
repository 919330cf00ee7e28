"""The ``l2i`` command.

``l2i fit|validate|test|predict --config experiments/<dataset>/<run>.yaml`` is LightningCLI (omegaconf
parser mode: ``${...}`` interpolation works in configs); the project's own verbs (``demo`` …) are
dispatched before it. W&B logs offline by default (no key, no network): ``wandb sync`` uploads later.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import lightning as L
from lightning.pytorch.cli import LightningCLI

EXPERIMENTS_DIR = Path(__file__).resolve().parent

DEFAULT_LOGGER = {
    # W&B offline; a W&B failure (no disk space, import error, service error) leaves a CSV log, never a crash
    "class_path": "callbacks.safe_logging.SafeWandbLogger",
    "init_args": {"project": "listen-to-interpret", "save_dir": "runs", "offline": True, "log_model": False},
}


def resolve_config(path: str | os.PathLike) -> Path:
    """A config path as given, or relative to the repository / installed ``experiments`` folder."""
    p = Path(path)
    for candidate in (p, EXPERIMENTS_DIR.parent / p, EXPERIMENTS_DIR / p):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"config file not found: {path} (looked in ., {EXPERIMENTS_DIR.parent}, {EXPERIMENTS_DIR})")


class L2ICLI(LightningCLI):
    """LightningCLI with the DataModule's label space linked into the model."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.task", "model.init_args.task", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.init_args.class_names", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        """LightningCLI reads a given checkpoint's hyper-parameters first: check the file safely before that,
        so a file carrying pickled code is refused with a clear message naming it (not a deep traceback)."""
        from l2i.checkpoints import safe_load

        sub = self.config.get("subcommand")
        ckpt = self.config[sub].get("ckpt_path") if sub else None
        if ckpt and ckpt not in ("last", "best", "hpc", "registry") and Path(ckpt).is_file():
            safe_load(ckpt)  # raises UnsafeCheckpointError / CheckpointError naming the file
        super()._parse_ckpt_path()

    def _weights_only_by_default(self) -> None:
        """Resume / evaluate from checkpoints with ``weights_only=True`` unless the config says otherwise
        (Lightning would default to ``False`` for local files)."""
        config = self.config_init[self.subcommand]
        if config.get("weights_only") is None:
            config["weights_only"] = True

    def _name_wandb_run(self) -> None:
        """The W&B run's ``job_type`` (the stage its model belongs to, unless a pipeline stage or the config set
        one) and the artifacts the model was built from, in its config (:mod:`callbacks.wandb_runs`)."""
        from callbacks.safe_logging import SafeWandbLogger
        from callbacks.wandb_runs import job_type_of, used_artifacts

        for logger in getattr(self.trainer, "loggers", None) or []:
            if isinstance(logger, SafeWandbLogger):
                logger.name_run(job_type_of(self.model), used_artifacts(getattr(self.model, "hparams", {})))

    def _before_run(self) -> None:
        self._weights_only_by_default()
        self._name_wandb_run()

    before_fit = before_validate = before_test = before_predict = _before_run


def _expand_config_paths(args: list[str]) -> list[str]:
    """Let ``--config experiments/x.yaml`` work from any working directory."""
    out = list(args)
    for i, a in enumerate(out[:-1]):
        if a in ("--config", "-c"):
            try:
                out[i + 1] = str(resolve_config(out[i + 1]))
            except FileNotFoundError:
                pass  # LightningCLI reports it with its own message
    return out


def lightning_cli(args: list[str] | None = None, run: bool = True, **kwargs) -> L2ICLI:
    """Build the project's LightningCLI (subclass mode: configs name their model and data classes)."""
    from callbacks.summary import RunSummary, quiet_known_warnings

    quiet_known_warnings()
    return L2ICLI(
        model_class=L.LightningModule,
        datamodule_class=L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf"},
        trainer_defaults={"logger": DEFAULT_LOGGER, "callbacks": [RunSummary()]},  # RunSummary: what the run did
        # a resumed run (--ckpt_path last) writes its config where the killed run wrote the same one
        save_config_kwargs={"overwrite": True},
        args=None if args is None else _expand_config_paths(args),
        run=run,
        **kwargs,
    )


#: the project's own verbs, ``name -> "module:function"`` (imported only when used, so ``l2i fit`` stays
#: fast); each function takes the remaining argv and returns an exit code.
COMMANDS: dict[str, str] = {
    "demo": "experiments.pipeline:demo_main",
    "nmf": "experiments.nmf:main",
    "interpret": "experiments.interpret:main",
    "crossval": "experiments.crossval:main",
    "evaluate": "experiments.evaluate:main",
    "benchmark": "experiments.benchmark:main",
}


def _commands() -> dict[str, Callable[[list[str]], int | None]]:
    import importlib

    def lazy(target: str) -> Callable[[list[str]], int | None]:
        def run(argv: list[str]) -> int | None:
            module, func = target.split(":")
            return getattr(importlib.import_module(module), func)(argv)

        return run

    return {name: lazy(target) for name, target in COMMANDS.items()}


def main(argv: list[str] | None = None) -> int | None:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = _commands()
    if argv and argv[0] in commands:
        return commands[argv[0]](argv[1:])
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: l2i {fit,validate,test,predict," + ",".join(commands) + "} [--config FILE] ...")
        print("  fit/validate/test/predict: LightningCLI (l2i fit --help)")
        print("  demo: train, interpret and report on the embedded synthetic data set (l2i demo --help)")
        print("  nmf: learn an NMF dictionary for a data set (l2i nmf --help)")
        print("  interpret: listenable interpretations of audio files (l2i interpret --help)")
        print("  evaluate: the evaluation suite for a trained interpreter (l2i evaluate --help)")
        print("  benchmark: interpreters side by side on one data set, one table (l2i benchmark --help)")
        print("  crossval: k-fold cross-validation of a fit config, mean ± std (l2i crossval --help)")
        if not argv:
            return 2
        return 0
    if from_command_line:  # LightningCLI reads sys.argv itself; give it the resolved config paths
        sys.argv[1:] = _expand_config_paths(argv)
        cli = lightning_cli(None)
    else:
        cli = lightning_cli(argv)
    from experiments.pipeline import finish_loggers

    finish_loggers(cli.trainer)  # the W&B run ends with the verb: a next in-process call starts its own
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
