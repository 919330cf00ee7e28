"""PostHocInterpreterModule: trains Ψ and Θ (and optionally W) to explain a frozen classifier (L2I stage 2a).

``training_step`` reads like the loss of docs/method.md::

    total = λ_rec · reconstruction + λ_fid · fidelity + λ_spa · sparsity (+ λ_θ · theta_sparsity, optional)

with the λ's from an epoch schedule (``loss_weights``, default the authors' ESC-50 schedule). The pure-torch
model is :class:`l2i.interpreter.posthoc.PostHocInterpreter`; this class only loads the artifacts, logs and
optimises.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

import torch
import torchmetrics
from lightning.pytorch.utilities import rank_zero_warn

from l2i.bundle import EMBEDDED_KEY, embedded_bundle, read_interpreter
from l2i.dictionary import DictionaryArtifact, theta_evidence as _evidence
from l2i.evaluation.fidelity import fidelity_metrics
from l2i.interpreter.interpretation import Interpretation
from l2i.interpreter.posthoc import (PostHocInterpreter, PostHocOutput, check_interpret_options,
                                    merge_interpret_options)
from l2i.interpreter.protocol import get_protocol, interpreter_options
from lightning_modules.base import L2IModule

__all__ = ["PostHocInterpreterModule", "collapsed"]


#: Θ's logits within this of each other on a clip count as "no decision" (a collapsed interpreter)
COLLAPSE_TOL = 1e-6


def collapsed(logits: torch.Tensor, activations: torch.Tensor | None = None) -> torch.Tensor:
    """``(B,)`` bool: clips on which the interpreter decides nothing: Θ's logits all equal (within
    :data:`COLLAPSE_TOL`), or every activation of ``H (B, K, T)`` zero."""
    flat = (logits.max(-1).values - logits.min(-1).values) <= COLLAPSE_TOL
    if activations is not None:
        flat = flat | (activations.flatten(1).abs().amax(-1) == 0)
    return flat


class PostHocInterpreterModule(L2IModule):
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
            background. Not in the paper (it has no noise block). On the synthetic default it raises the
            interpretation's SI-SDR against the true target and the mask's sparseness (SPS) at the same fidelity;
            the measured figures, with their setting, are the README's (section "Headline figures").
        block_evidence: Θ tied to the dictionary's class blocks (labels = the class names, from
            ``nmf.per_class_components``): class c's logit comes from c's block only, so its relevance, chosen
            components and interpretation stay inside c's block; noise and shared columns carry no evidence.
            Not in the paper. See the README section "Real recordings" for what it buys.
        theta_bias: a per-class offset in Θ's logits, outside the relevance. Not in the paper; with
            ``block_evidence`` on multilabel data it lets a class be absent with its block silent instead of
            through negative weights on its own components (which would drop them from its interpretation).
        block_gate: ``soft`` | ``hard`` (with ``block_evidence``): the classifier-gated block loss
            (:func:`~l2i.interpreter.posthoc.gated_block_loss`, weighted as ``block_gate`` in ``loss_weights``):
            class c's block is penalised where the classifier does not detect c (``hard``: probability at most
            ``block_gate_threshold``; ``soft``: in proportion to 1 - p_c), so Ψ's own activations explain the clip
            with the detected classes' blocks. Not in the paper; default ``None``: no such loss.
        block_gate_threshold: the ``hard`` gate's threshold (default 0.2).
        loss_weights: ``{loss: {first_epoch: λ}}`` for ``fidelity`` / ``reconstruction`` / ``sparsity`` and
            the optional ``theta_sparsity`` (L1 on Θ's class weights, see
            :func:`~l2i.interpreter.posthoc.interpreter_losses`; 0 unless named) and ``block_gate``
            (default :data:`~l2i.interpreter.posthoc.AUTHORS_ESC50_SCHEDULE`).
        lr, weight_decay: Adam settings (authors: lr 2e-4 ESC-50, 5e-4 SONYC-UST).
        threshold: relevance threshold τ used by :meth:`interpret` by default.
        class_threshold: multilabel decision threshold for "the classifier's prediction".
        num_classes, task, class_names: the DataModule's label space (linked by the CLI); checked against the
            classifier's, never used to override it.
        classifier, dictionary: in-memory objects instead of the paths (tests, notebooks); not saved in
            hparams — a checkpoint made this way needs the paths to be reloaded.
        protocol: ``project`` (default) or ``authors``: fills every option below left unset (``None``), and
            ``loss_weights`` when unset, from :data:`~l2i.interpreter.protocol.PROTOCOLS` — ``authors`` is the
            authors' code as they ran it (their schedule, Ψ, taps, Θ dropout, top-5 interpretations).
        psi_variant: ``project`` | ``authors`` (see :class:`~l2i.interpreter.psi.AuthorsPsi`).
        skip_last_layers: with ``layers`` unset, tap the three blocks before the last ``skip_last_layers``.
        attention_dropout: dropout on Θ's attention-branch input (the authors: 0.4 on ESC-50, 0 on SONYC-UST).
        top_k: at most this many components per interpretation (0: no cap).
        share_eps: floor of ``W H`` in each component's share.
        interpret_options: keyword arguments :meth:`interpret` uses by default (an explicit argument wins; kept in
            the checkpoint, so ``l2i evaluate`` / ``l2i interpret`` / :func:`l2i.load_interpreter` use them too):
            ``mask_mode``, ``relevance_weighted``, ``top_k``, ``refine_iters``, ``refine_gate``, ``refine_init``,
            ``refine_beta``, ``block_components``, ``class_threshold``, ``mask_power`` (see
            :meth:`PostHocInterpreter.interpret`). Default empty: the authors' interpretation. The real-recording
            recipe (``experiments/instruments/posthoc_blocks.yaml``) sets ``{mask_mode: share, refine_iters: 150,
            refine_gate: interpreter, refine_init: uniform, refine_beta: 1, class_threshold: 0.1,
            block_components: true}``. Not used in training.
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
        block_gate: Literal["soft", "hard"] | None = None,
        block_gate_threshold: float = 0.2,
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
        protocol: str = "project",
        psi_variant: str | None = None,
        skip_last_layers: int | None = None,
        attention_dropout: float | None = None,
        top_k: int | None = None,
        share_eps: float | None = None,
        interpret_options: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["classifier", "dictionary"])
        self.interpret_options = check_interpret_options(interpret_options, "model.init_args.interpret_options",
                                                         block_evidence)
        self.hparams["interpret_options"] = dict(self.interpret_options)
        preset = get_protocol(protocol)
        if loss_weights is None:
            loss_weights = preset.loss_weights
        options = interpreter_options(preset, psi_variant=psi_variant, skip_last_layers=skip_last_layers,
                                      attention_dropout=attention_dropout, top_k=top_k, share_eps=share_eps)
        classifier, dictionary = self._artifacts(classifier, classifier_checkpoint, dictionary, dictionary_path)
        self.check_label_space(classifier, num_classes, task, classifier_checkpoint)
        self.set_loss_schedule(loss_weights, {
            **({"block_gate": "needs model.init_args.block_gate (soft or hard) and block_evidence: true"}
               if block_gate is None else {}),
            "distillation": "is a loss of the by-design model (ByDesignModule, distill: true)"})
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
            block_gate=block_gate,
            block_gate_threshold=block_gate_threshold,
            **options,
        )
        self.hparams["layers"] = list(self.interpreter.layers)
        self.hparams["loss_weights"] = self.schedule.to_dict()
        metrics = fidelity_metrics(self.task, self.num_classes, class_threshold)
        self.train_fidelity = metrics.clone(prefix="train/")
        self.val_fidelity = metrics.clone(prefix="val/")
        self.test_fidelity = metrics.clone(prefix="test/")

    def _artifacts(self, classifier, classifier_checkpoint: str | None, dictionary: DictionaryArtifact | None,
                   dictionary_path: str | None):
        """The classifier (frozen, eval mode) and the dictionary (its front-end checked against the classifier's);
        sets what the checkpoint carries besides the weights, so it loads from any folder (see on_save_checkpoint)."""
        from lightning_modules.classifier import frozen_classifier

        classifier = frozen_classifier(classifier, classifier_checkpoint, "PostHocInterpreterModule")
        classifier.eval()
        classifier.requires_grad_(False)
        dictionary = self.load_dictionary(dictionary, dictionary_path, classifier.frontend.config, "PostHocInterpreterModule")
        clf_hparams = getattr(classifier, "hparams", None)
        self._embedded = (embedded_bundle("posthoc", dict(clf_hparams), dictionary.to_dict())
                          if clf_hparams is not None and "backbone" in clf_hparams else None)
        return classifier, dictionary

    # -- checkpoints ---------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The checkpoint carries the classifier's architecture and the dictionary (the classifier's weights are
        in the state dict already): it loads alone, from any folder."""
        if self._embedded is not None:
            checkpoint[EMBEDDED_KEY] = self._embedded

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None, **kwargs):
        """A trained interpreter from its checkpoint or self-contained file, from any folder
        (:func:`l2i.bundle.read_interpreter`: safe loading, the stored class checked, artifacts found
        relative to the checkpoint). ``classifier_checkpoint`` / ``dictionary_path`` give moved artifacts of an
        old checkpoint; other keyword arguments replace hyper-parameters (e.g. ``threshold``)."""
        kwargs.pop("weights_only", None)
        bundle = read_interpreter(checkpoint_path, classifier=kwargs.pop("classifier_checkpoint", None),
                                  dictionary=kwargs.pop("dictionary_path", None), verb="PostHocInterpreterModule",
                                  map_location="cpu")
        return cls.from_bundle(bundle, **kwargs).to(map_location or "cpu")

    @classmethod
    def from_bundle(cls, bundle: dict, **overrides) -> "PostHocInterpreterModule":
        """The module from :func:`l2i.bundle.read_interpreter`'s dict (no file read), eval mode."""
        import inspect

        from lightning_modules.classifier import ClassifierModule

        if bundle["kind"] != "posthoc":
            raise ValueError(f"{bundle.get('source')}: a {bundle['kind']} model, not a post-hoc interpreter")
        classifier = ClassifierModule(**{**bundle["classifier"], "pretrained": None})
        d = bundle["dictionary"]
        dictionary = DictionaryArtifact(W=d["dictionary"], frontend=d["frontend"], meta=d.get("meta") or {})
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "classifier", "dictionary"}
        hp = {k: v for k, v in {**bundle["interpreter"], **overrides}.items() if k in accepted}
        model = cls(classifier=classifier, dictionary=dictionary, **hp)
        missing, unexpected = model.load_state_dict({f"interpreter.{k}": v for k, v in bundle["state_dict"].items()}, strict=False)
        missing = [k for k in missing if not k.startswith(("train_fidelity", "val_fidelity", "test_fidelity"))]
        if missing or unexpected:
            from l2i.checkpoints import CheckpointError

            raise CheckpointError(f"{bundle.get('source')}: weights do not fit the model (missing {missing[:8]}, unexpected {unexpected[:8]})")
        return model.eval()

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
        """The one verb (see :meth:`PostHocInterpreter.interpret`); ``threshold`` defaults to ``hparams.threshold``.

        ``waveform (B, N)`` is B clips of one length at the model's rate; keyword arguments: ``sample_rate`` (the
        waveform's rate when it differs: resampled), ``mask_mode`` (``log1p`` | ``share``), ``relevance_weighted``,
        ``class_threshold``, ``components``, the refinement options; unset ones come from ``interpret_options``.
        For one clip of any length, rate and channel layout use :meth:`l2i.trained.TrainedInterpreter.explain`
        (``l2i.load_interpreter``)."""
        kwargs = merge_interpret_options(self.interpret_options, kwargs)
        kwargs.setdefault("class_threshold", self.hparams.class_threshold)
        return self.interpreter.interpret(
            waveform, target, self.hparams.threshold if threshold is None else threshold, **kwargs
        )

    # -- training ----------------------------------------------------------------------------------------
    def loss_weights(self) -> dict[str, float]:
        return self.schedule.weights(int(self.current_epoch) if self._trainer is not None else 0)

    def _step(self, batch: dict, stage: str, metrics: torchmetrics.MetricCollection) -> torch.Tensor:
        out = self(batch["waveform"], self.batch_rate(batch))
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
        metrics.update(out.logits.detach(), out.classifier_logits.detach())
        self.log_dict(metrics, prog_bar=stage != "train", on_step=False, on_epoch=True, batch_size=bs)
        self.log(f"{stage}/collapsed", collapsed(out.logits, out.activations).float().mean(), batch_size=bs,
                 on_step=False, on_epoch=True)
        if not torch.isfinite(total):
            raise FloatingPointError(f"{stage} loss is not finite: " + ", ".join(f"{k}={float(v):.4g}" for k, v in losses.items()))
        return total

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", self.train_fidelity)

    def on_validation_epoch_end(self) -> None:
        share = self.trainer.callback_metrics.get("val/collapsed") if self._trainer is not None else None
        if share is not None and not self.trainer.sanity_checking and float(share) > 0.5:
            rank_zero_warn(
                f"{type(self).__name__}: the interpreter has collapsed on {float(share):.0%} of the validation clips "
                "(Θ's logits constant or every activation zero): its fidelity is 0 there, and its interpretations "
                "are empty. Lower the learning rate (model.init_args.lr) or check the loss weights.")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val", self.val_fidelity)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test", self.test_fidelity)

    def predict_step(self, batch: dict, batch_idx: int) -> Interpretation:
        return self.interpret(batch["waveform"], sample_rate=self.batch_rate(batch))

    def configure_optimizers(self):
        return self.optimizer(self.interpreter.trainable_parameters())
