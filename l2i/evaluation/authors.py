"""The evaluation as the authors (and SpeechBrain's L-MAC evaluation) measured it, so figures compare with theirs.

Pure functions (each tested on a hand-computed case) and one driver, :func:`evaluate_authors_protocol`:

* **fidelity** — multiclass: top-1 / 3 / 5 agreement (f's class among the interpreter's k best,
  :func:`topk_fidelity`); multilabel: per class, σ(Θ(H)) thresholded at 11 levels (0.95 … 0.05) against f's
  thresholded decisions -> precision / recall points plus (r, p) = (0, 1) and (1, 0) -> trapezoid area; macro
  and micro means and the largest micro F1 over the points (:func:`multilabel_fidelity_auprc`);
* **faithfulness** — remove *all* components with r > τ (τ 0.3 ESC-50, 0.1 SONYC-UST) from ``log1p|X|``:
  residual magnitude ``expm1((1 − share) · log1p|X|)`` with the input phase -> waveform -> f; report the
  **medians** of the logit and probability drops of the explained class, against removing random components (7
  on ESC-50, a per-class average count on SONYC-UST: :func:`random_component_sets`, :func:`class_average_counts`);
* **overlap and noise** — ``x1 + λ·x2`` with each clip peak-normalised (:func:`overlap_mixture`); white noise at
  0 dB SNR (:func:`~l2i.evaluation.noise.add_white_noise`);
* **L-MAC's table** — each test clip mixed 0.8 / 0.2 with another clip, both energy-normalised, the mixture then
  divided by its maximum (:func:`lmac_mixture`); masks act on ``log1p|X|`` (masked-in ``expm1(m · log1p|X|)``,
  masked-out ``expm1((1 − m) · log1p|X|)``); AI, AD, AG in %, FF the mean probability drop (a fraction), Fid-In
  a fraction, SPS the Gini index and COMP the entropy of the log1p-domain mask (:func:`lmac_protocol_scores`).

Where these differ from the project's suite (:mod:`l2i.evaluation.suite`): the suite removes the chosen set on
the magnitude (``(1 − mask)·|X|``), reports means and medians against a random set of the *same size*, gives
FF in % and computes SPS / COMP on the magnitude-domain mask.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import torch
from torch import Tensor

from l2i.evaluation.common import classify_magnitude, classify_waveform, gather_classes, probabilities
from l2i.evaluation.mask import complexity, sparseness

__all__ = [
    "AUPRC_THRESHOLDS",
    "topk_fidelity",
    "multilabel_fidelity_auprc",
    "random_component_sets",
    "class_average_counts",
    "log1p_mask_from_magnitude_mask",
    "log1p_masked_magnitudes",
    "median_drops",
    "peak_normalise",
    "overlap_mixture",
    "lmac_mixture",
    "lmac_protocol_scores",
    "evaluate_authors_protocol",
    "AUTHORS_SETTINGS",
]

#: the authors' 11 decision thresholds of the interpreter, in their order (descending: recall grows)
AUPRC_THRESHOLDS: tuple[float, ...] = (0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05)

#: per task: the faithfulness τ and the random baseline of the authors' code (ESC-50 / SONYC-UST), and the τ of the
#: listenable interpretation (top 5 above τ) whose mask L-MAC's table evaluates
AUTHORS_SETTINGS = {
    "multiclass": {"faithfulness_threshold": 0.3, "random_count": 7, "interpretation_threshold": 0.2},
    "multilabel": {"faithfulness_threshold": 0.1, "random_count": "class_average", "interpretation_threshold": 0.3},
}

_TINY = 1e-9  # the authors' floor in precision / recall


def topk_fidelity(interpreter_logits: Tensor, classifier_logits: Tensor, ks: Sequence[int] = (1, 3, 5)) -> dict[str, float]:
    """``(N, C)`` each -> ``{"top1": …, "top3": …, "top5": …}``: fraction of clips whose classifier class
    (argmax f) is among the interpreter's k highest logits (k capped at C)."""
    if interpreter_logits.shape != classifier_logits.shape or interpreter_logits.dim() != 2:
        raise ValueError(
            f"topk_fidelity: interpreter_logits {tuple(interpreter_logits.shape)} and classifier_logits "
            f"{tuple(classifier_logits.shape)} must both be (N, C)"
        )
    n, c = interpreter_logits.shape
    ref = classifier_logits.argmax(-1)
    out = {}
    for k in ks:
        top = interpreter_logits.topk(min(int(k), c), dim=-1).indices
        out[f"top{int(k)}"] = float((top == ref[:, None]).any(-1).float().mean()) if n else 0.0
    return out


