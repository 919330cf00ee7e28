"""ByDesignModule: the NMF-activation bottleneck trained jointly with the backbone (stage 2b).

``training_step`` reads like the loss::

    bottleneck:  total = task(Θ(H), y)                          + λ_rec · reconstruction + λ_spa · sparsity
    joint:       total = task(f(x), y) + λ_fid · fidelity(Θ(H), f(x)) + λ_rec · reconstruction + λ_spa · sparsity

with the λ's from an epoch schedule (``loss_weights``; default the authors' ESC-50 schedule). The pure-torch
model is :class:`l2i.interpreter.bydesign.ByDesignModel`.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

import torch

from l2i.backbones import build_backbone
from l2i.classifier import FrozenClassifier, LogmelPredictor
from l2i.bundle import EMBEDDED_KEY, embedded_bundle, read_interpreter
from l2i.dictionary import DictionaryArtifact
from l2i.frontend import AudioFrontEnd, FrontEndConfig
from l2i.interpreter.bydesign import ByDesignModel
from l2i.interpreter.losses import VARIANTS, bydesign_losses
from l2i.interpreter.interpretation import Interpretation
from l2i.interpreter.posthoc import PostHocOutput, check_interpret_options, merge_interpret_options
from lightning_modules.base import L2IModule
from lightning_modules.classifier import ClassifierModule, OfficialMetricMixin, is_empty_batch, task_metrics
from l2i.evaluation.fidelity import fidelity_metrics
from l2i.dictionary import theta_evidence as _evidence

__all__ = ["ByDesignModule"]


def _backbone(classifier_checkpoint: str | None, num_classes: int, task: str, backbone: str,
              backbone_kwargs: dict | None, frontend, pretrained: str | None, class_names: list[str] | None):
    """``(front-end, backbone, architecture dict)``: the classifier's (its checkpoint, whose label space must be the
    data's) when ``classifier_checkpoint`` is given, else a new ``backbone`` at ``frontend``."""
    if classifier_checkpoint:
        base = ClassifierModule.load_frozen(classifier_checkpoint)
        if base.num_classes != num_classes or base.task != task:
            raise ValueError(f"classifier_checkpoint {classifier_checkpoint} has {base.num_classes} classes "
                             f"({base.task}); the data has {num_classes} ({task})")
        return base.frontend, base.backbone, dict(base.hparams)
    fe = AudioFrontEnd(FrontEndConfig.from_any(frontend))
    net = build_backbone(backbone, n_mels=fe.config.n_mels, num_classes=num_classes, pretrained=pretrained,
                         **(backbone_kwargs or {}))
    return fe, net, {"backbone": backbone, "backbone_kwargs": backbone_kwargs, "frontend": fe.config.to_dict(),
                     "task": task, "num_classes": num_classes, "class_names": class_names}


