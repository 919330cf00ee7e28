"""The ``posthoc`` pipeline stage (``l2i demo``): train the interpreter of ``ctx.artifacts["classifier"]`` with the
dictionary ``ctx.artifacts["dictionary"]`` and score it on the synthetic test split with the project's one evaluator,
:func:`l2i.evaluation.evaluate_interpreter`: fidelity, faithfulness (probability drop when the chosen vs random
components are removed), L-MAC's mask metrics and the ground-truth report (per class present: interpretation vs
mixture, another class's interpretation, random / all components, ideal ratio mask; single- and multi-source
clips apart). Its figures land in the report as ``posthoc.<family>.<key>``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from experiments.interpret import write_interpretations

__all__ = ["learn_dictionary", "score_posthoc", "SCORE_DESCRIPTIONS", "posthoc_stage"]


# -- dictionary (fallback when no dictionary stage ran) ---------------------------------------------------


def learn_dictionary(frontend_config, dataset, *, n_clips: int = 400, n_components: int = 64, sparsity: float = 0.0,
                     max_iter: int = 100, seed: int = 0, batch_size: int = 64, per_class: bool = False,
                     noise_components: int = 0):
    """A :class:`~l2i.dictionary.DictionaryArtifact` learnt with :mod:`l2i.nmf` on ``V = log1p|X|`` of the first
    ``n_clips`` items of ``dataset``. Used by the ``posthoc`` stage when no dictionary artifact is given, and by
    the tests.

    * ``per_class=False``: one NMF of ``n_components`` on the mixtures' frames pooled.
    * ``per_class=True`` (docs/method.md's per-class dictionaries, a *choice*; needs items with ``sources`` and
      ``source_labels``, as the synthetic set has): ``n_components // C`` columns per class learnt on the
      isolated events of that class (non-silent frames), concatenated, plus ``noise_components`` columns learnt
      on the items' ``background``; ``meta["labels"]`` names each column's block.
    """
    from l2i.dictionary import NOISE_LABEL, DictionaryArtifact
    from l2i.frontend import AudioFrontEnd
    from l2i.nmf import NMF, concat_dictionaries, fit_per_class

    frontend = AudioFrontEnd(frontend_config)
    n = min(int(n_clips), len(dataset))
    if n < 1:
        raise ValueError("learn_dictionary: the dataset is empty")
    meta = {"n_components": n_components, "beta": 2, "sparsity": sparsity, "clips": n,
            "split": getattr(dataset, "split", None), "per_class": per_class}
    spec = lambda w: frontend.nmf_spectrogram(frontend.prepare(w))  # noqa: E731
    with torch.no_grad():
        if not per_class:
            V = torch.cat([spec(torch.stack([dataset[i]["waveform"] for i in range(s, min(n, s + batch_size))]))
                           for s in range(0, n, batch_size)])  # (n, F, T)
            result = NMF(n_components, sparsity=sparsity, max_iter=max_iter, seed=seed).fit(V)
            meta["objective"] = float(result.objective)
            return DictionaryArtifact(W=result.dictionary, frontend=frontend.config.spectral_params(), meta=meta)
        per: dict[int, list[torch.Tensor]] = {}
        noise: list[torch.Tensor] = []
        for i in range(n):
            item = dataset[i]
            if "sources" not in item or "source_labels" not in item:
                raise ValueError("learn_dictionary(per_class=True) needs items with 'sources' and 'source_labels'")
            labels = item["source_labels"].tolist()
            keep = [j for j, lab in enumerate(labels) if lab >= 0]
            if keep:
                Vs = spec(item["sources"][keep])  # (S, F, T)
                for j, V in zip(keep, Vs):
                    frames = V[:, V.sum(0) > 1e-3 * max(float(V.sum(0).max()), 1e-12)]
                    per.setdefault(labels[j], []).append(frames)
            if noise_components and "background" in item:
                noise.append(spec(item["background"][None])[0])
        classes = sorted(per)
        k = max(1, (n_components - noise_components) // max(len(classes), 1))
        names = list(getattr(dataset, "class_names", None) or []) or [str(c) for c in range(max(classes) + 1)]
        block = fit_per_class({names[c] if c < len(names) else str(c): torch.cat(per[c], dim=1) for c in classes}, k,
                              sparsity=sparsity, max_iter=max_iter, seed=seed)
        W, labels = block.dictionary, list(block.labels)
        if noise_components:
            Wn = NMF(noise_components, sparsity=sparsity, max_iter=max_iter, seed=seed + 1000).fit(torch.cat(noise, dim=1)).dictionary
            joined = concat_dictionaries({"noise": Wn, "events": W})
            W, labels = joined.dictionary, [NOISE_LABEL] * noise_components + labels
        meta.update(n_components=int(W.shape[1]), labels=labels)
        return DictionaryArtifact(W=W, frontend=frontend.config.spectral_params(), meta=meta)


# -- scoring ----------------------------------------------------------------------------------------------

#: what the non-family keys of :func:`score_posthoc` mean
SCORE_DESCRIPTIONS = {
    "threshold": "relevance threshold τ of the interpretations",
    "components_mean": "mean number of chosen components per interpretation",
    "clips": "test clips scored",
    "random_baseline": "1 when the random-component baselines were computed",
}


@torch.no_grad()
def score_posthoc(model, classifier_checkpoint: str, batches, *, threshold: float | None = None, mask_mode: str | None = None,
                  seed: int = 0, max_batches: int | None = None) -> dict:
    """The post-hoc interpreter ``model`` scored by :func:`l2i.evaluation.evaluate_interpreter` (no noise
    experiment), explaining the classifier of ``classifier_checkpoint``; ``mask_mode`` (default: the model's
    ``interpret_options``, else log1p) is passed to every ``interpret``. Returns the suite's flat ``family.key`` figures (but ``seconds``) plus ``threshold``."""
    from l2i.evaluation import evaluate_interpreter
    from lightning_modules.artifacts import load_artifact

    device = next(model.parameters()).device
    classifier = load_artifact(classifier_checkpoint, "classifier", map_location=device, verb="scoring an interpreter")
    tau = float(model.hparams.threshold if threshold is None else threshold)
    cls_thr = float(model.hparams.class_threshold)
    scores = evaluate_interpreter(model, classifier, batches, threshold=tau, thresholds=cls_thr, classifier_thresholds=cls_thr,
                                  noise_snr_db=None, seed=seed, max_batches=max_batches, device=device,
                                  interpret_kwargs={} if mask_mode is None else {"mask_mode": mask_mode})
    scores.pop("seconds", None)  # the stage reports its own eval_seconds
    scores["threshold"] = tau
    return scores