def multilabel_fidelity_auprc(
    interpreter_probabilities: Tensor,
    classifier_decisions: Tensor,
    thresholds: Sequence[float] = AUPRC_THRESHOLDS,
) -> dict[str, Tensor | float]:
    """The authors' multilabel fidelity: the interpreter's σ(Θ(H)) as a detector of f's decisions.

    Args:
        interpreter_probabilities: ``(N, C)`` σ(Θ(H)).
        classifier_decisions: ``(N, C)`` bool / 0-1, f's thresholded predictions (the reference labels).
        thresholds: the interpreter's decision levels, descending (default the authors' 11).

    Returns:
        ``macro_auprc`` (mean over classes of the per-class area), ``micro_auprc`` (area of the pooled
        counts' curve), ``max_micro_f1`` (largest F1 among the micro points, end points included) and
        ``per_class`` ``(C,)``. At each level ``precision = (TP + 1e-9) / (TP + FP + 1e-9)`` (1 when nothing is
        predicted) and ``recall = (TP + 1e-9) / (TP + FN + 1e-9)``; the curve is ``(0, 1)``, the levels' points,
        ``(1, 0)``, integrated by the trapezoid rule over recall. (The authors' per-class recall has no floor:
        a class f never predicts makes their macro mean NaN; here its recall is 1.)
    """
    p = interpreter_probabilities.float()
    y = classifier_decisions.bool()
    if p.shape != y.shape or p.dim() != 2:
        raise ValueError(
            f"multilabel_fidelity_auprc: probabilities {tuple(p.shape)} and decisions {tuple(y.shape)} must both be (N, C)"
        )
    t = torch.as_tensor(list(thresholds), dtype=p.dtype, device=p.device)
    if t.numel() < 1 or bool((t[1:] > t[:-1]).any()):
        raise ValueError(f"thresholds must be descending (recall grows along the curve), got {t.tolist()}")
    pred = p[None] > t[:, None, None]  # (L, N, C)
    tp = (pred & y).sum(1).double()
    fp = (pred & ~y).sum(1).double()
    fn = (~pred & y).sum(1).double()

    def curve(tp_, fp_, fn_):
        prec = (tp_ + _TINY) / (tp_ + fp_ + _TINY)
        rec = (tp_ + _TINY) / (tp_ + fn_ + _TINY)
        one, zero = torch.ones_like(prec[:1]), torch.zeros_like(prec[:1])
        return torch.cat([zero, rec, one]), torch.cat([one, prec, zero])

    r, pr = curve(tp, fp, fn)  # (L + 2, C)
    per_class = torch.trapezoid(pr, r, dim=0)
    mr, mp = curve(tp.sum(-1), fp.sum(-1), fn.sum(-1))
    f1 = torch.where(mp + mr > 0, 2 * mp * mr / (mp + mr).clamp_min(_TINY), torch.zeros_like(mp))
    return {
        "macro_auprc": float(per_class.mean()),
        "micro_auprc": float(torch.trapezoid(mp, mr)),
        "max_micro_f1": float(f1.max()),
        "per_class": per_class.float(),
    }


def random_component_sets(
    counts: Tensor | int, shape: Sequence[int], generator: torch.Generator | None = None, device=None
) -> Tensor:
    """``(…, K)`` bool sets with exactly ``counts`` random components each (``counts``: an int or a tensor
    broadcastable to ``shape[:-1]``; capped at K). Drawn on the CPU generator."""
    *lead, K = [int(s) for s in shape]
    n = torch.as_tensor(counts).long().clamp(0, K).expand(*lead) if lead else torch.as_tensor(counts).long().clamp(0, K)
    keys = torch.rand(*lead, K, generator=generator)
    rank = keys.argsort(-1).argsort(-1)
    out = rank < n[..., None]
    return out.to(device) if device is not None else out