class ByDesignModule(OfficialMetricMixin, L2IModule):
    """A classifier whose prediction goes through NMF activations (``variant: bottleneck``), or a classifier
    trained jointly with its interpreter (``variant: joint``, FLINT-style).

    Args:
        dictionary_path: the :class:`~l2i.dictionary.DictionaryArtifact` (front-end checked against the model's).
        variant: ``bottleneck`` (Θ(H) is the prediction) or ``joint`` (the core's name too). (Not ``mode``: Lightning merges
            the model's and the DataModule's hyper-parameters for the logger, and the DataModule has a ``mode``.)
        classifier_checkpoint: start the front-end and backbone from a trained ``ClassifierModule`` checkpoint;
            otherwise they are built from ``backbone`` / ``backbone_kwargs`` / ``frontend`` (from scratch, or
            from the backbone file ``pretrained``).
        layers, hidden, psi_dropout, pooling, attention_dim, finetune_dictionary: Ψ, Θ and W as in the post-hoc
            interpreter.
        block_evidence: Θ tied to the dictionary's class blocks (as in the post-hoc interpreter): class c's
            prediction, and so its interpretation, is by construction the share of c's block.
        theta_bias: a per-class offset in Θ's logits, outside the relevance (as in the post-hoc interpreter).
        loss_weights: ``{loss: {first_epoch: λ}}`` for ``fidelity`` (joint only) / ``reconstruction`` /
            ``sparsity``; the task loss has weight 1.
        lr, weight_decay, cosine: AdamW and cosine decay over ``max_epochs``.
        pos_weight: per-class positive weights of the multilabel BCE.
        threshold, class_threshold: relevance threshold τ and multilabel decision threshold of ``interpret``.
        num_classes, task, class_names: the label space (linked from the DataModule by the CLI).
        dataset_metric: the data set's official metric at validation / test (as ``ClassifierModule``).
        dictionary: an in-memory artifact instead of ``dictionary_path`` (tests, notebooks).
        distill: keep a frozen copy of the ``classifier_checkpoint``'s classifier (the black box) and add the
            ``distillation`` loss (Θ(H) against its output, weighted as ``distillation`` in ``loss_weights``). Not
            in the paper; default off.
        interpreter_init: path of a trained post-hoc interpreter of the same classifier and dictionary (its
            Lightning checkpoint or the state dict of a ``PostHocInterpreterModule``): Ψ and Θ start from its
            weights instead of at random (same ``layers``, ``hidden``, ``pooling``, evidence). Not in the paper;
            default ``None``.
        interpret_options: keyword arguments :meth:`interpret` uses by default, as the post-hoc interpreter's
            (:class:`~lightning_modules.posthoc.PostHocInterpreterModule`; kept in the checkpoint, so ``l2i
            evaluate`` / ``l2i interpret`` / :func:`l2i.load_interpreter` use them too). Default empty: the
            authors' interpretation. ``experiments/instruments/bydesign_distilled.yaml`` sets the real-recording
            recipe's separation (gated by the model's own prediction). Not used in training.
    """

    def __init__(
        self,
        dictionary_path: str | None = None,
        variant: Literal["bottleneck", "joint"] = "bottleneck",
        classifier_checkpoint: str | None = None,
        backbone: str = "small_cnn",
        backbone_kwargs: dict[str, Any] | None = None,
        frontend: FrontEndConfig | None = None,
        pretrained: str | None = None,
        layers: Sequence[str] | None = None,
        hidden: int = 128,
        psi_dropout: float = 0.0,
        pooling: Literal["attention", "max", "mean"] = "attention",
        attention_dim: int = 256,
        finetune_dictionary: bool = False,
        block_evidence: bool = False,
        theta_bias: bool = False,
        loss_weights: Mapping[str, Mapping[int, float] | float] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        cosine: bool = True,
        pos_weight: list[float] | None = None,
        threshold: float = 0.2,
        class_threshold: float = 0.5,
        num_classes: int = 8,
        task: Literal["multiclass", "multilabel"] = "multiclass",
        class_names: list[str] | None = None,
        dataset_metric: Literal["default", "sonyc_ust_coarse", "sonyc_ust_fine", "clip_tagging"] = "default",
        dictionary: DictionaryArtifact | None = None,
        distill: bool = False,
        interpreter_init: str | None = None,
        interpret_options: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.interpret_options = check_interpret_options(interpret_options, "model.init_args.interpret_options",
                                                         block_evidence)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if distill and not classifier_checkpoint:
            raise ValueError("distill needs classifier_checkpoint (the black box to distil from)")
        fe, net, arch = _backbone(classifier_checkpoint, num_classes, task, backbone, backbone_kwargs, frontend,
                                  pretrained, class_names)
        self.save_hyperparameters(ignore=["dictionary", "frontend"])
        self.hparams["frontend"] = fe.config.to_dict()
        self.hparams["interpret_options"] = dict(self.interpret_options)
        dictionary = self.load_dictionary(dictionary, dictionary_path, fe.config, "ByDesignModule")
        self._embedded = embedded_bundle("bydesign", {**arch, "frontend": fe.config.to_dict()}, dictionary.to_dict())
        self.register_pos_weight(pos_weight, num_classes)
        self.task, self.num_classes, self.variant = task, num_classes, variant
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.set_loss_schedule(loss_weights, {
            **({} if distill else {"distillation": "needs model.init_args.distill: true (and classifier_checkpoint)"}),
            "block_gate": "is a loss of the post-hoc interpreter (block_gate), not the by-design model's"})
        self.model = ByDesignModel(fe, net, dictionary.W, num_classes, task=task, variant=variant, layers=layers,
                                   hidden=hidden, psi_dropout=psi_dropout, pooling=pooling,
                                   attention_dim=attention_dim, finetune_dictionary=finetune_dictionary,
                                   evidence=_evidence(dictionary, self.class_names, str(dictionary_path or "dictionary"),
                                                      True, block_evidence), theta_bias=theta_bias)
        self.hparams["layers"] = list(self.model.layers)
        self.hparams["loss_weights"] = self.schedule.to_dict()
        # the black box as it was (a second, frozen copy: the model's own backbone trains)
        self.teacher = ClassifierModule.load_frozen(classifier_checkpoint) if distill else None
        if interpreter_init:
            self._init_from_interpreter(interpreter_init)
        metrics = task_metrics(task, num_classes)
        self.train_metrics = metrics.clone(prefix="train/") if task == "multiclass" else None
        self.val_metrics, self.test_metrics = metrics.clone(prefix="val/"), metrics.clone(prefix="test/")
        self.init_official(dataset_metric, num_classes)
        if variant == "joint":
            fid = fidelity_metrics(task, num_classes, class_threshold)
            self.val_fidelity, self.test_fidelity = fid.clone(prefix="val/"), fid.clone(prefix="test/")

    def _init_from_interpreter(self, path: str) -> None:
        """Ψ and Θ from a post-hoc interpreter's weights (``interpreter.psi.*`` / ``interpreter.theta.*``)."""
        from pathlib import Path

        if not Path(path).is_file():
            raise FileNotFoundError(f"interpreter_init: no file {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        for part in ("psi", "theta"):
            prefix = f"interpreter.{part}."
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if not sub:
                raise ValueError(f"interpreter_init: {path} holds no post-hoc interpreter weights ({prefix}*)")
            try:
                getattr(self.model, part).load_state_dict(sub)
            except RuntimeError as err:
                raise ValueError(f"interpreter_init: {path}: its {part} does not fit this model "
                                 f"(same layers, hidden, pooling and dictionary needed): {str(err).splitlines()[0]}") from None

    def train(self, mode: bool = True) -> "ByDesignModule":
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the black box stays as it was
        return self

    # -- checkpoints -----------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The checkpoint carries the dictionary and the backbone's architecture: it loads alone, from any folder."""
        checkpoint[EMBEDDED_KEY] = self._embedded

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None, **kwargs):
        """A trained by-design model from its checkpoint or self-contained file, from any folder
        (:func:`l2i.bundle.read_interpreter`); ``classifier_checkpoint`` / ``dictionary_path`` give moved
        artifacts of an old checkpoint; other keyword arguments replace hyper-parameters."""
        kwargs.pop("weights_only", None)
        bundle = read_interpreter(checkpoint_path, classifier=kwargs.pop("classifier_checkpoint", None),
                                  dictionary=kwargs.pop("dictionary_path", None), verb="ByDesignModule", map_location="cpu")
        return cls.from_bundle(bundle, **kwargs).to(map_location or "cpu")

    @classmethod
    def from_bundle(cls, bundle: dict, **overrides) -> "ByDesignModule":
        """The module from :func:`l2i.bundle.read_interpreter`'s dict (no file read), eval mode."""
        import inspect

        if bundle["kind"] != "bydesign":
            raise ValueError(f"{bundle.get('source')}: a {bundle['kind']} model, not a by-design model")
        d = bundle["dictionary"]
        dictionary = DictionaryArtifact(W=d["dictionary"], frontend=d["frontend"], meta=d.get("meta") or {})
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "dictionary"}
        arch = {k: v for k, v in bundle["classifier"].items() if v is not None}
        # training-only options: the black box copy and the interpreter the model started from are not needed
        hp = {k: v for k, v in {**bundle["interpreter"], **arch, "classifier_checkpoint": None, "pretrained": None,
                                "distill": False, "interpreter_init": None, **overrides}.items() if k in accepted}
        model = cls(dictionary=dictionary, **hp)
        missing, unexpected = model.load_state_dict({f"model.{k}": v for k, v in bundle["state_dict"].items()}, strict=False)
        missing = [k for k in missing if not k.startswith(("train_", "val_", "test_"))]
        if missing or unexpected:
            from l2i.checkpoints import CheckpointError

            raise CheckpointError(f"{bundle.get('source')}: weights do not fit the model (missing {missing[:8]}, unexpected {unexpected[:8]})")
        return model.eval()

    # -- model ---------------------------------------------------------------------------------------------
    @property
    def frontend(self) -> AudioFrontEnd:
        return self.model.frontend

    def forward(self, waveform: torch.Tensor, sample_rate: int | None = None) -> PostHocOutput:
        return self.model(waveform, sample_rate)

    def as_classifier(self) -> FrozenClassifier:
        """The model's prediction as a :class:`~l2i.classifier.Classifier` (waveform -> logits; its ``backbone``
        classifies log-mel input) for the evaluation suite."""
        return FrozenClassifier(self.model.frontend, LogmelPredictor(self.model), self.task, self.num_classes,
                                self.class_names)

    def interpret(self, waveform: torch.Tensor, target=None, threshold: float | None = None, **kwargs) -> Interpretation:
        """The one verb, explaining the model's own prediction (see :meth:`PostHocInterpreter.interpret`); unset
        keyword arguments come from ``interpret_options``."""
        kwargs = merge_interpret_options(self.interpret_options, kwargs)
        kwargs.setdefault("class_threshold", self.hparams.class_threshold)
        return self.model.interpret(waveform, target, self.hparams.threshold if threshold is None else threshold, **kwargs)

    # -- training ------------------------------------------------------------------------------------------
    def loss_weights(self) -> dict[str, float]:
        weights = self.schedule.weights(int(self.current_epoch) if self._trainer is not None else 0)
        weights["task"] = 1.0
        if self.variant == "bottleneck":
            weights.pop("fidelity")
        return weights

    def _step(self, batch: dict, stage: str) -> torch.Tensor | None:
        if is_empty_batch(batch):
            return None  # every clip of this batch was skipped (reported by the DataModule)
        rate = self.batch_rate(batch)
        out = self(batch["waveform"], rate)
        target = batch["target"]
        teacher = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher = self.teacher(batch["waveform"])
        losses = bydesign_losses(out, target, self.task, self.variant, self.pos_weight, teacher)
        weights = self.loss_weights()
        total = sum(weights.get(name, 0.0) * value for name, value in losses.items())
        bs, on_step = target.shape[0], stage == "train"
        for name, value in losses.items():
            self.log(f"{stage}/{name}_loss", value, batch_size=bs, on_step=on_step, on_epoch=True, sync_dist=not on_step)
        self.log(f"{stage}/loss", total, batch_size=bs, prog_bar=True, on_step=on_step, on_epoch=True, sync_dist=not on_step)
        metrics = {"train": self.train_metrics, "val": self.val_metrics, "test": self.test_metrics}[stage]
        prediction = out.classifier_logits
        if metrics is not None:
            probs = prediction.softmax(-1) if self.task == "multiclass" else prediction.sigmoid()
            metrics.update(probs, target if self.task == "multiclass" else target.long())
            self.log_dict(metrics, prog_bar=stage == "val", on_step=False, on_epoch=True, batch_size=bs)
        self.update_official(stage, prediction.softmax(-1) if self.task == "multiclass" else prediction.sigmoid(), batch)
        if self.variant == "joint" and stage != "train":
            fid = self.val_fidelity if stage == "val" else self.test_fidelity
            fid.update(out.logits.detach(), prediction.detach())
            self.log_dict(fid, on_step=False, on_epoch=True, batch_size=bs)
        return total

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> Interpretation:
        return self.interpret(batch["waveform"])

    def configure_optimizers(self):
        return self.optimizer(self.model.trainable_parameters(), adamw=True, cosine=self.hparams.cosine)
