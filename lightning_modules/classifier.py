"""ClassifierModule: the black box f — front-end + CNN backbone on log-mel input."""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
import torchmetrics

from l2i.backbones import (
    build_backbone,
    capture_hidden,
    finetune_param_groups,
    prepare_for_device,
    set_frozen_batchnorm_eval,
)
from l2i.checkpoints import CheckpointError, safe_load
from l2i.frontend import AudioFrontEnd, Features, FrontEndConfig
from lightning_modules.base import L2IModule

__all__ = ["ClassifierModule", "task_metrics", "official_metric", "is_empty_batch", "OfficialMetricMixin",
           "frozen_classifier"]


def is_empty_batch(batch: dict | None) -> bool:
    """True when every clip of a batch was skipped (``on_bad_file: skip``): the step is then skipped too."""
    return not batch or batch.get("waveform") is None or batch["waveform"].shape[0] == 0


def official_metric(name: str, num_classes: int):
    """The official metric of a data set, on top of :func:`task_metrics`, or None for ``default``.

    ``sonyc_ust_coarse`` / ``sonyc_ust_fine``: DCASE 2020 task 5 micro/macro-AUPRC and micro-F1
    (:class:`l2i.metrics.sonyc.SONYCUSTMetric`; fine level reads the batch's ``target_x`` when the X tags are
    not classes); ``clip_tagging``: clip-level macro ROC-AUC / PR-AUC of chunk-averaged predictions
    (:class:`l2i.metrics.tagging.ClipTaggingMetrics`, reads the batch's ``clip_index``; MagnaTagATune,
    MTG-Jamendo).
    """
    if name == "default":
        return None
    if name in ("sonyc_ust_coarse", "sonyc_ust_fine"):
        from l2i.metrics.sonyc import SONYCUSTMetric

        return SONYCUSTMetric(level=name.rsplit("_", 1)[1])
    if name == "clip_tagging":
        from l2i.metrics.tagging import ClipTaggingMetrics

        return ClipTaggingMetrics(num_classes)
    raise ValueError(f"dataset_metric must be default|sonyc_ust_coarse|sonyc_ust_fine|clip_tagging, got {name!r}")


def task_metrics(task: str, num_classes: int) -> torchmetrics.MetricCollection:
    """The metrics of a task, as a collection (DDP-synced by torchmetrics).

    multiclass: ``accuracy`` (top-1, micro), ``macro_accuracy``; multilabel: ``map`` (macro average
    precision = mAP / macro AUPRC), ``auroc`` (macro), ``f1`` (micro, threshold 0.5).
    """
    if task == "multiclass":
        return torchmetrics.MetricCollection(
            {
                "accuracy": torchmetrics.Accuracy(task="multiclass", num_classes=num_classes),
                "macro_accuracy": torchmetrics.Accuracy(task="multiclass", num_classes=num_classes, average="macro"),
            }
        )
    if task == "multilabel":
        return torchmetrics.MetricCollection(
            {
                "map": torchmetrics.AveragePrecision(task="multilabel", num_labels=num_classes, average="macro"),
                "auroc": torchmetrics.AUROC(task="multilabel", num_labels=num_classes, average="macro"),
                "f1": torchmetrics.F1Score(task="multilabel", num_labels=num_classes, average="micro"),
            }
        )
    raise ValueError(f"task must be multiclass|multilabel, got {task!r}")


class OfficialMetricMixin:
    """Adds a data set's official metric (:func:`official_metric`) to a LightningModule: call
    :meth:`init_official` in ``__init__`` and :meth:`update_official` in the validation / test steps; the
    figures are logged as ``val/<key>`` / ``test/<key>`` at the epoch's end."""

    def init_official(self, name: str, num_classes: int) -> None:
        self.official_name = name
        self.val_official = official_metric(name, num_classes)
        self.test_official = official_metric(name, num_classes)

    def update_official(self, stage: str, probabilities: torch.Tensor, batch: dict) -> None:
        official = {"val": self.val_official, "test": self.test_official}.get(stage)
        if official is None:
            return
        extra = batch.get("clip_index") if self.official_name == "clip_tagging" else batch.get("target_x")
        if self.official_name == "clip_tagging" and extra is None:
            raise ValueError("dataset_metric clip_tagging needs the batch key 'clip_index' (a chunked DataModule)")
        official.update(probabilities.detach(), batch["target"], extra)

    def _log_official(self, stage: str) -> None:
        official = {"val": self.val_official, "test": self.test_official}[stage]
        if official is None or not official.update_called:
            return
        for key, value in official.compute().items():
            self.log(f"{stage}/{key}", value, sync_dist=False)  # already reduced across processes by torchmetrics
        official.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_official("val")

    def on_test_epoch_end(self) -> None:
        self._log_official("test")


