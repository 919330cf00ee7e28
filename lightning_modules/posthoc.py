"""PostHocInterpreterModule: trains Ψ and Θ (and optionally W) to explain a frozen classifier (L2I stage 2a).

``training_step`` reads like the loss of method.md::

    total = λ_rec · reconstruction + λ_fid · fidelity + λ_spa · sparsity (+ λ_θ · theta_sparsity, optional)

with the λ's from an epoch schedule (``loss_weights``, default the authors' ESC-50 schedule). The pure-torch
model is :class:`l2i.interpreter.posthoc.PostHocInterpreter`; this class only loads the artifacts, logs and
optimises.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

import lightning as L
import torch
import torchmetrics

from l2i.dictionary import NOISE_LABEL, DictionaryArtifact
from l2i.interpreter.interpretation import Interpretation
from l2i.interpreter.posthoc import PostHocInterpreter, LossSchedule, PostHocOutput

__all__ = ["PostHocInterpreterModule", "fidelity_metrics", "block_evidence", "class_evidence"]


def fidelity_metrics(task: str, num_classes: int) -> torchmetrics.MetricCollection:
    """Agreement of the interpreter with the classifier.

    multiclass: ``fidelity`` (top-1: argmax Θ(H) == argmax f(x)) and ``fidelity_top3`` (f's class among the
    interpreter's 3 best); multilabel: ``fidelity`` (accuracy of the interpreter's thresholded labels against
    the classifier's, per class and clip) and ``fidelity_f1`` (micro F1 of the same).
    """
    if task == "multiclass":
        return torchmetrics.MetricCollection(
            {
                "fidelity": torchmetrics.Accuracy(task="multiclass", num_classes=num_classes),
                "fidelity_top3": torchmetrics.Accuracy(task="multiclass", num_classes=num_classes, top_k=min(3, num_classes)),
            }
        )
    return torchmetrics.MetricCollection(
        {
            "fidelity": torchmetrics.Accuracy(task="multilabel", num_labels=num_classes, average="micro"),
            "fidelity_f1": torchmetrics.F1Score(task="multilabel", num_labels=num_classes, average="micro"),
        }
    )


def class_evidence(dictionary: DictionaryArtifact, source: str) -> list[bool]:
    """``(K,)``: True for the components that are not the dictionary's noise block (``noise_evidence: false``)."""
    labels = dictionary.labels
    if not labels or NOISE_LABEL not in labels:
        raise ValueError(
            f"noise_evidence: false needs a dictionary with noise components, but {source} has none "
            "(learn it with nmf.noise_components > 0, or keep noise_evidence: true)"
        )
    return [label != NOISE_LABEL for label in labels]


def block_evidence(dictionary: DictionaryArtifact, class_names: list[str], source: str) -> list[list[bool]]:
    """``(C, K)``: row c is True on the dictionary columns labelled with class c's name (``block_evidence: true``:
    Θ tied to the class blocks; noise / shared columns carry no evidence for any class)."""
    labels = dictionary.labels
    names = [str(n) for n in class_names]
    if not labels or not set(labels) & set(names):
        raise ValueError(
            f"block_evidence: true needs a dictionary of class blocks whose labels are the class names {names}, but "
            f"{source} has labels {sorted(set(labels or []))[:8]} (learn it with nmf.per_class_components > 0)"
        )
    return [[label == name for label in labels] for name in names]


def _evidence(dictionary: DictionaryArtifact, class_names, source: str, noise_evidence: bool, block: bool):
    """Θ's ``evidence`` from the two options: ``(C, K)`` tied to the blocks, ``(K,)`` without the noise block, or
    None (every component, the authors' method)."""
    if block:
        return block_evidence(dictionary, list(class_names), source)
    return None if noise_evidence else class_evidence(dictionary, source)


class PostHocInterpreterModule(L.LightningModule):
    """A post-hoc interpreter of a trained classifier.

    Args:
        classifier_checkpoint: path of the trained ``ClassifierModule`` checkpoint (loaded frozen, eval mode).
        dictionary_path: path of the :class:`~l2i.dictionary.DictionaryArtifact`; its front-end must match the
            classifier's (checked, mismatches named).
        layers: hidden layers of the backbone to tap (default: its last three conv blocks).
        hidden, psi_dropout: Ψ width and dropout.
        pooling, attention_dim: Θ's pooling (``attention`` | ``max`` | ``mean``).
        finetune_dictionary: train W as well (kept non-negative, columns unit-norm).
        noise_evidence: whether the dictionary's noise components (labelled ``noise`` in the artifact, from
            ``nmf.noise_components``) may carry class evidence. ``false``: Θ's weights on them are 0 (their
            relevance is 0, they are never chosen) and the sparsity loss leaves them free to reconstruct the
            background. Not in the paper (it has no noise block). Measured on the synthetic default (the demo's
            posthoc and benchmark stages, same schedule): interpretation SI-SDR over the mixture 3.8 -> 5.1 dB,
            fidelity 0.966 -> 0.974, the mask's sparseness (SPS) 0.58 -> 0.86 (random components: 0.54).
        block_evidence: Θ tied to the dictionary's class blocks (labels = the class names, from
            ``nmf.per_class_components``): class c's logit comes from c's block only, so its relevance, chosen
            components and interpretation stay inside c's block; noise and shared columns carry no evidence.
            Not in the paper. See the README section "Real recordings" for what it buys.
        theta_bias: a per-class offset in Θ's logits, outside the relevance. Not in the paper; with
            ``block_evidence`` on multilabel data it lets a class be absent with its block silent instead of
            through negative weights on its own components (which would drop them from its interpretation).
        loss_weights: ``{loss: {first_epoch: λ}}`` for ``fidelity`` / ``reconstruction`` / ``sparsity`` and
            the optional ``theta_sparsity`` (L1 on Θ's class weights, see
            :func:`~l2i.interpreter.posthoc.interpreter_losses`; 0 unless named)
            (default :data:`~l2i.interpreter.posthoc.AUTHORS_ESC50_SCHEDULE`).
        lr, weight_decay: Adam settings (authors: lr 2e-4 ESC-50, 5e-4 SONYC-UST).
        threshold: relevance threshold τ used by :meth:`interpret` by default.
        class_threshold: multilabel decision threshold for "the classifier's prediction".
        num_classes, task, class_names: the DataModule's label space (linked by the CLI); checked against the
            classifier's, never used to override it.
        classifier, dictionary: in-memory objects instead of the paths (tests, notebooks); not saved in
            hparams — a checkpoint made this way needs the paths to be reloaded.
    """

    def __init__(
        self,
        classifier_checkpoint: str | None = None,
        dictionary_path: str | None = None,
        layers: Sequence[str] | None = None,
        hidden: int = 128,
        psi_dropout: float = 0.0,
        pooling: Literal["attention", "max", "mean"] = "attention",
        attention_dim: int = 256,
        finetune_dictionary: bool = False,
        noise_evidence: bool = True,
        block_evidence: bool = False,
        theta_bias: bool = False,
        loss_weights: Mapping[str, Mapping[int, float] | float] | None = None,
        lr: float = 2e-4,
        weight_decay: float = 0.0,
        threshold: float = 0.2,
        class_threshold: float = 0.5,
        num_classes: int | None = None,
        task: str | None = None,
        class_names: list[str] | None = None,
        classifier: Any = None,
        dictionary: DictionaryArtifact | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["classifier", "dictionary"])
        from lightning_modules.classifier import ClassifierModule

        if classifier is None:
            if not classifier_checkpoint:
                raise ValueError("PostHocInterpreterModule needs classifier_checkpoint (path of a trained classifier)")
            classifier = ClassifierModule.load_frozen(classifier_checkpoint)
        classifier.eval()
        classifier.requires_grad_(False)
        if dictionary is None:
            if not dictionary_path:
                raise ValueError("PostHocInterpreterModule needs dictionary_path (a DictionaryArtifact file)")
            dictionary = DictionaryArtifact.load(dictionary_path)
        dictionary.check_frontend(classifier.frontend.config, source=str(dictionary_path or "dictionary"))
        for name, given, actual in (("num_classes", num_classes, classifier.num_classes), ("task", task, classifier.task)):
            if given is not None and given != actual:
                raise ValueError(f"the data's {name} is {given!r} but the classifier ({classifier_checkpoint or 'given'}) has {actual!r}")
        self.schedule = LossSchedule(loss_weights)
        self.task = classifier.task
        self.num_classes = classifier.num_classes
        self.class_names = list(classifier.class_names)
        self.interpreter = PostHocInterpreter(
            classifier.frontend,
            classifier.backbone,
            dictionary.W,
            num_classes=classifier.num_classes,
            task=classifier.task,
            layers=layers,
            hidden=hidden,
            psi_dropout=psi_dropout,
            pooling=pooling,
            attention_dim=attention_dim,
            finetune_dictionary=finetune_dictionary,
            evidence=_evidence(dictionary, classifier.class_names, str(dictionary_path or "dictionary"), noise_evidence,
                               block_evidence),
            theta_bias=theta_bias,
        )
        self.hparams["layers"] = list(self.interpreter.layers)
        self.hparams["loss_weights"] = self.schedule.to_dict()
        metrics = fidelity_metrics(self.task, self.num_classes)
        self.train_fidelity = metrics.clone(prefix="train/")
        self.val_fidelity = metrics.clone(prefix="val/")
        self.test_fidelity = metrics.clone(prefix="test/")

    # -- model -------------------------------------------------------------------------------------------
    @property
    def frontend(self):
        return self.interpreter.frontend

    @property
    def backbone(self):
        return self.interpreter.backbone

    def forward(self, waveform: torch.Tensor, sample_rate: int | None = None) -> PostHocOutput:
        return self.interpreter(waveform, sample_rate)

    def interpret(self, waveform: torch.Tensor, target=None, threshold: float | None = None, **kwargs) -> Interpretation:
        """The one verb (see :meth:`PostHocInterpreter.interpret`); ``threshold`` defaults to ``hparams.threshold``."""
        kwargs.setdefault("class_threshold", self.hparams.class_threshold)
        return self.interpreter.interpret(
            waveform, target, self.hparams.threshold if threshold is None else threshold, **kwargs
        )

    # -- training ----------------------------------------------------------------------------------------
    def loss_weights(self) -> dict[str, float]:
        return self.schedule.weights(int(self.current_epoch) if self._trainer is not None else 0)

    def _rate(self, batch: dict) -> int | None:
        rate = batch.get("sample_rate")
        if rate is None:
            return None
        return int(rate.flatten()[0]) if torch.is_tensor(rate) else int(rate)

    def _step(self, batch: dict, stage: str, metrics: torchmetrics.MetricCollection) -> torch.Tensor:
        out = self(batch["waveform"], self._rate(batch))
        losses = self.interpreter.losses(out)
        weights = self.loss_weights()
        total = sum(weights.get(name, 0.0) * value for name, value in losses.items())
        bs = batch["waveform"].shape[0]
        on_step = stage == "train"
        for name, value in losses.items():
            self.log(f"{stage}/{name}_loss", value, batch_size=bs, on_step=on_step, on_epoch=True)
        self.log(f"{stage}/loss", total, batch_size=bs, prog_bar=True, on_step=on_step, on_epoch=True)
        if stage == "train":
            for name, w in weights.items():
                self.log(f"lambda/{name}", w, on_step=False, on_epoch=True, batch_size=bs)
        if self.task == "multiclass":
            metrics.update(out.logits.softmax(-1), out.classifier_logits.argmax(-1))
        else:
            metrics.update(out.logits.sigmoid(), (out.classifier_logits.sigmoid() > self.hparams.class_threshold).long())
        self.log_dict(metrics, prog_bar=stage != "train", on_step=False, on_epoch=True, batch_size=bs)
        if not torch.isfinite(total):
            raise FloatingPointError(f"{stage} loss is not finite: " + ", ".join(f"{k}={float(v):.4g}" for k, v in losses.items()))
        return total

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", self.train_fidelity)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val", self.val_fidelity)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test", self.test_fidelity)

    def predict_step(self, batch: dict, batch_idx: int) -> Interpretation:
        return self.interpret(batch["waveform"], sample_rate=self._rate(batch))

    def configure_optimizers(self):
        return torch.optim.Adam(self.interpreter.trainable_parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