# -- the pipeline stage ----------------------------------------------------------------------------------


def _fallback_dictionary(ctx, dset: dict, out: Path, figures: dict) -> str:
    """Learn the posthoc stage's dictionary when no dictionary stage ran (:func:`learn_dictionary` with the settings
    ``dset`` on the synthetic ``nmf`` split); returns its path, also set as ``ctx.artifacts["dictionary"]``."""
    from datamodules.synthetic import SyntheticDataModule
    from lightning_modules.artifacts import load_artifact

    start = time.perf_counter()
    clf = load_artifact(ctx.artifacts["classifier"], "classifier", verb="the posthoc stage")
    dm_nmf = SyntheticDataModule(seed=ctx.seed, num_classes=clf.num_classes, mode=clf.task,
                                 sample_rate=clf.frontend.config.sample_rate)
    art = learn_dictionary(clf.frontend.config, dm_nmf.dataset("nmf", size=int(dset.get("n_clips", 400))),
                           n_components=int(dset.get("n_components", 64)), sparsity=float(dset.get("sparsity", 0.0)),
                           max_iter=int(dset.get("max_iter", 100)), seed=ctx.seed, n_clips=int(dset.get("n_clips", 400)),
                           per_class=bool(dset.get("per_class", False)), noise_components=int(dset.get("noise_components", 0)))
    dictionary_path = str(art.save(out / "dictionary.pt"))
    ctx.artifacts["dictionary"] = dictionary_path
    figures["dictionary_seconds"] = round(time.perf_counter() - start, 2)
    ctx.descriptions["posthoc.dictionary_seconds"] = "time to learn the fallback NMF dictionary (no dictionary stage ran)"
    return dictionary_path