def class_average_counts(chosen: Tensor, classes: Tensor, num_classes: int) -> Tensor:
    """Per class, the average number of chosen components over the (clip, class) slots explaining it, rounded
    (at least 1): the authors' SONYC-UST random baseline. ``chosen (M, K)`` bool, ``classes (M,)`` -> ``(C,)``
    int64; a class never explained gets the overall average."""
    counts = chosen.sum(-1).double()
    total = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, classes.long().cpu(), counts.cpu())
    slots = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, classes.long().cpu(), torch.ones_like(counts).cpu())
    overall = counts.mean() if counts.numel() else torch.tensor(1.0, dtype=torch.float64)
    avg = torch.where(slots > 0, total / slots.clamp_min(1), overall.cpu())
    return avg.round().clamp_min(1).long()


def log1p_mask_from_magnitude_mask(mask: Tensor, magnitude: Tensor) -> Tensor:
    """The log1p-domain share ``m`` of an interpretation from its magnitude mask: ``mask · |X| = expm1(m · log1p|X|)``
    (``Interpretation.mask`` in ``log1p`` mode) -> ``m = log1p(mask · |X|) / log1p|X|`` in [0, 1] (0 where
    ``|X| = 0``). ``mask (B, C', F, T)``, ``magnitude (B, F, T)`` -> ``(B, C', F, T)``."""
    mag = magnitude[:, None].to(mask.dtype)
    V = torch.log1p(mag)
    m = torch.log1p(mask * mag) / V.clamp_min(torch.finfo(V.dtype).tiny)
    return torch.where(V > 0, m, torch.zeros_like(m)).clamp(0.0, 1.0)


def log1p_masked_magnitudes(mask: Tensor, magnitude: Tensor) -> tuple[Tensor, Tensor]:
    """Masks on ``log1p|X|`` as the authors and SpeechBrain apply them: ``mask (B, C', F, T)`` in [0, 1],
    ``magnitude (B, F, T)`` -> (masked-in ``expm1(m · log1p|X|)``, masked-out ``expm1((1 − m) · log1p|X|)``)."""
    V = torch.log1p(magnitude[:, None].to(mask.dtype))
    return torch.expm1(mask * V), torch.expm1((1 - mask) * V)


def median_drops(original_logits: Tensor, removed_logits: Tensor, classes: Tensor, task: str) -> dict[str, float]:
    """Medians over the explained slots of the drop of f's logit and probability of the explained class.

    ``original (B, C)``, ``removed (B, C', C)``, ``classes (B, C')`` (-1 padded). The median is numpy's (the
    mean of the two middle values for an even count), as in the authors' ``np.median``.
    """
    valid = classes >= 0
    orig = original_logits[:, None, :].expand_as(removed_logits).float()
    logit = (gather_classes(orig, classes) - gather_classes(removed_logits.float(), classes))[valid]
    prob = (gather_classes(probabilities(orig, task), classes) - gather_classes(probabilities(removed_logits, task), classes))[valid]
    return {"logit_drop_median": _np_median(logit), "prob_drop_median": _np_median(prob), "count": float(logit.numel())}


def _np_median(x: Tensor) -> float:
    return float(x.double().quantile(0.5)) if x.numel() else 0.0


def peak_normalise(x: Tensor) -> Tensor:
    """``x / max|x|`` per clip (``(…, N)``); a silent clip stays 0."""
    peak = x.abs().amax(-1, keepdim=True)
    return torch.where(peak > 0, x / peak.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(x))


def overlap_mixture(x1: Tensor, x2: Tensor, weight: float) -> Tensor:
    """The authors' overlap experiment: ``x1 / max|x1| + λ · x2 / max|x2|`` (``(…, N)`` each)."""
    if x1.shape != x2.shape:
        raise ValueError(f"overlap_mixture: clips must have the same shape, got {tuple(x1.shape)} and {tuple(x2.shape)}")
    return peak_normalise(x1) + float(weight) * peak_normalise(x2)


def lmac_mixture(x1: Tensor, x2: Tensor, weights: tuple[float, float] = (0.8, 0.2)) -> Tensor:
    """SpeechBrain's evaluation mixture: ``mix = 0.8 · x1/‖x1‖ + 0.2 · x2/‖x2‖``, then ``mix / max(mix)``
    (the signed maximum, as their code; ``max|mix|`` when that maximum is not positive). ``(…, N)`` each."""
    if x1.shape != x2.shape:
        raise ValueError(f"lmac_mixture: clips must have the same shape, got {tuple(x1.shape)} and {tuple(x2.shape)}")

    def unit(x):
        n = x.norm(dim=-1, keepdim=True)
        return torch.where(n > 0, x / n.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(x))

    mix = weights[0] * unit(x1) + weights[1] * unit(x2)
    top = mix.amax(-1, keepdim=True)
    top = torch.where(top > 0, top, mix.abs().amax(-1, keepdim=True))
    return torch.where(top > 0, mix / top.clamp_min(torch.finfo(mix.dtype).tiny), mix)


