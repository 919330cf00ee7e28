"""The ``l2i`` command.

``l2i fit|validate|test|predict --config experiments/<dataset>/<run>.yaml`` is LightningCLI (omegaconf
parser mode: ``${...}`` interpolation works in configs); the project's own verbs (``demo`` …) are
dispatched before it. W&B logs offline by default (no key, no network): ``wandb sync`` uploads later.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Callable

import lightning as L
from lightning.pytorch.cli import LightningCLI

EXPERIMENTS_DIR = Path(__file__).resolve().parent

DEFAULT_LOGGER = {
    # W&B offline unless WANDB_MODE=online (offline: null follows the variable); a W&B failure (no disk
    # space, import error, service error) leaves a CSV log, never a crash
    "class_path": "callbacks.safe_logging.SafeWandbLogger",
    "init_args": {"project": "listen-to-interpret", "save_dir": "runs", "offline": None, "log_model": False},
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
        so a file carrying pickled code is refused with a clear message naming it (not a deep traceback).

        ``--ckpt_path last`` is resolved here to the newest readable ``last*.ckpt`` of the run's checkpoint
        folder (a :class:`~callbacks.checkpoint.RunCheckpoint`'s ``dirpath`` or
        ``<trainer.default_root_dir>/checkpoints``), so a resume reads the same file whatever the logger, and
        the checkpoint's hyper-parameters apply as for an explicit path. Model settings that the checkpoint
        overrides are named in a warning (the checkpoint's hyper-parameters win)."""
        from l2i.checkpoints import safe_load

        sub = self.config.get("subcommand")
        ckpt = self.config[sub].get("ckpt_path") if sub else None
        if ckpt == "last":
            found = self._find_last(self.config[sub])
            if found:
                self.config[sub]["ckpt_path"] = ckpt = found
        if ckpt and ckpt not in ("last", "best", "hpc", "registry") and Path(ckpt).is_file():
            safe_load(ckpt)  # raises UnsafeCheckpointError / CheckpointError naming the file
            before = _flat(self.config[sub].get("model"))
            super()._parse_ckpt_path()
            after = _flat(self.config[sub].get("model"))
            changed = {k: (before[k], after[k]) for k in before if k in after and before[k] != after[k]}
            if changed and sub == "fit":
                lines = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(changed.items()))
                warnings.warn(f"resuming from {ckpt}: the checkpoint's hyper-parameters win over the config and "
                              f"command line ({lines}); start a new run (another trainer.default_root_dir, no "
                              "--ckpt_path) to train a different model", UserWarning, stacklevel=2)
            return
        super()._parse_ckpt_path()

    @staticmethod
    def _find_last(config) -> str | None:
        """The newest readable ``last*.ckpt`` where the config's RunCheckpoint writes, if it has one."""
        from callbacks.checkpoint import find_last_checkpoint

        trainer = config.get("trainer") or {}
        for cb in trainer.get("callbacks") or []:
            class_path = cb.get("class_path", "") if hasattr(cb, "get") else ""
            if class_path.endswith("RunCheckpoint"):
                dirpath = (cb.get("init_args") or {}).get("dirpath")
                root = trainer.get("default_root_dir") or os.getcwd()
                return find_last_checkpoint(dirpath or os.path.join(root, "checkpoints"))
        return None

    def _weights_only_by_default(self) -> None:
        """Resume / evaluate from checkpoints with ``weights_only=True`` unless the config says otherwise
        (Lightning would default to ``False`` for local files)."""
        config = self.config_init[self.subcommand]
        if config.get("weights_only") is None:
            config["weights_only"] = True

    before_fit = before_validate = before_test = before_predict = _weights_only_by_default


def _flat(node, prefix: str = "") -> dict:
    """A (nested) config node as ``{"a.b": value}``; ``class_path`` / ``init_args`` levels kept in the keys."""
    if node is None:
        return {}
    if hasattr(node, "as_dict"):
        node = node.as_dict()
    if isinstance(node, dict):
        out: dict = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): node}


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
    return L2ICLI(
        model_class=L.LightningModule,
        datamodule_class=L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf"},
        trainer_defaults={"logger": DEFAULT_LOGGER},
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
        lightning_cli(None)
    else:
        lightning_cli(argv)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
