"""MetricsCallback: fidelity and faithfulness summaries logged every validation (and test) epoch, so their
curves show in the dashboard (and in the CSV log).

On the first ``max_batches`` batches of each validation / test epoch it calls the module's
``interpret(waveform, threshold=…)`` and updates :class:`~l2i.evaluation.fidelity.Fidelity` and
:class:`~l2i.evaluation.faithfulness.Faithfulness` (residual waveforms through the classifier; random
components of the same number when ``interpret`` takes ``components=``). At epoch end it logs, e.g.,
``val/fidelity_top1``, ``val/fidelity_top3`` (multilabel: ``val/fidelity_f1``, ``val/fidelity_accuracy``),
``val/faithfulness_prob_drop``, ``val/faithfulness_prob_drop_random``, ``val/faithfulness_relevant_gt_random``
(means over explained clips/classes). The metrics are torchmetrics (DDP-synced at ``compute``).

The classifier f is :func:`l2i.classifier.classifier_of` the module: its ``classifier``, else its ``frontend`` +
``backbone`` (post-hoc and by-design modules expose both).
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import Callback

from l2i.classifier import classifier_of
from l2i.evaluation.common import classify_waveform, supports_components
from l2i.evaluation.faithfulness import Faithfulness
from l2i.evaluation.fidelity import Fidelity
from l2i.interpreter.interpretation import random_components

__all__ = ["MetricsCallback", "classifier_of"]


class MetricsCallback(Callback):
    """Fidelity + faithfulness per epoch (see the module docstring).

    Args:
        max_batches: batches per epoch used (interpretation costs a few forward passes per batch).
        threshold: relevance threshold passed to ``interpret`` (default: the module's own).
        top_k: extra k of multiclass top-k fidelity.
        random_baseline: also remove random components (needs ``components=`` in ``interpret``).
        seed: seed of the random components.
        on_test: also at test.
    """

    def __init__(self, max_batches: int = 4, threshold: float | None = None, top_k: int = 3, random_baseline: bool = True,
                 seed: int = 0, on_test: bool = True):
        super().__init__()
        self.max_batches, self.threshold, self.top_k = int(max_batches), threshold, int(top_k)
        self.random_baseline, self.seed, self.on_test = bool(random_baseline), int(seed), bool(on_test)
        self._metrics: dict[str, tuple[Fidelity, Faithfulness]] = {}
        self.history: list[dict[str, float]] = []

    def _reset(self, stage: str, pl_module) -> None:
        task = getattr(pl_module, "task", "multiclass")
        C = int(pl_module.num_classes)
        self._metrics[stage] = (
            Fidelity(task, C, top_k=(self.top_k,)).to(pl_module.device),
            Faithfulness(task).to(pl_module.device),
        )
        self._gen = torch.Generator().manual_seed(self.seed)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._reset("val", pl_module)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._reset("test", pl_module)

    @torch.no_grad()
    def _update(self, stage: str, pl_module, batch: dict, batch_idx: int) -> None:
        if batch_idx >= self.max_batches or stage not in self._metrics:
            return
        fidelity, faith = self._metrics[stage]
        wave = batch["waveform"].to(pl_module.device).float()
        kwargs = {} if self.threshold is None else {"threshold": self.threshold}
        interp = pl_module.interpret(wave, **kwargs)
        clf = classifier_of(pl_module)
        logits = interp.classifier_logits if interp.classifier_logits is not None else classify_waveform(clf, wave)
        fidelity.update(interp.logits, logits)
        rand = None
        if self.random_baseline and supports_components(pl_module):
            comps = random_components(interp.components, self._gen)
            rand = pl_module.interpret(wave, target=interp.classes, components=comps, **kwargs)
        faith.update_from_logits(
            logits, classify_waveform(clf, interp.residual), interp.classes,
            None if rand is None else classify_waveform(clf, rand.residual),
        )

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._update("val", pl_module, batch, batch_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.on_test:
            self._update("test", pl_module, batch, batch_idx)

    def _log(self, stage: str, trainer, pl_module) -> None:
        if stage not in self._metrics or trainer.sanity_checking:
            return
        fidelity, faith = self._metrics[stage]
        if float(fidelity.total) == 0 and not trainer.world_size > 1:
            return
        values: dict[str, float] = {f"{stage}/fidelity_{k}": float(v) for k, v in fidelity.compute().items()}
        f = faith.compute()
        values[f"{stage}/faithfulness_logit_drop"] = f["relevant_logit_drop_mean"]
        values[f"{stage}/faithfulness_prob_drop"] = f["relevant_prob_drop_mean"]
        if "random_prob_drop_mean" in f:
            values[f"{stage}/faithfulness_prob_drop_random"] = f["random_prob_drop_mean"]
            values[f"{stage}/faithfulness_relevant_gt_random"] = f["frac_prob_relevant_gt_random"]
        for k, v in values.items():
            pl_module.log(k, v, on_step=False, on_epoch=True, sync_dist=False)  # already synced by torchmetrics
        self.history.append({"epoch": int(trainer.current_epoch), **values})

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._log("val", trainer, pl_module)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if self.on_test:
            self._log("test", trainer, pl_module)
