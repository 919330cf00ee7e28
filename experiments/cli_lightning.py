"""The project's :class:`~lightning.pytorch.cli.LightningCLI` classes (imported by :mod:`experiments.cli` only when a
verb needs them: importing Lightning takes seconds).

* :class:`L2ICLI`: ``l2i fit|validate|test|predict`` and every fit stage of the pipeline;
* :class:`ConfigReader`: the same parser (omegaconf interpolation, the label-space links, type checks) for the
  verbs that only read a config (``l2i evaluate``, ``l2i interpret``, ``l2i benchmark``), instantiating only the
  sections they ask for (:func:`experiments.cli.instantiate`);
* :func:`check_sample_rates`: the parse-time check that the data's and the front-end's rates agree (also run by
  ``l2i nmf`` on its own config).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

__all__ = ["RunConfig", "L2ICLI", "ConfigReader", "check_sample_rates"]


def _dotted(node, key: str):
    """``node``'s value at the dotted ``key`` (a dict or a jsonargparse Namespace), None where absent."""
    for part in key.split("."):
        node = node.get(part) if hasattr(node, "get") else getattr(node, part, None)
        if node is None:
            return None
    return node


def check_sample_rates(config, frontend_key: str, data_key: str = "data.init_args.sample_rate") -> None:
    """Refuse a config whose data are decoded at one rate and whose front-end expects another: the rate is stated
    once per data set (its ``data.yaml`` and the front-end file it names agree); a mismatch names both keys."""
    data_rate, frontend_rate = _dotted(config, data_key), _dotted(config, frontend_key)
    if data_rate is not None and frontend_rate is not None and int(data_rate) != int(frontend_rate):
        raise ValueError(f"{data_key} is {int(data_rate)} but {frontend_key} is {int(frontend_rate)}: the clips would be "
                         "decoded at one rate and resampled to another; give both the same rate")


class RunConfig(SaveConfigCallback):
    """The resolved config goes to ``<trainer.default_root_dir>/config.yaml``: one per run folder (Lightning
    would write it to the logger's folder, which runs sharing a logger folder overwrite)."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        root = Path(trainer.default_root_dir)
        root.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, str(root / self.config_filename), skip_none=False, overwrite=True,
                         multifile=self.multifile)


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

    def _name_wandb_run(self) -> None:
        """The W&B run's ``job_type`` (the stage its model belongs to, unless a pipeline stage or the
        config set one) and the artifacts the model was built from, in its config
        (:mod:`callbacks.wandb_runs`)."""
        from callbacks.safe_logging import SafeWandbLogger
        from callbacks.wandb_runs import job_type_of, used_artifacts

        for logger in getattr(self.trainer, "loggers", None) or []:
            if isinstance(logger, SafeWandbLogger):
                logger.name_run(job_type_of(self.model), used_artifacts(getattr(self.model, "hparams", {})))

    def _before_run(self) -> None:
        self._weights_only_by_default()
        self._name_wandb_run()

    before_fit = before_validate = before_test = before_predict = _before_run

    def before_instantiate_classes(self) -> None:
        """The data's and the front-end's sample rates agree (:func:`check_sample_rates`); the default
        logger (``save_dir: null``) writes into the run's ``trainer.default_root_dir``."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        check_sample_rates(config, "model.init_args.frontend.sample_rate")
        trainer = config.get("trainer")
        if trainer is None:
            return
        loggers = trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            if isinstance(logger, (bool, type(None), str)):
                continue
            get = logger.get if isinstance(logger, dict) else (lambda key, lg=logger: getattr(lg, key, None))
            init = get("init_args")
            if init is not None and str(get("class_path") or "").endswith("SafeWandbLogger") \
                    and init.get("save_dir") is None:
                init["save_dir"] = str(trainer.get("default_root_dir") or "runs")


L2ICLI.config_callback = RunConfig

#: the sections of a LightningCLI config that :class:`ConfigReader` may instantiate
SECTIONS = ("model", "data", "trainer")


class ConfigReader(L2ICLI):
    """:class:`L2ICLI`'s parser for a verb that reads a config without fitting it: the whole config is parsed and
    type-checked as ``l2i fit`` parses it, and only the sections named in :attr:`sections` are instantiated (the
    others stay checked config). Reading a config seeds nothing (no ``seed_everything``)."""

    sections: tuple[str, ...] = ("data",)

    def _set_seed(self) -> None:
        """Reading a config changes no random state."""

    def parse_arguments(self, parser, args) -> None:
        """Parse as :class:`L2ICLI` does, and keep what the configs and overrides give themselves (no defaults) in
        :attr:`given`: a verb tells a setting it was given from a class default."""
        super().parse_arguments(parser, args)
        self.given = parser.parse_args(args, defaults=False)

    def add_core_arguments_to_parser(self, parser) -> None:
        """As LightningCLI's, but a ``model`` or ``data`` section is required only when it is instantiated (``l2i
        interpret`` reads a model section alone)."""
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({"trainer." + k: v for k, v in self.trainer_defaults.items() if k != "callbacks"})
        parser.add_lightning_class_args(self._model_class, "model", subclass_mode=self.subclass_mode_model,
                                        required="model" in self.sections)
        parser.add_lightning_class_args(self._datamodule_class, "data", subclass_mode=self.subclass_mode_data,
                                        required="data" in self.sections)

    def instantiate_classes(self) -> None:
        if set(SECTIONS) <= set(self.sections):
            super().instantiate_classes()
            return
        config = self.config.clone()
        for key in SECTIONS:
            if key not in self.sections and key in config:
                config.pop(key)
        self.config_init = self.parser.instantiate_classes(config) if self.sections else config
        self.datamodule = self._get(self.config_init, "data")
        self.model = self._get(self.config_init, "model")
        self.trainer = None


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


