"""The ``l2i`` command.

``l2i fit|validate|test|predict --config experiments/<dataset>/<run>.yaml`` is LightningCLI (omegaconf
parser mode: ``${...}`` interpolation works in configs); the project's own verbs (``demo`` …) are
dispatched before it. The verbs that read a fit config without fitting it (``evaluate``, ``interpret``,
``benchmark``, ``crossval``) read it with the same parser through :func:`instantiate`. W&B logs offline by
default (no key, no network): ``wandb sync`` uploads later.

Lightning, torch and the verbs' modules are imported only when a verb runs, so ``l2i --help`` and
``l2i --version`` answer at once. On the command line a user's mistake (a missing file, an unknown
backbone, an option the parser refuses) ends in one line naming it, ``l2i <verb>: error: …``, not a
traceback (``L2I_TRACEBACK=1`` shows the traceback).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable

EXPERIMENTS_DIR = Path(__file__).resolve().parent

DEFAULT_LOGGER = {
    # W&B offline unless WANDB_MODE=online (offline: null follows the variable); a W&B failure (no disk
    # space, import error, service error) leaves a CSV log, never a crash. save_dir null: the run's
    # trainer.default_root_dir (runs/ when unset), so a run's W&B files, CSV mirror, config.yaml and
    # checkpoints all live in its one folder
    "class_path": "callbacks.safe_logging.SafeWandbLogger",
    "init_args": {"project": "listen-to-interpret", "save_dir": None, "offline": None, "log_model": False},
}

#: the verbs LightningCLI runs
LIGHTNING_VERBS = ("fit", "validate", "test", "predict")


def version() -> str:
    """The installed package's version (``setup.cfg``'s when run from a checkout that is not installed)."""
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version

        return dist_version("listen-to-interpret")
    except PackageNotFoundError:
        import configparser

        cfg = configparser.ConfigParser()
        cfg.read(EXPERIMENTS_DIR.parent / "setup.cfg")
        return cfg.get("metadata", "version", fallback="unknown")


class _DropFrameworkTips(logging.Filter):
    """Lightning's advertising tips (``💡 Tip: … litlogger / litmodels``) say nothing about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip" not in str(record.msg)


def quiet_frameworks() -> None:
    """Silence the framework messages that repeat once per stage and tell a user nothing they can act on.

    * Lightning's "💡 Tip" about its cloud products (a logging filter);
    * LightningCLI's "args parameter is intended to run from within Python" (the pipeline builds its stages'
      CLIs from Python on purpose);
    * torch's "pin_memory … no accelerator is found" on a CPU-only machine (pinning is a no-op there);
    * PyTorch's ``LeafSpec`` deprecation raised inside Lightning, W&B's "anonymous setting" notice and
      jsonargparse's deprecation notices about the API Lightning calls.

    Other warnings are left alone. Called by :func:`main`; idempotent.
    """
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning_fabric.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropFrameworkTips) for f in logger.filters):
            logger.addFilter(_DropFrameworkTips())
    warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter is intended to run from within Python")
    warnings.filterwarnings("ignore", message=r".*'pin_memory' argument is set as true but no accelerator is found")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r".*anonymous setting has no effect")
    # the interpreters keep their frozen classifier in eval mode on purpose
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
    # jsonargparse's notices about its own API as Lightning calls it (nothing a user of l2i can change)
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    # W&B's banner and run-history table: the end-of-run summary names the run folder and its sync line
    os.environ.setdefault("WANDB_QUIET", "true")


def resolve_config(path: str | os.PathLike) -> Path:
    """A config path as given, or relative to the repository / installed ``experiments`` folder."""
    p = Path(path)
    for candidate in (p, EXPERIMENTS_DIR.parent / p, EXPERIMENTS_DIR / p):
        try:
            if candidate.is_file():
                return candidate
        except OSError:  # not a path at all (e.g. a config given inline as YAML text, longer than a file name)
            break
    raise FileNotFoundError(f"config file not found: {path} (looked in ., {EXPERIMENTS_DIR.parent}, {EXPERIMENTS_DIR})")


#: the groups a config file may give as the path of another YAML file (``data: data.yaml``,
#: ``frontend: ../frontends/panns_32k.yaml``, ``callbacks: ../callbacks/posthoc.yaml``), as jsonargparse reads them
FILE_GROUPS = ("data", "frontend", "callbacks", "loader")


