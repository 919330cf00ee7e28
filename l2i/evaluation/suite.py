"""The evaluation suite in one call: :func:`evaluate_interpreter` runs every metric family of
:mod:`l2i.evaluation` over a dataloader and returns one flat dict (``"<family>.<key>" -> float``).

Per batch (``waveform (B, N)``; ``target``; optional ``sources``/``source_labels`` for ground truth):

1. ``interp = interpreter.interpret(waveform, None, threshold)``: explains the classifier's prediction;
   :class:`~l2i.evaluation.fidelity.Fidelity` on ``interp.logits`` vs the classifier's logits;
2. random baseline (when ``interpret`` takes ``components=``): the same classes explained with as many random
   components (:func:`~l2i.interpreter.interpretation.random_components`);
3. :class:`~l2i.evaluation.faithfulness.Faithfulness` (residual waveforms through the classifier) and
   :class:`~l2i.evaluation.mask.MaskMetrics` (L-MAC's AI/AD/AG/FF/FidIn/SPS/COMP on the masked spectrogram);
4. ground truth (when the batch has sources): every class **present** in the clip is explained
   (:func:`~l2i.evaluation.ground_truth.present_classes`) and scored by
   :class:`~l2i.evaluation.ground_truth.GroundTruth` against its true source, next to the mixture, another
   present class's interpretation (specificity), random active components, all components and the ideal
   ratio mask; single- and multi-source clips apart;
5. noise robustness, per SNR in ``noise_snr_db``: the noisy clips are explained for the same classes as the
   clean ones (the true classes when sources are known) and scored by
   :class:`~l2i.evaluation.noise.NoiseRobustness`.

Keys: ``fidelity.*``, ``faithfulness.*``, ``lmac.*``, ``ground_truth.<all|single|multi>.*``, ``noise_<snr>dB.*``,
``components_mean``, ``clips``, ``seconds``. :func:`results_markdown` renders them as a table,
:func:`ground_truth_markdown` the ground-truth report as the table of estimates, :data:`DESCRIPTIONS` explains
each family. This is the project's one evaluator: the post-hoc and by-design stages, ``l2i evaluate`` and the
benchmark all call :func:`evaluate_interpreter`.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Iterable, Sequence

import torch
from torch import Tensor

from l2i.evaluation.common import can_classify_magnitude, classify_waveform, supports_components
from l2i.evaluation.faithfulness import Faithfulness
from l2i.evaluation.fidelity import Fidelity
from l2i.evaluation.ground_truth import (
    SUBSETS,
    GroundTruth,
    class_sources,
    present_classes,
    random_active_components,
    si_sdr,
)
from l2i.evaluation.mask import MaskMetrics
from l2i.evaluation.noise import NoiseRobustness, add_white_noise
from l2i.interpreter.interpretation import random_components

__all__ = ["evaluate_interpreter", "tune_interpreter_thresholds", "results_markdown", "ground_truth_markdown", "GROUND_TRUTH_ROWS", "DESCRIPTIONS",
           "noise_prefix"]

DESCRIPTIONS = {
    "fidelity": "agreement of the interpreter's prediction Θ(H) with the classifier's (fraction)",
    "faithfulness": "drop of f's logit / probability of the explained class when the chosen (vs as many random) components are removed",
    "lmac": "L-MAC's mask metrics: AI, AD, AG, FF, FidIn in %; SPS (Gini) and COMP (entropy, nats)",
    "ground_truth": "per (clip, class present) pair, SI-SDR (dB) against the class's true source of its interpretation, the mixture, another present class's interpretation (specificity: share of pairs where the own is closer), random active / all components and the ideal ratio mask; all, single- and multi-source clips",
    "noise": "change of fidelity, relevance of the chosen components and SI-SDR under white noise",
}


def noise_prefix(snr_db: float) -> str:
    v = float(snr_db)
    return f"noise_{int(v) if v.is_integer() else v}dB"


def _task_of(interpreter, classifier, task: str | None) -> str:
    for obj in (task, getattr(classifier, "task", None), getattr(interpreter, "task", None)):
        if obj in ("multiclass", "multilabel"):
            return obj
    raise ValueError("evaluate_interpreter: cannot tell the task; pass task='multiclass' or 'multilabel'")


def _device_of(module, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    try:
        return next(module.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return torch.device("cpu")


def _interpret(interpreter, waveform, target, threshold, components=None, **kwargs):
    if components is not None:
        kwargs["components"] = components
    return interpreter.interpret(waveform, target=target, threshold=threshold, **kwargs)


@torch.no_grad()
def evaluate_interpreter(
    interpreter,
    classifier,
    dataloader: Iterable[dict],
    *,
    task: str | None = None,
    threshold: float = 0.2,
    top_k: Sequence[int] | int = (3,),
    thresholds: float | Sequence[float] | Tensor | None = None,
    classifier_thresholds: float | Sequence[float] | Tensor | None = 0.5,
    random_baseline: bool = True,
    mask_domain: str | None = None,
    ground_truth: bool | None = None,
    noise_snr_db: Sequence[float] | float | None = (10.0,),
    max_batches: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    frontend=None,
    interpret_kwargs: dict | None = None,
) -> dict[str, float]:
    """Run the whole suite; returns ``{"fidelity.top1": …, "faithfulness.…": …, …, "clips": n, "seconds": s}``.

    Args:
        interpreter: anything with ``interpret(waveform, target=None, threshold=…) -> Interpretation``
            (post-hoc, by-design, baselines); ``components=`` support enables the random baselines.
        classifier: ``classifier(waveform (B, N)) -> logits (B, C)`` (e.g. ``ClassifierModule``); frozen.
        dataloader: batches with ``waveform (B, N)`` and ``target``; ``sources``/``source_labels`` (and
            multilabel ``source_targets``) enable the ground-truth family.
        task: multiclass | multilabel (default: the classifier's / interpreter's ``task``).
        threshold: relevance threshold τ of the interpretations.
        top_k: extra k of multiclass top-k fidelity.
        thresholds, classifier_thresholds: multilabel interpreter / classifier decision thresholds (float or
            (C,)); tune the interpreter's on validation with :func:`l2i.evaluation.fidelity.tune_thresholds`.
        random_baseline: compute random-component baselines (needs ``components=`` in ``interpret``).
        mask_domain: ``magnitude`` (mask the spectrogram, L-MAC's way; needs ``classifier.frontend`` and
            ``.backbone``) or ``waveform`` (classify the interpretation/residual audio); default: magnitude when
            possible.
        ground_truth: force the ground-truth family on/off (default: on when batches carry ``sources``).
        noise_snr_db: SNRs (dB) of the noise experiment; ``None`` or ``()`` skips it.
        max_batches: stop after this many batches.
        seed: seed of random components and noise (CPU generator; the results are reproducible).
        device: where to run (default: the classifier's device).
        frontend: the STFT front-end of the interpretations' masks (default ``classifier.frontend``, else
            ``interpreter.frontend``); needed by the ground-truth family.
        interpret_kwargs: extra keyword arguments of every ``interpret`` call (e.g. the post-hoc interpreter's
            ``mask_mode='share'``, ``relevance_weighted=True``).
    """
    with _eval_mode(interpreter, classifier):
        return _evaluate(interpreter, classifier, dataloader, task=task, threshold=threshold, top_k=top_k,
                         thresholds=thresholds, classifier_thresholds=classifier_thresholds,
                         random_baseline=random_baseline, mask_domain=mask_domain, ground_truth=ground_truth,
                         noise_snr_db=noise_snr_db, max_batches=max_batches, seed=seed, device=device,
                         frontend=frontend, interpret_kwargs=interpret_kwargs)


@contextlib.contextmanager
def _eval_mode(*models):
    """Every ``nn.Module`` among ``models`` in eval mode for the evaluation (batch norm on its running
    statistics, no dropout: a clip's figures must not depend on its batch or on the random state), each
    restored to its own mode afterwards."""
    modules = [m for m in models if isinstance(m, torch.nn.Module)]
    states = [[(sub, sub.training) for sub in m.modules()] for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for state in states:
            for sub, training in state:
                sub.training = training


def _evaluate(interpreter, classifier, dataloader, *, task, threshold, top_k, thresholds, classifier_thresholds,
              random_baseline, mask_domain, ground_truth, noise_snr_db, max_batches, seed, device, frontend,
              interpret_kwargs) -> dict[str, float]:
    """The body of :func:`evaluate_interpreter` (models already in eval mode)."""
    start = time.perf_counter()
    task = _task_of(interpreter, classifier, task)
    device = _device_of(classifier, device)
    frontend = frontend or getattr(classifier, "frontend", None) or getattr(interpreter, "frontend", None)
    if mask_domain is None:
        mask_domain = "magnitude" if can_classify_magnitude(classifier) else "waveform"
    snrs = [] if noise_snr_db is None else ([float(noise_snr_db)] if isinstance(noise_snr_db, (int, float)) else [float(s) for s in noise_snr_db])
    use_random = bool(random_baseline) and supports_components(interpreter)
    gen = torch.Generator().manual_seed(int(seed))
    kw = dict(interpret_kwargs or {})

    fidelity = faith = lmac = gt = None
    noise = {s: NoiseRobustness(s) for s in snrs}
    clips = 0
    chosen_sum = chosen_n = 0.0
    for b, batch in enumerate(dataloader):
        if max_batches is not None and b >= max_batches:
            break
        if "waveform" not in batch:
            raise KeyError(f"evaluate_interpreter: batches need 'waveform', got keys {sorted(batch)}")
        waveform = batch["waveform"].to(device).float()
        clips += waveform.shape[0]
        logits = classify_waveform(classifier, waveform)
        if fidelity is None:
            fidelity = Fidelity(task, logits.shape[-1], top_k=top_k, thresholds=thresholds, classifier_thresholds=classifier_thresholds).to(device)
            faith = Faithfulness(task)
            lmac = MaskMetrics(task, class_thresholds=0.5 if classifier_thresholds is None else torch.as_tensor(classifier_thresholds))
            gt = GroundTruth()
        interp = _interpret(interpreter, waveform, None, threshold, **kw)
        fidelity.update(interp.logits.to(device), logits)
        rand = None
        if use_random:
            rand = _interpret(interpreter, waveform, interp.classes, threshold, random_components(interp.components, gen), **kw)
        faith.update_from_logits(
            logits,
            classify_waveform(classifier, interp.residual),
            interp.classes,
            None if rand is None else classify_waveform(classifier, rand.residual),
        )
        lmac.update_from_interpretation(classifier, waveform, interp, mask_domain)
        if interp.components.shape[-1]:
            chosen_sum += float(interp.num_chosen[interp.valid].sum())
            chosen_n += float(interp.valid.sum())

        reference, ref_sdr, src = interp, None, None
        if _wants_ground_truth(batch, ground_truth):
            reference, ref_sdr, src = _ground_truth_step(interpreter, waveform, batch, frontend, gt, threshold,
                                                         use_random, gen, device, kw)
        for snr, metric in noise.items():
            _noise_step(metric, snr, interpreter, classifier, waveform, logits, reference, ref_sdr, src, task,
                        threshold, gen, kw)
    if fidelity is None:
        raise ValueError("evaluate_interpreter: the dataloader yielded no batch")

    out: dict[str, float] = {}
    _put(out, "fidelity", fidelity.compute())
    _put(out, "faithfulness", faith.compute())
    _put(out, "lmac", lmac.compute())
    if gt is not None and gt.interp:
        _put(out, "ground_truth", gt.compute())
    for snr, metric in noise.items():
        _put(out, noise_prefix(snr), metric.compute())
    if chosen_n:
        out["components_mean"] = chosen_sum / chosen_n
    out["clips"] = float(clips)
    out["random_baseline"] = float(use_random)
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


def _put(out: dict[str, float], prefix: str, values: dict) -> None:
    """``out[prefix.key] = float(value)`` for each figure, a NaN (nothing to score) reported as 0."""
    for k, v in values.items():
        v = float(v)
        out[f"{prefix}.{k}"] = 0.0 if math.isnan(v) else v


def _wants_ground_truth(batch: dict, ground_truth: bool | None) -> bool:
    """Whether this batch is scored against its sources: when it has them (``ground_truth=None``) or when asked,
    in which case a batch without them is an error."""
    has_sources = "sources" in batch and "source_labels" in batch
    do_gt = has_sources if ground_truth is None else bool(ground_truth)
    if do_gt and not has_sources:
        raise KeyError("evaluate_interpreter(ground_truth=True): batches need 'sources' and 'source_labels'")
    return do_gt


def _ground_truth_step(interpreter, waveform, batch, frontend, gt, threshold, use_random, gen, device, kw):
    """The ground-truth family on one batch: the interpretation of every present class (and, with the random
    baseline, of random / all components) scored against its source. Returns the reference interpretation the
    noise family compares with, its per-(clip, class) SI-SDR and the class sources ``(B, C, samples)``."""
    if frontend is None:
        raise ValueError("evaluate_interpreter: the ground-truth family needs a front-end (classifier.frontend or frontend=)")
    targets = batch.get("source_targets")
    present = present_classes(batch["sources"], batch["source_labels"], targets).to(device)
    gt_interp = _interpret(interpreter, waveform, present, threshold, **kw)
    gt_rand = gt_all = None
    K = gt_interp.components.shape[-1]
    if use_random and K:
        gt_rand = _interpret(interpreter, waveform, gt_interp.classes, threshold, random_active_components(gt_interp, gen), **kw)
        every = torch.ones_like(gt_interp.components, dtype=torch.bool)
        gt_all = _interpret(interpreter, waveform, gt_interp.classes, threshold, every, **kw)
    ref_sdr = gt.update_from_batch(frontend, batch, gt_interp, gt_rand, gt_all)
    src = class_sources(batch["sources"].to(device).float(), batch["source_labels"].to(device), gt_interp.classes,
                        None if targets is None else targets.to(device))
    return gt_interp, ref_sdr, src


def _noise_step(metric, snr, interpreter, classifier, waveform, logits, reference, ref_sdr, src, task, threshold, gen,
                kw) -> None:
    """The noise family at one SNR on one batch: the interpretation of the noisy clips for the reference's classes,
    compared with the reference (and, with sources, their SI-SDRs with and without noise)."""
    noisy_wave = add_white_noise(waveform, snr, gen)
    noisy = _interpret(interpreter, noisy_wave, reference.classes, threshold, **kw)
    sdr_clean = sdr_noisy = None
    if src is not None:
        scored = (reference.classes >= 0) & (src.pow(2).sum(-1) > 0)
        N = min(src.shape[-1], noisy.audio.shape[-1])
        sdr_clean = ref_sdr[scored]
        sdr_noisy = si_sdr(noisy.audio[..., :N], src[..., :N])[scored]
    metric.update_from_interpretations(
        reference, noisy, task, sdr_clean, sdr_noisy,
        clean_classifier_logits=logits, noisy_classifier_logits=classify_waveform(classifier, noisy_wave),
    )


@torch.no_grad()
def tune_interpreter_thresholds(
    interpreter,
    classifier,
    dataloader: Iterable[dict],
    *,
    classifier_thresholds: float | Sequence[float] | Tensor = 0.5,
    threshold: float = 0.2,
    max_batches: int | None = None,
    device: str | torch.device | None = None,
) -> Tensor:
    """Multilabel: per-class interpreter thresholds maximising the F1 of σ(Θ(H)) against the classifier's
    thresholded labels on a (validation) loader — pass the result as ``thresholds=`` to
    :func:`evaluate_interpreter`. Returns ``(C,)``."""
    from l2i.evaluation.fidelity import as_thresholds, tune_thresholds

    device = _device_of(classifier, device)
    probs, labels = [], []
    for b, batch in enumerate(dataloader):
        if max_batches is not None and b >= max_batches:
            break
        waveform = batch["waveform"].to(device).float()
        interp = _interpret(interpreter, waveform, None, threshold)
        ref = interp.classifier_logits if interp.classifier_logits is not None else classify_waveform(classifier, waveform)
        thr = as_thresholds(classifier_thresholds, ref.shape[-1], "classifier_thresholds").to(ref.device)
        probs.append(interp.logits.float().sigmoid().cpu())
        labels.append((ref.float().sigmoid() > thr).cpu())
    if not probs:
        raise ValueError("tune_interpreter_thresholds: the dataloader yielded no batch")
    return tune_thresholds(torch.cat(probs), torch.cat(labels))


def results_markdown(results: dict[str, float], title: str | None = None, columns: dict[str, dict[str, float]] | None = None) -> str:
    """A markdown table of :func:`evaluate_interpreter` results (one column), or of several named result dicts
    side by side (``columns={"L2I": res1, "oracle": res2}``)."""
    cols = columns if columns is not None else {"value": results}
    keys: list[str] = []
    for res in cols.values():
        keys += [k for k in res if k not in keys]
    lines = [f"## {title}", ""] if title else []
    lines.append("| metric | " + " | ".join(cols) + " |")
    lines.append("|---|" + "---|" * len(cols))
    for k in keys:
        cells = []
        for res in cols.values():
            v = res.get(k)
            cells.append("" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)))
        lines.append(f"| `{k}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: rows of :func:`ground_truth_markdown`: (estimate key, what it is)
GROUND_TRUTH_ROWS = (
    ("mixture", "the mixture itself (doing nothing)"),
    ("interpretation", "interpretation of c"),
    ("other_class", "interpretation of another class present in the clip"),
    ("random", "random active components (as many as chosen)"),
    ("all_components", "all components"),
    ("oracle", "ideal ratio mask (oracle)"),
)


def ground_truth_markdown(results: dict[str, float], prefix: str = "ground_truth", title: str | None = None) -> str:
    """The ground-truth report of :func:`evaluate_interpreter` results (keys ``<prefix>.<subset>.<key>``) as one
    table: rows = estimates of class c's source, columns = all / single- / multi-source clips, cells = median
    (mean) SI-SDR in dB; then the share of pairs where the interpretation beats the mixture, the specificity and
    the pair counts. Empty string when the results hold no ground truth."""
    if f"{prefix}.all.pairs" not in results:
        return ""
    heads = {"all": "all clips", "single": "single-source clips", "multi": "multi-source clips"}
    title = title or "ground truth: SI-SDR (dB) against the true source of class c, median (mean)"
    lines = [f"## {title}", "", "| estimate of class c | " + " | ".join(heads[s] for s in SUBSETS) + " |",
             "|---|" + "---:|" * len(SUBSETS)]

    def cell(subset: str, key: str) -> str:
        med, mean = results.get(f"{prefix}.{subset}.{key}_median"), results.get(f"{prefix}.{subset}.{key}_mean")
        return "–" if med is None or not results.get(f"{prefix}.{subset}.pairs") else f"{med:.1f} ({mean:.1f})"

    def share(subset: str, key: str) -> str:
        v = results.get(f"{prefix}.{subset}.{key}")
        return "–" if v is None or not results.get(f"{prefix}.{subset}.pairs") else f"{100 * v:.0f} %"

    for key, label in GROUND_TRUTH_ROWS:
        if any(f"{prefix}.{s}.{key}_median" in results for s in SUBSETS):
            lines.append(f"| {label} | " + " | ".join(cell(s, key) for s in SUBSETS) + " |")
    lines.append("| pairs where the interpretation is closer than the mixture | " + " | ".join(share(s, "better_than_mixture") for s in SUBSETS) + " |")
    if f"{prefix}.multi.specificity" in results:
        lines.append("| specificity: c's own interpretation closer than another present class's | "
                     + " | ".join(share(s, "specificity") for s in SUBSETS) + " |")
    lines.append("| (clip, class present) pairs | " + " | ".join(f"{int(results.get(f'{prefix}.{s}.pairs', 0))}" for s in SUBSETS) + " |")
    return "\n".join(lines) + "\n"
