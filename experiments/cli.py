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


def split_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Separate dotted overrides (``--data.init_args.root /data``, ``--model.init_args.threshold=0.3``) from the
    other arguments of a verb: ``(other arguments, [(dotted key, value text)])``, in order. The project's own
    verbs (``evaluate``, ``interpret``, ``benchmark`` …) use it with :func:`apply_overrides` to take the
    overrides ``l2i fit`` takes."""
    rest: list[str] = []
    overrides: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        key = a[2:].split("=", 1)[0] if a.startswith("--") else ""
        if "." in key and not key.startswith("."):
            if "=" in a:
                overrides.append((key, a.split("=", 1)[1]))
                i += 1
                continue
            if i + 1 >= len(argv):
                raise ValueError(f"{a}: the override needs a value (--{key} VALUE)")
            overrides.append((key, argv[i + 1]))
            i += 2
            continue
        rest.append(a)
        i += 1
    return rest, overrides


def apply_overrides(config: dict, overrides: list[tuple[str, str]] | dict) -> dict:
    """A copy of ``config`` with each dotted key set to its value (read as YAML: ``0.3`` a float, ``[1, 2]`` a
    list, ``null`` None, anything else the string), creating missing sections: the ``--a.b.c VALUE``
    overrides of ``l2i fit`` for a config loaded as a dict. ``overrides``: pairs or a dict."""
    import copy

    import yaml

    out = copy.deepcopy(config or {})
    for key, text in (overrides.items() if isinstance(overrides, dict) else overrides):
        try:
            value = yaml.safe_load(text) if isinstance(text, str) else text
        except yaml.YAMLError:
            value = text
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                if part in node and node[part] is not None:
                    raise ValueError(f"--{key}: '{part}' is {node[part]!r} in the config, not a section")
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


def one_line_errors(prog: str, run: Callable[[], int | None]) -> int:
    """Run a verb; a user's mistake (a missing or unreadable file, a directory given as a file, a wrong
    checkpoint, a bad value) is printed as one line ``<prog>: error: <message>`` on stderr with exit code 2,
    not a traceback (``L2I_TRACEBACK=1`` shows it)."""
    from l2i.audio import AudioFileError
    from l2i.checkpoints import CheckpointError

    try:
        return int(run() or 0)
    except (CheckpointError, AudioFileError, OSError, ValueError) as exc:
        if os.environ.get("L2I_TRACEBACK"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2


def default_device(device: str | None) -> str:
    """``auto`` (the default of every verb) -> ``cuda`` when available, else ``cpu``; other values as given."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


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

    before_fit = before_validate = before_test = before_predict = _weights_only_by_default


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
    "export": "experiments.interpret:export_main",
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
        print("  export: one self-contained file of a trained interpreter, loadable anywhere (l2i export --help)")
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