def read_config(path: str | os.PathLike) -> dict:
    """One YAML config as a dict, with the groups it names by file (:data:`FILE_GROUPS`, relative to the file
    that names them) read in, so code that reads a config as plain YAML sees what ``l2i fit`` sees."""
    import yaml

    file = resolve_config(path)
    loaded = yaml.safe_load(file.read_text()) or {}
    return inline_files(loaded, file.parent)


def inline_files(value, base: Path, key: str | None = None):
    """``value`` with every :data:`FILE_GROUPS` entry that is a ``.yaml`` path replaced by that file's content
    (read relative to ``base``, recursively)."""
    import yaml

    if isinstance(value, dict):
        return {k: inline_files(v, base, k) for k, v in value.items()}
    if isinstance(value, list):
        return [inline_files(v, base) for v in value]
    if key in FILE_GROUPS and isinstance(value, str) and value.endswith((".yaml", ".yml")):
        try:
            file = (base / value) if (base / value).is_file() else resolve_config(value)
        except FileNotFoundError:
            raise FileNotFoundError(f"a config in {base} names {key}: {value}, which is not there (a path relative to "
                                    "that config's folder; copy a recipe with the files it names)") from None
        return inline_files(yaml.safe_load(file.read_text()), file.parent)
    return value


def load_pipeline_config(path: str | os.PathLike, overrides: list[tuple[str, Any]] | dict | None = None) -> dict:
    """A pipeline config (``l2i demo`` / ``l2i benchmark``: stages and their settings, not a LightningCLI config) as a
    dict, with dotted ``overrides`` applied (:func:`apply_overrides`). The LightningCLI configs its stages name are
    read by :func:`instantiate` (or fitted by :func:`lightning_cli`)."""
    import yaml

    loaded = yaml.safe_load(resolve_config(path).read_text()) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a pipeline config must hold a mapping (stages:, benchmark: …)")
    return apply_overrides(loaded, overrides or [])


def split_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Separate dotted overrides (``--data.init_args.root /data``, ``--model.init_args.threshold=0.3``) from the
    other arguments of a verb: ``(other arguments, [(dotted key, value text)])``, in order. The project's own
    verbs (``evaluate``, ``interpret``, ``benchmark`` …) use it to take the overrides ``l2i fit`` takes
    (:func:`instantiate`)."""
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
    overrides of ``l2i fit`` for a pipeline config (:func:`load_pipeline_config`). ``overrides``: pairs or a dict."""
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


def cli_class():
    """The project's :class:`LightningCLI` subclass (:class:`experiments.cli_lightning.L2ICLI`, imported on first use:
    importing Lightning takes seconds)."""
    from experiments.cli_lightning import L2ICLI

    return L2ICLI


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


def lightning_cli(args: list[str] | None = None, run: bool = True, cls=None, **kwargs):
    """Build the project's LightningCLI (subclass mode: configs name their model and data classes); ``cls``: a
    subclass of :func:`cli_class` (default that class)."""
    import lightning as L

    from callbacks.summary import RunSummary

    quiet_frameworks()
    return (cls or cli_class())(
        model_class=L.LightningModule,
        datamodule_class=L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        # a refused option raises (one line from main), not argparse's exit with the whole usage listing
        parser_kwargs={"parser_mode": "omegaconf", "exit_on_error": False,
                       **{verb: {"exit_on_error": False} for verb in LIGHTNING_VERBS}},
        # progress bars only on a terminal: in a log file every refresh is kept (the demo's log had 24,605-character
        # lines of them); a config or --trainer.enable_progress_bar true still decides; RunSummary: what the run did
        trainer_defaults={"logger": DEFAULT_LOGGER, "enable_progress_bar": sys.stderr.isatty(),
                          "callbacks": [RunSummary()]},
        # a resumed run (--ckpt_path last) writes its config where the killed run wrote the same one
        save_config_callback=cli_class().config_callback,
        save_config_kwargs={"overwrite": True, "save_to_log_dir": False},
        args=None if args is None else _expand_config_paths(args),
        run=run,
        **kwargs,
    )