def _write_examples(model, dm, n_examples: int, out: Path, threshold: float | None) -> None:
    """The interpretations of the first ``n_examples`` test clips as files (:func:`write_interpretations`)."""
    if n_examples <= 0:
        return
    test = dm.dataset("test") if hasattr(dm, "dataset") else dm.test_dataloader().dataset
    items = [test[i] for i in range(min(n_examples, len(test)))]
    write_interpretations(model, torch.stack([x["waveform"] for x in items]), [x.get("id", str(i)) for i, x in enumerate(items)],
                          out, threshold=threshold)


def posthoc_stage(ctx, settings: dict) -> dict:
    """Train the post-hoc interpreter of the demo classifier and score it on the synthetic test split.

    settings:
        config: posthoc LightningCLI config (default ``experiments/synthetic/posthoc.yaml``).
        overrides: extra CLI arguments (list).
        threshold: relevance threshold τ for the evaluation (default: the model's).
        mask_mode: ``log1p`` or ``share`` (default: the model's ``interpret_options``, else ``log1p``).
        max_batches: test batches scored (default all).
        examples: number of test clips whose interpretations are written (WAV/JSON/PNG), default 4.
        dictionary: when ``ctx.artifacts`` has no ``dictionary``: settings of :func:`learn_dictionary`
            (``n_components``, ``sparsity``, ``n_clips``, ``max_iter``), learnt on the ``nmf`` split.
    """
    from experiments.cli import lightning_cli

    if "classifier" not in ctx.artifacts:
        raise ValueError("posthoc stage: no classifier artifact; run the 'classifier' stage first")
    out = ctx.stage_dir("posthoc")
    dictionary_path = ctx.artifacts.get("dictionary")
    args = ["--config", settings.get("config", "experiments/synthetic/posthoc.yaml")]
    args += ["--seed_everything", str(ctx.seed), "--trainer.default_root_dir", str(out)]
    args += ["--trainer.logger.init_args.save_dir", str(ctx.out_dir), "--trainer.logger.init_args.name", "posthoc"]
    args += ["--model.init_args.classifier_checkpoint", str(ctx.artifacts["classifier"])]
    figures: dict[str, Any] = {}
    if not dictionary_path:
        dictionary_path = _fallback_dictionary(ctx, dict(settings.get("dictionary") or {}), out, figures)
    args += ["--model.init_args.dictionary_path", str(dictionary_path)]
    args += [str(a) for a in settings.get("overrides", [])]
    cli = lightning_cli(args, run=False)
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    figures["train_seconds"] = round(time.perf_counter() - start, 2)
    ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    final = out / "interpreter.ckpt"
    if ckpt:
        shutil.copyfile(ckpt, final)
        from lightning_modules.artifacts import load_artifact

        model = load_artifact(final, "posthoc", verb="the posthoc stage")
    else:
        trainer.save_checkpoint(final)
    ctx.artifacts["interpreter"] = str(final)
    from experiments.stages import finish_loggers

    finish_loggers(trainer)
    (out / "config.yaml").write_text(yaml.safe_dump({"args": args}, sort_keys=False))
    model.eval()
    dm.setup("test")
    start = time.perf_counter()
    scores = score_posthoc(model, ctx.artifacts["classifier"], dm.test_dataloader(), threshold=settings.get("threshold"),
                           mask_mode=settings.get("mask_mode"), seed=ctx.seed, max_batches=settings.get("max_batches"))
    figures["eval_seconds"] = round(time.perf_counter() - start, 2)
    _write_examples(model, dm, int(settings.get("examples", 4)), out / "examples", settings.get("threshold"))
    from l2i.evaluation import DESCRIPTIONS

    for key, value in scores.items():
        figures[key] = value
        family = key.split(".")[0]
        ctx.descriptions[f"posthoc.{key}"] = DESCRIPTIONS.get(family, SCORE_DESCRIPTIONS.get(key, ""))
    ctx.descriptions["posthoc.train_seconds"] = "interpreter training time (s)"
    ctx.descriptions["posthoc.eval_seconds"] = "evaluation time on the test split (s)"
    figures["epochs"] = int(trainer.current_epoch)
    figures["checkpoint"] = str(final)
    ctx.descriptions["posthoc.checkpoint"] = "trained post-hoc interpreter"
    return figures