def lmac_protocol_scores(
    p: Tensor, p_in: Tensor, p_out: Tensor, same_class: Tensor, mask: Tensor, eps: float = 1e-10
) -> dict[str, Tensor]:
    """Per-slot L-MAC metrics as SpeechBrain computes them (means of these are its table).

    Args:
        p, p_in, p_out: ``(M,)`` f's probability of the explained class on the input, the masked-in and the
            masked-out input.
        same_class: ``(M,)`` bool, argmax f(masked-in) == argmax f(input).
        mask: ``(M, F, T)`` the mask on ``log1p|X|``.

    Returns ``(M,)`` each: ``AI = 100·[p < p_in]``, ``AD = 100·max(0, p − p_in)/(p + ε)``, ``AG = 100·max(0, p_in − p)
    /(1 − p + ε)``, ``FF = p − p_out``, ``FidIn = [same class]``, ``SPS`` (Gini index), ``COMP`` (entropy, nats).
    """
    p, p_in, p_out = p.double(), p_in.double(), p_out.double()
    return {
        "AI": 100.0 * (p < p_in).double(),
        "AD": 100.0 * (p - p_in).clamp_min(0) / (p + eps),
        "AG": 100.0 * (p_in - p).clamp_min(0) / (1 - p + eps),
        "FF": p - p_out,
        "FidIn": same_class.double(),
        "SPS": sparseness(mask).double(),
        "COMP": complexity(mask).double(),
    }