@dataclass
class Instantiated:
    """What :func:`instantiate` returns: ``config`` (the parsed config as plain data: interpolated, type-checked,
    defaults filled in, links applied to the instantiated sections), ``given`` (the same without the defaults: what
    the configs and overrides set) and the sections asked for."""

    config: dict
    given: dict = field(default_factory=dict)
    data: Any = None
    model: Any = None
    trainer: Any = None

    def init_args(self, section: str, given: bool = False) -> dict:
        """``config[section]["init_args"]`` (``given``: only the keys the configs and overrides set; ``{}`` when
        absent)."""
        node = (self.given if given else self.config).get(section) or {}
        return dict(node.get("init_args") or {}) if isinstance(node, dict) else {}

    def class_name(self, section: str) -> str:
        """The class name of ``config[section]["class_path"]`` (``""`` when absent)."""
        node = self.config.get(section) or {}
        return str(node.get("class_path") or "").rpartition(".")[2] if isinstance(node, dict) else ""


def instantiate(configs, overrides: list[tuple[str, Any]] | dict | None = None, *,
                sections: tuple[str, ...] = ("data",)) -> Instantiated:
    """Read ``l2i fit`` configs as ``l2i fit`` reads them, and build only ``sections`` (of model, data, trainer).

    The one config reader of every verb: the project's LightningCLI parser (omegaconf ``${…}`` interpolation, the
    DataModule's label space linked into the model, every value checked against its class's signature), so a
    config that ``l2i fit`` refuses is refused here with the same message.

    Args:
        configs: a path, a config dict, or a list of them, composed in order as repeated ``--config`` (a relative
            path is also looked for below the repository and ``experiments/``).
        overrides: dotted keys and their values, ``[("data.init_args.root", "/data"), …]`` or a dict, as the
            ``--data.init_args.root /data`` arguments of ``l2i fit`` (text values are parsed by the key's type).
        sections: what to instantiate; the rest is only checked (a model whose checkpoint files are not here
            can still be read).
    Raises:
        FileNotFoundError: a config path that is not found. ValueError: a config ``l2i fit`` would refuse (one
        line naming the key, see :func:`one_line`).
    """
    import argparse
    import json

    import yaml

    from experiments.cli_lightning import ConfigReader

    unknown = set(sections) - {"model", "data", "trainer"}
    if unknown:
        raise ValueError(f"instantiate: unknown section(s) {sorted(unknown)}; known: model, data, trainer")
    args: list[str] = []
    for config in [configs] if isinstance(configs, (str, os.PathLike, dict)) else list(configs or []):
        args += ["--config", yaml.safe_dump(config, sort_keys=False) if isinstance(config, dict)
                 else str(resolve_config(config))]
    for key, value in (overrides.items() if isinstance(overrides, dict) else (overrides or [])):
        args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    reader = type("ConfigReader", (ConfigReader,), {"sections": tuple(sections)})
    try:
        cli = lightning_cli(args, run=False, cls=reader)
    except argparse.ArgumentError as err:  # jsonargparse's: one line naming the key
        import re

        keys = re.findall(r'Parser key "([^"]+)"', str(err))  # the section, then the key inside its class
        if len(keys) > 1 and keys[0] in ("model", "data") and not keys[-1].startswith("init_args"):
            keys[-1] = f"init_args.{keys[-1]}"
        where = ".".join(dict.fromkeys([keys[0], keys[-1]])) + ": " if keys else ""
        raise ValueError(f"{where}{one_line(err)}") from err
    return Instantiated(config=cli.config.as_dict(), given=cli.given.as_dict(), data=cli.datamodule, model=cli.model,
                        trainer=cli.trainer)


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


HELP = """usage: l2i {verbs} [--config FILE] ...

  fit/validate/test/predict  LightningCLI: train / score a config (l2i fit --help)
  demo       train, interpret and report on the embedded synthetic data set (l2i demo --help)
  nmf        learn an NMF dictionary for a data set (l2i nmf --help)
  interpret  listenable interpretations of audio files (l2i interpret --help)
  export     one self-contained file of a trained interpreter, loadable anywhere (l2i export --help)
  evaluate   the evaluation suite for a trained interpreter (l2i evaluate --help)
  benchmark  interpreters side by side on one data set, one table (l2i benchmark --help)
  crossval   k-fold cross-validation of a fit config, mean ± std (l2i crossval --help)

  l2i --version   the package version
Every verb writes under its --out_dir (or the config's trainer.default_root_dir for fit); see the README."""

