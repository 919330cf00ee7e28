"""LMACModule: trains the L-MAC-style mask decoder of a frozen classifier (the benchmark's competitor baseline).

The model is :class:`l2i.baselines.lmac.LMACInterpreter`; this class loads the classifier, steps the loss of
:meth:`~l2i.baselines.lmac.LMACInterpreter.losses` (masked-in CE, capped masked-out −CE, L1 / TV of the mask)
and logs it. ``interpret(...)`` is the one verb of every interpreter.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

import torch

from l2i.baselines.lmac import LMAC_DEFAULT_WEIGHTS, LMACInterpreter
from l2i.interpreter.interpretation import Interpretation
from l2i.interpreter.losses import LossSchedule
from lightning_modules.base import L2IModule

__all__ = ["LMACModule"]


class LMACModule(L2IModule):
    """The L-MAC decoder of a trained classifier.

    Args:
        classifier_checkpoint: path of the trained ``ClassifierModule`` checkpoint (loaded frozen).
        layers: tapped backbone layers (default: its last three).
        hidden: decoder width.
        loss_weights: ``{loss: {first_epoch: λ}}`` (or ``{loss: λ}`` from epoch 0) for ``in``, ``out``, ``l1``,
            ``tv``, as the interpreters' :class:`~l2i.interpreter.losses.LossSchedule` (default the L-MAC ESC-50
            recipe's 4.0, 0.2, 0.4, 0.0; a loss not named keeps its default).
        out_cap: cap (nats) of the masked-out cross-entropy, keeps the objective bounded.
        lr, weight_decay: Adam settings.
        mask: ``soft`` | ``threshold`` interpretations; threshold: τ used by :meth:`interpret` by default.
        class_threshold: multilabel decision threshold.
        num_classes, task, class_names: the DataModule's label space (linked by the CLI), checked against the
            classifier's.
        classifier: an in-memory classifier instead of the path (tests; not saved in hparams).
    """

    def __init__(
        self,
        classifier_checkpoint: str | None = None,
        layers: Sequence[str] | None = None,
        hidden: int = 32,
        loss_weights: Mapping[str, Mapping[int, float] | float] | None = None,
        out_cap: float = 5.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        mask: Literal["soft", "threshold"] = "soft",
        threshold: float = 0.2,
        class_threshold: float = 0.5,
        num_classes: int | None = None,
        task: str | None = None,
        class_names: list[str] | None = None,
        classifier: Any = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["classifier"])
        from lightning_modules.classifier import frozen_classifier

        classifier = frozen_classifier(classifier, classifier_checkpoint, "LMACModule")
        self.check_label_space(classifier, num_classes, task, classifier_checkpoint)
        self.schedule = LossSchedule({**LMAC_DEFAULT_WEIGHTS, **dict(loss_weights or {})}, names=tuple(LMAC_DEFAULT_WEIGHTS),
                                     optional=())
        self.hparams["loss_weights"] = self.schedule.to_dict()
        self.task = classifier.task
        self.num_classes = classifier.num_classes
        self.class_names = list(getattr(classifier, "class_names", None) or [str(i) for i in range(self.num_classes)])
        self.interpreter = LMACInterpreter(classifier.frontend, classifier.backbone, classifier.task, classifier.num_classes,
                                           layers=layers, hidden=hidden, mask=mask, class_threshold=class_threshold)
        self.hparams["layers"] = list(self.interpreter.layers)

    @property
    def frontend(self):
        return self.interpreter.frontend

    @property
    def backbone(self):
        return self.interpreter.backbone

    def interpret(self, waveform: torch.Tensor, target=None, threshold: float | None = None, *,
                  sample_rate: int | None = None, class_threshold: float | torch.Tensor | None = None) -> Interpretation:
        """The one verb (see :meth:`LMACInterpreter.interpret`); ``threshold`` defaults to ``hparams.threshold``.
        (No ``components=``: the decoder's mask has no components.)"""
        return self.interpreter.interpret(waveform, target, self.hparams.threshold if threshold is None else threshold,
                                          sample_rate=sample_rate, class_threshold=class_threshold)

    def loss_weights(self) -> dict[str, float]:
        """``{loss: λ}`` at the current epoch."""
        return self.schedule.weights(int(self.current_epoch) if self._trainer is not None else 0)

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        losses = self.interpreter.losses(batch["waveform"], self.loss_weights(), self.hparams.out_cap,
                                         sample_rate=self.batch_rate(batch))
        bs = batch["waveform"].shape[0]
        for key, value in losses.items():
            self.log(f"{stage}/{key}", value, prog_bar=key in ("loss", "fid_in") and stage != "train", batch_size=bs,
                     sync_dist=stage != "train")
        return losses["loss"]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Checkpoints written before the decoder held f as ``interpreter.classifier`` stored it as
        ``interpreter.frontend`` / ``interpreter.backbone``: read them under the new names."""
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith(("interpreter.frontend.", "interpreter.backbone."))]:
            state["interpreter.classifier." + key[len("interpreter."):]] = state.pop(key)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self):
        return self.optimizer(self.interpreter.trainable_parameters())