@torch.no_grad()
def evaluate_authors_protocol(
    interpreter,
    classifier,
    batches: Iterable,
    *,
    task: str,
    num_classes: int,
    faithfulness_threshold: float | None = None,
    interpretation_threshold: float | None = None,
    random_count: int | str | None = None,
    classifier_thresholds: float | Tensor = 0.5,
    max_batches: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """The authors' figures for ``interpreter`` (anything with ``interpret(wav, target, threshold, components=,
    top_k=)``) explaining ``classifier`` (``waveform -> logits``, with ``frontend`` + ``backbone``) over
    ``batches`` (dicts with ``waveform (B, N)``; iterated twice when the random baseline is the per-class
    average count, e.g. a DataLoader).

    Returns flat keys: ``fidelity.top1/3/5`` (multiclass) or ``fidelity.macro_auprc / micro_auprc / max_micro_f1``
    (multilabel); ``faithfulness.{relevant,random}_{logit,prob}_drop_median``, ``faithfulness.mean_removed``;
    ``lmac.{AI,AD,AG,FF,FidIn,SPS,COMP}`` (on the 0.8 / 0.2 mixtures of each clip with the batch's next one;
    multiclass) and ``count`` keys. Defaults (``None``) follow :data:`AUTHORS_SETTINGS`.
    """
    tau_f, tau_i, rand_spec = _settings(task, faithfulness_threshold, interpretation_threshold, random_count)
    gen = torch.Generator().manual_seed(int(seed))
    fe = classifier.frontend

    int_logits, clf_logits, orig_all, rel_all, rnd_all, cls_all, chosen_all, slot_cls = ([] for _ in range(8))
    lmac_rows: dict[str, list[Tensor]] = {}
    for wav in _waveforms(batches, max_batches, device):
        it = interpreter.interpret(wav, threshold=tau_f, top_k=0)  # faithfulness: every component with r > τ
        int_logits.append(it.logits.float().cpu())
        clf_logits.append(it.classifier_logits.float().cpu())
        feats = fe(wav)
        share = log1p_mask_from_magnitude_mask(it.mask, feats.magnitude)
        _, residual = log1p_masked_magnitudes(share, feats.magnitude)
        rel_all.append(_classify_spectra(classifier, fe, residual, feats.phase, wav.shape[-1]).cpu())
        orig_all.append(classify_waveform(classifier, wav).cpu())
        cls_all.append(it.classes.cpu())
        chosen_all.append(it.explained("components")[it.valid].cpu())
        slot_cls.append(it.classes[it.valid].cpu())
        if rand_spec != "class_average":
            rnd_all.append(_random_removal(interpreter, classifier, fe, wav, it.classes, int(rand_spec), tau_f, gen,
                                           feats, tuple(it.components.shape)).cpu())
        if task == "multiclass" and wav.shape[0] > 1:
            _lmac_batch(interpreter, classifier, fe, wav, tau_i, lmac_rows)
    if not orig_all:
        raise ValueError("evaluate_authors_protocol: no batches")
    out = _fidelity_figures(torch.cat(int_logits), torch.cat(clf_logits), task, classifier_thresholds)
    orig, rel, classes = torch.cat(orig_all), _cat_padded(rel_all), _cat_padded(cls_all, fill=-1)
    chosen_slots, classes_slots = torch.cat(chosen_all), torch.cat(slot_cls)
    if rand_spec == "class_average":  # a second pass, once the per-class counts are known
        counts = class_average_counts(chosen_slots, classes_slots, num_classes)
        for c, n in enumerate(counts.tolist()):
            out[f"faithfulness.random_count.{c}"] = float(n)
        for wav, c in zip(_waveforms(batches, max_batches, device), cls_all):
            c = c.to(device)
            per_slot = torch.where(c >= 0, counts.to(device)[c.clamp_min(0)], torch.zeros_like(c))
            rnd_all.append(_random_removal(interpreter, classifier, fe, wav, c, per_slot, tau_f, gen, None,
                                           (c.shape[0], num_classes, int(chosen_slots.shape[-1]))).cpu())
    r = median_drops(orig, rel, classes, task)
    q = median_drops(orig, _cat_padded(rnd_all), classes, task)
    out.update({
        "faithfulness.relevant_logit_drop_median": r["logit_drop_median"],
        "faithfulness.relevant_prob_drop_median": r["prob_drop_median"],
        "faithfulness.random_logit_drop_median": q["logit_drop_median"],
        "faithfulness.random_prob_drop_median": q["prob_drop_median"],
        "faithfulness.mean_removed": float(chosen_slots.sum(-1).double().mean()) if chosen_slots.numel() else 0.0,
        "faithfulness.count": r["count"],
        "faithfulness.threshold": tau_f,
    })
    out.update(_lmac_figures(lmac_rows, tau_i))
    return out


def _lmac_figures(lmac_rows: dict[str, list[Tensor]], threshold: float) -> dict[str, float]:
    """``lmac.<figure>`` (the mean over the scored clips), ``lmac.count`` and ``lmac.threshold``; nothing when
    no clip was scored (multilabel, or batches of one clip)."""
    if not lmac_rows:
        return {}
    out = {f"lmac.{k}": float(torch.cat(rows).mean()) for k, rows in lmac_rows.items()}
    out["lmac.count"] = float(torch.cat(lmac_rows["AI"]).numel())
    out["lmac.threshold"] = threshold
    return out


def _settings(task: str, faithfulness_threshold: float | None, interpretation_threshold: float | None,
              random_count: int | str | None) -> tuple[float, float, int | str]:
    """The thresholds τ_f, τ_i and the random baseline's count, each :data:`AUTHORS_SETTINGS`'s when None."""
    if task not in AUTHORS_SETTINGS:
        raise ValueError(f"task must be multiclass|multilabel, got {task!r}")
    cfg = AUTHORS_SETTINGS[task]
    tau_f = cfg["faithfulness_threshold"] if faithfulness_threshold is None else float(faithfulness_threshold)
    tau_i = cfg["interpretation_threshold"] if interpretation_threshold is None else float(interpretation_threshold)
    rand_spec = cfg["random_count"] if random_count is None else random_count
    if rand_spec != "class_average" and not (isinstance(rand_spec, int) and rand_spec >= 1):
        raise ValueError(f"random_count must be a positive number of components or 'class_average', got {rand_spec!r}")
    return tau_f, tau_i, rand_spec


def _waveforms(batches: Iterable, max_batches: int | None, device) -> Iterator[Tensor]:
    """The ``waveform (B, N)`` of each batch (the first ``max_batches``), as float on ``device``."""
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            return
        yield batch["waveform"].to(device).float()


def _fidelity_figures(interp_logits: Tensor, classifier_logits: Tensor, task: str,
                      classifier_thresholds: float | Tensor) -> dict[str, float]:
    """``fidelity.top1/3/5`` (multiclass) or ``fidelity.macro_auprc / micro_auprc / max_micro_f1`` (multilabel,
    the classifier's decisions at ``classifier_thresholds`` as the labels) from ``(N, C)`` logits."""
    if task == "multiclass":
        return {f"fidelity.{k}": v for k, v in topk_fidelity(interp_logits, classifier_logits).items()}
    thr = torch.as_tensor(classifier_thresholds, dtype=torch.float32)
    res = multilabel_fidelity_auprc(interp_logits.sigmoid(), classifier_logits.sigmoid() > thr)
    return {f"fidelity.{k}": v for k, v in res.items() if k != "per_class"}


def _classify_spectra(classifier, fe, magnitude: Tensor, phase: Tensor, length: int) -> Tensor:
    """``magnitude (B, C', F, T)`` with the input phase ``(B, F, T)`` -> waveform -> f -> ``(B, C', C)`` (the
    authors resynthesise and recompute the classifier's input from the new waveform)."""
    B, Cp, F, T = magnitude.shape
    ph = phase[:, None].expand(B, Cp, F, T).reshape(B * Cp, F, T)
    wav = fe.inverse(magnitude.reshape(B * Cp, F, T), ph, length=length)
    return classify_waveform(classifier, wav).reshape(B, Cp, -1)


def _random_removal(interpreter, classifier, fe, wav, classes, counts, tau, gen, feats, shape) -> Tensor:
    """f's logits ``(B, C', C)`` after removing, for each explained slot, ``counts`` random components (an int,
    or ``(B, C')`` per slot); ``shape = (B, C, K)`` of the interpretation's component sets."""
    feats = fe(wav) if feats is None else feats
    B, C, K = shape
    n = torch.as_tensor(counts).long().cpu()
    if n.dim() == 0:
        sets = random_component_sets(int(n), (B, C, K), gen, device=wav.device)
    else:  # the explained class's row gets its slot's count; the other rows are not used
        per_class = torch.zeros(B, C, dtype=torch.long)
        cls = classes.cpu()
        rows, cols = torch.nonzero(cls >= 0, as_tuple=True)
        per_class[rows, cls[rows, cols]] = n[rows, cols]
        sets = random_component_sets(per_class, (B, C, K), gen, device=wav.device)
    it = interpreter.interpret(wav, target=classes, threshold=tau, components=sets, top_k=0)
    share = log1p_mask_from_magnitude_mask(it.mask, feats.magnitude)
    _, residual = log1p_masked_magnitudes(share, feats.magnitude)
    return _classify_spectra(classifier, fe, residual, feats.phase, wav.shape[-1])


def _lmac_batch(interpreter, classifier, fe, wav, tau, rows: dict) -> None:
    """L-MAC's metrics on ``wav`` mixed 0.8 / 0.2 with the next clip of the batch (the authors' top-5 mask)."""
    mix = lmac_mixture(wav, wav.roll(1, dims=0))
    it = interpreter.interpret(mix, threshold=tau, top_k=5)
    feats = fe(mix)
    m = log1p_mask_from_magnitude_mask(it.mask, feats.magnitude)  # (B, 1, F, T)
    m_in, m_out = log1p_masked_magnitudes(m, feats.magnitude)
    logits = classify_waveform(classifier, mix)
    o = classify_magnitude(classifier, m_in)[:, 0]
    q = classify_magnitude(classifier, m_out)[:, 0]
    c = logits.argmax(-1, keepdim=True)
    P, O, Q = logits.softmax(-1), o.softmax(-1), q.softmax(-1)
    scores = lmac_protocol_scores(P.gather(1, c)[:, 0], O.gather(1, c)[:, 0], Q.gather(1, c)[:, 0],
                                  o.argmax(-1) == c[:, 0], m[:, 0])
    for k, v in scores.items():
        rows.setdefault(k, []).append(v.cpu())


def _cat_padded(tensors: list[Tensor], fill: float = 0.0) -> Tensor:
    """Concatenate ``(B, C', …)`` tensors along the batch, padding C' to the largest."""
    width = max(t.shape[1] for t in tensors)
    padded = []
    for t in tensors:
        if t.shape[1] < width:
            pad = t.new_full((t.shape[0], width - t.shape[1], *t.shape[2:]), fill)
            t = torch.cat([t, pad], dim=1)
        padded.append(t)
    return torch.cat(padded)