#: environment variable that shows the full traceback of a refused command
TRACEBACK_ENV = "L2I_TRACEBACK"

_GENERIC_LINES = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value type:",
                  "Given value:", "Expected a <class 'NoneType'>", "Parser key")


def one_line(err: BaseException) -> str:
    """The message of ``err`` as one line naming the problem.

    jsonargparse wraps a constructor's error in a listing of union alternatives and the whole given value
    (``Does not validate against any of the Union subtypes … Errors: - unknown backbone 'x' …``): keep the
    specific messages, drop the listing."""
    text = str(err).strip()
    if isinstance(err, KeyError) and err.args:
        text = f"missing key {err.args[0]!r}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    specific = [line[2:] if line.startswith("- ") else line for line in lines
                if not line.startswith(_GENERIC_LINES) and not line.startswith("- Expected a <class")]
    if len(lines) > 1 and specific:
        # the innermost messages are the specific ones (a constructor's ValueError sits last in the listing)
        picked = [line for line in specific if not line.startswith(("Problem with given class_path", "Validation failed",
                                                                    "Unable to instantiate"))] or specific
        text = "; ".join(dict.fromkeys(picked))
    text = text or type(err).__name__
    if isinstance(err, ModuleNotFoundError) and getattr(err, "name", None):
        text = f"the Python package {err.name!r} is not installed ({text}); pip install listen-to-interpret installs what the verbs need"
    return text if len(text) <= 400 else text[:397] + "…"


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a user's mistake raises: a missing / wrong file, a bad value, a missing package, a refused option.
    (Imported lazily: the l2i error classes pull in torch.)"""
    kinds: list[type[BaseException]] = [OSError, ValueError, ImportError, KeyError]
    try:
        from jsonargparse import ArgumentError

        kinds.append(ArgumentError)
    except ImportError:  # pragma: no cover
        pass
    for module, name in (("l2i.checkpoints", "CheckpointError"), ("l2i.audio", "AudioFileError"),
                         ("l2i.backbones.pretrained", "PretrainedLoadError")):
        mod = sys.modules.get(module)  # only when already imported: a command that never loaded it cannot raise it
        if mod is not None and hasattr(mod, name):
            kinds.append(getattr(mod, name))
    return tuple(kinds)


def main(argv: list[str] | None = None, friendly_errors: bool | None = None) -> int | None:
    """``l2i <verb> …``. ``friendly_errors`` (default: when run from the command line): a user's mistake prints
    ``l2i <verb>: error: <one line>`` on stderr and returns 2 instead of raising."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if friendly_errors is None:
        friendly_errors = from_command_line and not os.environ.get(TRACEBACK_ENV)
    verb = argv[0] if argv else ""
    if not argv or verb in ("-h", "--help"):
        print(HELP.format(verbs="{" + ",".join((*LIGHTNING_VERBS, *COMMANDS)) + "}"))
        return 0 if argv else 2
    if verb in ("-V", "--version"):
        print(f"l2i (listen-to-interpret) {version()}")
        return 0
    if verb not in COMMANDS and verb not in LIGHTNING_VERBS:
        print(f"l2i: error: unknown command {verb!r}; commands: {', '.join((*LIGHTNING_VERBS, *COMMANDS))} (l2i --help)",
              file=sys.stderr)
        return 2
    quiet_frameworks()
    try:
        if verb in COMMANDS:
            return _commands()[verb](argv[1:])
        if from_command_line:  # LightningCLI reads sys.argv itself; give it the resolved config paths
            sys.argv[1:] = _expand_config_paths(argv)
            cli = lightning_cli(None)
        else:
            cli = lightning_cli(argv)
        from callbacks.wandb_runs import finish_loggers

        # end the run's W&B run: one left open is silently reused by the next logger in the same process
        finish_loggers(cli.trainer)
        return 0
    except Exception as err:  # noqa: BLE001 - re-raised unless it is a user's mistake
        if not friendly_errors or not isinstance(err, _user_errors()):
            raise
        print(f"l2i {verb}: error: {one_line(err)}", file=sys.stderr)
        print(f"  ({TRACEBACK_ENV}=1 l2i … shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