class ClassifierModule(OfficialMetricMixin, L2IModule):
    """f(x): waveform ``(B, samples)`` -> logits ``(B, num_classes)``.

    Args:
        backbone: registered backbone name (``l2i.backbones.BACKBONES``), e.g. ``small_cnn``.
        backbone_kwargs: extra arguments for the backbone factory.
        frontend: STFT / log-mel parameters (the classifier's input; the dictionary must match them).
        task: ``multiclass`` (cross-entropy) or ``multilabel`` (binary cross-entropy).
        num_classes: number of classes (linked from the DataModule by the CLI).
        class_names: optional names, kept in the checkpoint for reports.
        lr, weight_decay: AdamW settings; ``max_epochs``-long cosine decay when ``cosine`` is on.
        pos_weight: optional per-class positive weights for multilabel BCE.
        pretrained: path of a backbone checkpoint (e.g. PANNs ``Cnn14_mAP=0.431.pth``) loaded with
            ``weights_only=True``; every parameter outside the new head must match by name and shape.
        finetune: which parameters train: ``head`` (the new head only), ``last_blocks`` (the head and the
            last ``last_blocks`` blocks), ``all``. Frozen blocks keep their batch-norm statistics.
        pretrained_lr_scale: learning-rate factor of the trainable pretrained blocks (default 0.1 with a
            ``pretrained`` file, 1.0 from scratch).
        channels_last, compile: device speed-ups (:func:`l2i.backbones.prepare_for_device`); mixed precision
            is the trainer's ``precision`` (e.g. ``bf16-mixed``).
        dataset_metric: the data set's official metric at validation and test,
            logged as ``val/<key>`` / ``test/<key>`` (:func:`official_metric`).
    """

    def __init__(
        self,
        backbone: str = "small_cnn",
        backbone_kwargs: dict[str, Any] | None = None,
        frontend: FrontEndConfig | None = None,
        task: Literal["multiclass", "multilabel"] = "multiclass",
        num_classes: int = 8,
        class_names: list[str] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        cosine: bool = True,
        pos_weight: list[float] | None = None,
        pretrained: str | None = None,
        finetune: Literal["head", "last_blocks", "all"] = "all",
        last_blocks: int = 2,
        pretrained_lr_scale: float | None = None,
        channels_last: bool = False,
        compile: bool = False,
        dataset_metric: Literal["default", "sonyc_ust_coarse", "sonyc_ust_fine", "clip_tagging"] = "default",
    ):
        super().__init__()
        frontend_cfg = FrontEndConfig.from_any(frontend)
        self.save_hyperparameters(ignore=["frontend"])
        self.hparams["frontend"] = frontend_cfg.to_dict()  # plain dict: checkpoints load with weights_only
        self.task = task
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.frontend = AudioFrontEnd(frontend_cfg)
        self.backbone = build_backbone(
            backbone, n_mels=frontend_cfg.n_mels, num_classes=num_classes, pretrained=pretrained, **(backbone_kwargs or {})
        )
        if finetune not in ("head", "last_blocks", "all"):
            raise ValueError(f"finetune must be head|last_blocks|all, got {finetune!r}")
        if pretrained_lr_scale is None:
            pretrained_lr_scale = 0.1 if pretrained else 1.0
        # sets requires_grad now, so the frozen part is frozen from the first step (and in checkpoints' hparams)
        self._param_groups = finetune_param_groups(
            self.backbone, finetune, lr, pretrained_lr_scale=pretrained_lr_scale, last_blocks=last_blocks
        )
        prepare_for_device(self.backbone, channels_last=channels_last, compile=compile)
        self.register_pos_weight(pos_weight, num_classes)
        metrics = task_metrics(task, num_classes)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.train_metrics = metrics.clone(prefix="train/") if task == "multiclass" else None
        self.init_official(dataset_metric, num_classes)

    # -- the black box --------------------------------------------------------------------------------
    @property
    def layer_names(self) -> Sequence[str]:
        """Hidden layers an interpreter may tap (names inside ``self.backbone``)."""
        return tuple(getattr(self.backbone, "layer_names", ()))

    def features(self, waveform: torch.Tensor, sample_rate: int | None = None) -> Features:
        """Front-end on the device: ``(B, samples)`` -> :class:`~l2i.frontend.Features`."""
        return self.frontend(waveform, sample_rate)

    def forward(self, waveform: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """``(B, samples)`` -> logits ``(B, C)``."""
        return self.backbone(self.features(waveform, sample_rate).logmel)

    def hidden(self, logmel: torch.Tensor, layers: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the named hidden maps for a log-mel batch ``(B, n_mels, T)``."""
        with capture_hidden(self.backbone, layers) as maps:
            logits = self.backbone(logmel)
        return logits, dict(maps)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(-1) if self.task == "multiclass" else logits.sigmoid()

    # -- training -------------------------------------------------------------------------------------
    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.task == "multiclass":
            return F.cross_entropy(logits, target)
        return F.binary_cross_entropy_with_logits(logits, target.float(), pos_weight=self.pos_weight)

    def _step(self, batch: dict, metrics: torchmetrics.MetricCollection | None, stage: str) -> torch.Tensor | None:
        if is_empty_batch(batch):
            return None  # every clip of this batch was skipped (reported by the DataModule)
        logits = self(batch["waveform"], self.batch_rate(batch))
        target = batch["target"]
        loss = self.loss(logits, target)
        bs = target.shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", batch_size=bs, sync_dist=stage != "train")
        if metrics is not None:
            metrics.update(self.probabilities(logits), target if self.task == "multiclass" else target.long())
            self.log_dict(metrics, prog_bar=stage == "val", batch_size=bs, on_step=False, on_epoch=True)
        self.update_official(stage, self.probabilities(logits), batch)
        return loss

    def on_train_epoch_start(self) -> None:
        # Lightning puts the whole model in train mode each epoch: frozen blocks go back to eval (their BN stats stay)
        set_frozen_batchnorm_eval(self.backbone)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, self.train_metrics, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, self.val_metrics, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, self.test_metrics, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        logits = self(batch["waveform"], self.batch_rate(batch))
        return {"id": batch.get("id"), "logits": logits, "probabilities": self.probabilities(logits)}

    def configure_optimizers(self):
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in self._param_groups]
        return self.optimizer([g for g in groups if g["params"]], adamw=True, cosine=self.hparams.cosine)

    @classmethod
    def load_frozen(cls, checkpoint_path: str, map_location: str | torch.device = "cpu") -> "ClassifierModule":
        """Load a trained classifier for interpretation: eval mode, no gradients (batch-norm frozen).

        Read with ``weights_only=True`` (:func:`l2i.checkpoints.safe_load`): a file carrying pickled code is
        refused with a clear message. The checkpoint holds the trained weights, so the ``pretrained`` file it
        was started from is not read again."""
        ckpt = safe_load(checkpoint_path, map_location=map_location, what="classifier checkpoint")
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
            raise CheckpointError(f"classifier checkpoint {checkpoint_path}: not a Lightning checkpoint of a ClassifierModule "
                                  "(needs 'state_dict' and 'hyper_parameters')")
        hparams = {k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}
        model = cls(**{**hparams, "pretrained": None})
        missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
        if missing or unexpected:
            raise CheckpointError(f"classifier checkpoint {checkpoint_path}: weights do not fit the model its "
                                  f"hyper-parameters describe (missing {missing[:5]}, unexpected {unexpected[:5]})")
        model.to(map_location)
        model.eval()
        model.requires_grad_(False)
        return model


def frozen_classifier(classifier: Any, classifier_checkpoint: str | None, owner: str) -> Any:
    """The classifier an interpreter explains: ``classifier`` (in memory), else the :class:`ClassifierModule` of
    ``classifier_checkpoint`` loaded frozen (:meth:`ClassifierModule.load_frozen`); ``ValueError`` naming ``owner``
    when neither is given."""
    if classifier is None:
        if not classifier_checkpoint:
            raise ValueError(f"{owner} needs classifier_checkpoint (path of a trained classifier)")
        classifier = ClassifierModule.load_frozen(classifier_checkpoint)
    return classifier
