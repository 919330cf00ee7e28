"""What every LightningModule of the project shares, written once: :class:`L2IModule`.

* :meth:`~L2IModule.batch_rate`: the sample rate a batch carries (one rate per batch; a batch that mixes rates
  is refused, naming them);
* :meth:`~L2IModule.optimizer`: Adam / AdamW on the trainable parameters, with a cosine decay over
  ``trainer.max_epochs`` when asked;
* :meth:`~L2IModule.check_label_space`: the data's label space checked against the classifier an interpreter
  explains (loaded frozen by :func:`lightning_modules.classifier.frozen_classifier`);
* :meth:`~L2IModule.load_dictionary`: the NMF dictionary, its front-end checked against the model's;
* :meth:`~L2IModule.register_pos_weight`: the multilabel BCE's per-class positive weights, checked;
* :meth:`~L2IModule.set_loss_schedule`: the loss weights as a schedule, a loss the module does not compute refused.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import lightning as L
import torch

from l2i.dictionary import DictionaryArtifact
from l2i.interpreter.losses import LossSchedule

__all__ = ["L2IModule"]


class L2IModule(L.LightningModule):
    """A :class:`~lightning.pytorch.LightningModule` with the project's shared helpers (see the module docstring)."""

    @staticmethod
    def batch_rate(batch: dict) -> int | None:
        """The batch's ``sample_rate`` (``None`` when it carries none); ``ValueError`` when it mixes rates."""
        rate = batch.get("sample_rate")
        if rate is None:
            return None
        if torch.is_tensor(rate):
            if rate.numel() > 1 and not bool((rate == rate.flatten()[0]).all()):
                raise ValueError(f"a batch mixes sample rates {sorted(set(rate.tolist()))}; resample in the DataModule")
            return int(rate.flatten()[0])
        return int(rate)

    def optimizer(self, params: Iterable, *, adamw: bool = False, cosine: bool = False):
        """``Adam`` (``adamw``: ``AdamW``) on ``params`` (parameters or parameter groups) with ``hparams.lr`` and
        ``hparams.weight_decay``; with ``cosine`` and a trainer's ``max_epochs``, a cosine decay over them (stepped
        per epoch). What ``configure_optimizers`` returns."""
        cls = torch.optim.AdamW if adamw else torch.optim.Adam
        optimizer = cls(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if not cosine or self.trainer is None or not self.trainer.max_epochs or self.trainer.max_epochs < 1:
            return optimizer
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.trainer.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    @staticmethod
    def check_label_space(classifier: Any, num_classes: int | None, task: str | None, source: str | None) -> None:
        """The data's ``num_classes`` / ``task`` (linked by the CLI; ``None``: not given) are the classifier's."""
        for name, given, actual in (("num_classes", num_classes, classifier.num_classes), ("task", task, classifier.task)):
            if given is not None and given != actual:
                raise ValueError(f"the data's {name} is {given!r} but the classifier ({source or 'given'}) has {actual!r}")

    @staticmethod
    def load_dictionary(dictionary: DictionaryArtifact | None, dictionary_path: str | None, frontend_config,
                        owner: str) -> DictionaryArtifact:
        """``dictionary`` (in memory), else the artifact at ``dictionary_path``; its front-end must be the model's
        (``frontend_config``), mismatches named."""
        if dictionary is None:
            if not dictionary_path:
                raise ValueError(f"{owner} needs dictionary_path (a DictionaryArtifact file)")
            dictionary = DictionaryArtifact.load(dictionary_path)
        dictionary.check_frontend(frontend_config, source=str(dictionary_path or "dictionary"))
        return dictionary

    def register_pos_weight(self, pos_weight: list[float] | None, num_classes: int) -> None:
        """``self.pos_weight``: the multilabel BCE's per-class positive weights (a buffer, not saved), one per class."""
        if pos_weight is not None and len(pos_weight) != num_classes:
            raise ValueError(f"pos_weight has {len(pos_weight)} entries, expected num_classes={num_classes}")
        self.register_buffer("pos_weight", torch.tensor(pos_weight) if pos_weight is not None else None, persistent=False)

    def set_loss_schedule(self, loss_weights, refused: Mapping[str, str]) -> None:
        """``self.schedule``: :class:`~l2i.interpreter.losses.LossSchedule` of ``loss_weights`` (the authors' when
        ``None``); a loss named in ``refused`` (``{name: why}``, in order) is refused as ``loss_weights.<name> <why>``."""
        self.schedule = LossSchedule(loss_weights)
        named = self.schedule.to_dict()
        for name, why in refused.items():
            if name in named:
                raise ValueError(f"loss_weights.{name} {why}")
