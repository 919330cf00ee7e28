"""Ground truth: does the interpretation for class c sound like the true source of c? The project's one
definition of the ground-truth SI-SDR report (docs/method.md, "Metrics").

On clips whose sources are known (batches with ``sources (B, S, N)`` and ``source_labels (B, S)``, optional
multilabel ``source_targets (B, S, C)``: the synthetic set, "overlap" mixtures of
:mod:`l2i.evaluation.overlap`, any set with stems), every **(clip, class c present)** pair is scored — the
classes present are those with a non-silent source in the clip (:func:`present_classes`), whatever the task, so
multilabel clips and multiclass clips with a distractor give one pair per class present. With ``s_c`` the sum
of the sources labelled c, ``x`` the mixture and ``x̂_c`` the interpretation of c, per pair:

* ``interpretation`` = SI-SDR(x̂_c, s_c);
* ``mixture`` = SI-SDR(x, s_c), what doing nothing scores;
* ``other_class`` = SI-SDR(x̂_c', s_c) with c' **another class present in the clip** (the next present class,
  cyclically, so with two classes each is the other's); ``specificity`` = share of the pairs where c's own
  interpretation is strictly closer to s_c than c''s is (chance ≈ 0.5);
* ``random`` = SI-SDR of the interpretation built from as many random components, drawn **among the clip's
  active components** (activation > 0 somewhere in the clip; :func:`random_active_components`) — the harder
  null model (drawn among all K, most are silent in a clip); when the interpreter takes ``components=``;
* ``all_components`` = SI-SDR of the interpretation from every component (when ``components=`` is taken);
* ``oracle`` = SI-SDR of the **ideal ratio mask**: ``|S_c| / (Σ_s |S_s| + |R|)`` on the mixture's STFT
  (``S_s`` the STFT of each source, ``R`` of what the sources leave of the mixture — background noise; 0 when
  the mixture is the sum of its sources), inverted with the mixture's phase (:func:`ideal_ratio_mask`; also an
  interpreter, :class:`l2i.baselines.IdealRatioMask`);
* ``energy_in_support``: the fraction of the interpretation's spectral energy inside c's time-frequency
  support, the bins where the source dominates the rest of the mixture (ideal binary mask
  ``|S_c| > |X − S_c|``): ``Σ_support (m|X|)² / Σ (m|X|)²`` (0 for a silent interpretation);
  ``energy_in_support_random`` likewise.

SI-SDR by ``torchmetrics.functional.audio`` with zero mean, in dB; a silent estimate (energy < 1e-10 · the
source's) scores :data:`SILENT_DB` instead of the eps-driven ~0 dB torchmetrics would give it.

Reported (:meth:`GroundTruth.compute`), for ``all`` pairs and apart for ``single`` (one class present in the
clip) and ``multi`` (several classes present) clips, as ``<subset>.<key>``: ``pairs``; ``<estimate>_median``
and ``<estimate>_mean`` for each estimate above; ``over_mixture_median`` / ``_mean`` (interpretation minus
mixture, per pair); ``better_than_mixture`` (share of pairs where the interpretation is strictly closer than
the mixture); ``better_than_random``; ``energy_in_support_mean`` (``_random_mean``); and for ``multi`` only
``specificity`` and ``other_class_*``. Medians are the lower of the two middle values (``torch.median``).

Where two earlier definitions disagreed, this one chose: the random baseline is drawn among the clip's active
components (it was drawn among all K); the pairs are the classes present (the evaluation suite scored the
labelled target only); clips with a distractor are the ``multi`` subset (the post-hoc stage's own
``sisdr_*``). Pure torch + torchmetrics.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio
from torchmetrics.utilities import dim_zero_cat

from l2i.evaluation.common import EPS, safe_mean, safe_median
from l2i.interpreter.interpretation import random_components

__all__ = [
    "GroundTruth",
    "class_sources",
    "present_classes",
    "other_class_slots",
    "ideal_ratio_mask",
    "random_active_components",
    "si_sdr",
    "support_energy_fraction",
    "SILENT_DB",
    "SUBSETS",
]

#: SI-SDR given to a silent interpretation (dB)
SILENT_DB = -50.0
#: the pair subsets of the report: every pair, pairs of clips with one class present, with several
SUBSETS = ("all", "single", "multi")


def _check_sources(sources: Tensor, source_labels: Tensor) -> None:
    if sources.dim() != 3 or source_labels.shape != sources.shape[:2]:
        raise ValueError(
            f"ground truth: batch 'sources' must be (B, S, N) and 'source_labels' (B, S), got "
            f"{tuple(sources.shape)} and {tuple(source_labels.shape)}"
        )


def class_sources(sources: Tensor, source_labels: Tensor, classes: Tensor, source_targets: Tensor | None = None) -> Tensor:
    """The true source of every explained class: ``(B, C', N)``, the sum of the sources labelled with it.

    Args:
        sources: ``(B, S, N)`` source waveforms (zero rows for empty slots).
        source_labels: ``(B, S)`` int labels, -1 = empty slot.
        classes: ``(B, C')`` explained classes, -1 padded (padded slots get silence).
        source_targets: optional ``(B, S, C)`` multi-hot labels of every source (multilabel sources); used
            instead of ``source_labels`` when given.
    """
    _check_sources(sources, source_labels)
    if source_targets is not None:
        onehot = torch.take_along_dim(source_targets.float(), classes.clamp_min(0)[:, None, :].expand(-1, sources.shape[1], -1), dim=2)
        member = onehot.transpose(1, 2) > 0.5  # (B, C', S)
    else:
        member = source_labels[:, None, :] == classes[:, :, None]  # (B, C', S)
    member = member & (classes[:, :, None] >= 0)
    return torch.einsum("bcs,bsn->bcn", member.to(sources.dtype), sources)


def present_classes(sources: Tensor, source_labels: Tensor, source_targets: Tensor | None = None) -> Tensor:
    """The classes present in each clip: ``(B, C')`` int64, ascending, padded with -1 (C' >= 1).

    A class is present when one of its sources is not silent. ``source_targets (B, S, C)`` (multilabel
    sources) is read instead of ``source_labels (B, S)`` when given.
    """
    _check_sources(sources, source_labels)
    sounding = sources.detach().float().pow(2).sum(-1) > 0  # (B, S)
    if source_targets is not None:
        present = ((source_targets > 0.5) & sounding[..., None].to(source_targets.device)).any(1)  # (B, C)
    else:
        labels = torch.where(sounding.to(source_labels.device), source_labels.long(), torch.full_like(source_labels.long(), -1))
        C = int(labels.max()) + 1 if labels.numel() and int(labels.max()) >= 0 else 1
        onehot = torch.nn.functional.one_hot(labels.clamp_min(0), C).bool() & (labels >= 0)[..., None]
        present = onehot.any(1)
    B, C = present.shape
    n = max(1, int(present.sum(-1).max())) if B else 1
    ar = torch.arange(C, device=present.device).expand(B, C)
    key = torch.where(present, ar, ar + C)  # present classes first, in class order
    idx = key.sort(-1).values[:, :n]
    return torch.where(idx < C, idx, torch.full_like(idx, -1))


def other_class_slots(scored: Tensor) -> Tensor:
    """For every scored slot of ``scored (B, C')`` (bool), the slot of another scored class of the same clip —
    the next one, cyclically — or -1 when the clip has no other: ``(B, C')`` int64."""
    B, Cp = scored.shape
    order = torch.cumsum(scored.long(), -1) - 1  # rank of each scored slot among the clip's scored slots
    n = scored.sum(-1, keepdim=True)
    nxt = torch.where(n > 0, (order + 1) % n.clamp_min(1), torch.zeros_like(order))  # rank of the other slot
    # slot index of each rank: scored slots sorted first (stable), in slot order
    ar = torch.arange(Cp, device=scored.device).expand(B, Cp)
    slots_by_rank = torch.where(scored, ar, ar + Cp).sort(-1).values.clamp_max(Cp - 1)
    other = torch.take_along_dim(slots_by_rank, nxt.clamp(0, Cp - 1), dim=1)
    return torch.where(scored & (n >= 2), other, torch.full_like(other, -1))


def si_sdr(preds: Tensor, target: Tensor, silent_db: float = SILENT_DB) -> Tensor:
    """SI-SDR (dB, zero mean) of ``preds`` against ``target``, both ``(…, N)``; silent preds -> ``silent_db``."""
    val = scale_invariant_signal_distortion_ratio(preds.float(), target.float(), zero_mean=True)
    p = preds.float() - preds.float().mean(-1, keepdim=True)
    t = target.float() - target.float().mean(-1, keepdim=True)
    silent = p.pow(2).sum(-1) <= 1e-10 * t.pow(2).sum(-1).clamp_min(EPS)
    val = torch.where(silent | ~torch.isfinite(val), torch.full_like(val, silent_db), val)
    return val


def support_energy_fraction(interpretation_magnitude: Tensor, source_magnitude: Tensor, rest_magnitude: Tensor) -> Tensor:
    """Fraction of the interpretation's energy inside the source's support (``|S| > |rest|``).

    All ``(…, F, T)``; returns ``(…)`` in [0, 1] (0 for a silent interpretation).
    """
    support = source_magnitude > rest_magnitude
    e = interpretation_magnitude.float().pow(2)
    total = e.sum((-2, -1))
    inside = (e * support).sum((-2, -1))
    return torch.where(total > 0, inside / total.clamp_min(EPS), torch.zeros_like(total))


@torch.no_grad()
def ideal_ratio_mask(
    frontend, waveform: Tensor, sources: Tensor, source_labels: Tensor, classes: Tensor, source_targets: Tensor | None = None
) -> Tensor:
    """The oracle ideal ratio mask of every explained class on the mixture's STFT: ``(B, C', F, T)`` in [0, 1].

    ``mask_c = |S_c| / (Σ_s |S_s| + |R|)`` with ``S_c`` the STFT of the class's source (:func:`class_sources`),
    ``S_s`` of each source and ``R`` of the rest of the mixture ``x − Σ_s s_s`` (its background; silent when the
    mixture is the sum of its sources); 0 where the denominator is 0 and for padded slots.

    Args:
        frontend: the :class:`~l2i.frontend.AudioFrontEnd` whose STFT the mask lives on.
        waveform: ``(B, N)`` the mixtures; sources ``(B, S, N')``, source_labels ``(B, S)``, classes ``(B, C')``,
            source_targets optional ``(B, S, C)``. Signals are cut to the shorter length.
    """
    x = waveform.float()
    N = min(x.shape[-1], sources.shape[-1])
    x, sources = x[..., :N], sources.float()[..., :N]
    B, S = sources.shape[:2]
    src = class_sources(sources, source_labels, classes, source_targets)  # (B, C', N)
    Cp = src.shape[1]
    each = frontend.stft(sources.reshape(B * S, N)).abs()
    each = each.reshape(B, S, *each.shape[-2:])
    rest = frontend.stft(x - sources.sum(1)).abs()  # (B, F, T)
    num = frontend.stft(src.reshape(B * Cp, N)).abs().reshape(B, Cp, *each.shape[-2:])
    den = (each.sum(1) + rest)[:, None]
    mask = torch.where(den > 0, num / den.clamp_min(EPS), torch.zeros_like(num)).clamp(0.0, 1.0)
    return mask * (classes >= 0)[..., None, None]


def random_active_components(interpretation, generator: torch.Generator | None = None) -> Tensor:
    """As many random components per (clip, class) as ``interpretation`` chose, drawn among the clip's active
    components (activation > 0 somewhere in the clip): ``(B, C, K)`` bool, for ``interpret(components=…)``."""
    active = (interpretation.activations.detach().amax(-1) > 0)[:, None, :]  # (B, 1, K)
    return random_components(interpretation.components, generator, active)


def _slots(values: Tensor, idx: Tensor) -> Tensor:
    """``values (B, C', N)`` gathered at slot ``idx (B, C')`` (-1 -> slot 0; mask it)."""
    return torch.take_along_dim(values, idx.clamp_min(0)[..., None].expand(-1, -1, values.shape[-1]), dim=1)


class GroundTruth(Metric):
    """The ground-truth SI-SDR report (keys and definitions in the module docstring).

    ``update(si_sdr_interpretation (M,), si_sdr_mixture (M,), energy_in_support (M,), si_sdr_random=None,
    energy_in_support_random=None, *, multi=None, si_sdr_other=None, si_sdr_all=None, si_sdr_oracle=None)``
    with one entry per scored (clip, class) pair (``multi``: bool, the clip has several classes present;
    ``si_sdr_other``: the other class's interpretation, read on multi pairs only), or :meth:`update_from_batch`.
    Per-pair values are kept (``cat`` states), so medians are exact under DDP.
    """

    full_state_update = False
    _NAMES = ("interp", "mixture", "energy", "multi", "other", "random", "energy_random", "all", "oracle")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in self._NAMES:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        si_sdr_interpretation: Tensor,
        si_sdr_mixture: Tensor,
        energy_in_support: Tensor,
        si_sdr_random: Tensor | None = None,
        energy_in_support_random: Tensor | None = None,
        *,
        multi: Tensor | None = None,
        si_sdr_other: Tensor | None = None,
        si_sdr_all: Tensor | None = None,
        si_sdr_oracle: Tensor | None = None,
    ) -> None:
        n = si_sdr_interpretation.numel()
        given = {"si_sdr_mixture": si_sdr_mixture, "energy_in_support": energy_in_support, "si_sdr_random": si_sdr_random,
                 "energy_in_support_random": energy_in_support_random, "multi": multi, "si_sdr_other": si_sdr_other,
                 "si_sdr_all": si_sdr_all, "si_sdr_oracle": si_sdr_oracle}
        for name, t in given.items():
            if t is not None and t.numel() != n:
                raise ValueError(f"GroundTruth.update: {name} has {t.numel()} entries, si_sdr_interpretation {n}")
        if si_sdr_other is not None and multi is None:
            raise ValueError("GroundTruth.update: si_sdr_other needs multi (which pairs have another class present)")
        flat = lambda t: t.detach().float().flatten()  # noqa: E731
        self.interp.append(flat(si_sdr_interpretation))
        self.mixture.append(flat(si_sdr_mixture))
        self.energy.append(flat(energy_in_support))
        self.multi.append(flat(torch.zeros(n) if multi is None else multi.to(torch.float32)).to(self.interp[-1].device))
        for state, t in (("other", si_sdr_other), ("random", si_sdr_random), ("energy_random", energy_in_support_random),
                         ("all", si_sdr_all), ("oracle", si_sdr_oracle)):
            if t is not None:
                getattr(self, state).append(flat(t))

    @torch.no_grad()
    def update_from_batch(self, frontend, batch: dict, interpretation, random_interpretation=None,
                          all_interpretation=None) -> Tensor:
        """Score ``interpretation`` of the classes present (and the random / all-component ones, the other class's
        and the ideal ratio mask) against ``batch['sources']``.

        ``frontend``: the :class:`~l2i.frontend.AudioFrontEnd` whose STFT the interpretation's mask lives on.
        ``batch``: ``waveform (B, N)``, ``sources (B, S, N)``, ``source_labels (B, S)``, optional
        ``source_targets (B, S, C)``. ``interpretation.classes`` should be :func:`present_classes` (slots whose
        class has no source are skipped; a clip is multi-source when it has several classes present, whether or not
        all are explained — the other class's interpretation and specificity need them explained). Returns the per-slot SI-SDR of the interpretation ``(B, C')``
        (``nan``-free; unscored slots hold :data:`SILENT_DB`) for callers that compare conditions.
        """
        for key in ("waveform", "sources", "source_labels"):
            if key not in batch:
                raise KeyError(f"ground truth needs batch[{key!r}] (mixtures with known sources)")
        device = interpretation.audio.device
        x = batch["waveform"].to(device).float()
        classes = interpretation.classes
        targets = batch.get("source_targets")
        targets = None if targets is None else targets.to(device)
        sources, labels = batch["sources"].to(device).float(), batch["source_labels"].to(device)
        src = class_sources(sources, labels, classes, targets)
        N = min(src.shape[-1], interpretation.audio.shape[-1], x.shape[-1])
        src, x, audio = src[..., :N], x[..., :N], interpretation.audio[..., :N]
        scored = (classes >= 0) & (src.pow(2).sum(-1) > 0)
        other_slot = other_class_slots(scored)
        n_present = (present_classes(sources, labels, targets) >= 0).sum(-1, keepdim=True)  # (B, 1)
        multi = (n_present >= 2).expand_as(scored)
        # the other class's interpretation exists where another present class was explained too
        with_other = bool((other_slot[scored & multi] >= 0).all())
        mix = x[:, None, :].expand_as(src)
        sdr = si_sdr(audio, src)
        sdr_mix = si_sdr(mix, src)
        sdr_other = si_sdr(_slots(audio, other_slot), src)
        B, Cp = classes.shape
        X = frontend.stft(x)
        mag, phase = X.abs(), X.angle()
        irm = ideal_ratio_mask(frontend, x, sources, labels, classes, targets)
        T = min(mag.shape[-1], interpretation.mask.shape[-1], irm.shape[-1])
        if interpretation.mask.shape[-2] != mag.shape[-2]:
            raise ValueError(
                f"Interpretation.mask has {interpretation.mask.shape[-2]} frequency bins, the front-end "
                f"{mag.shape[-2]}: score with the interpreter's own front-end"
            )
        oracle = frontend.inverse((irm * mag[:, None]).reshape(B * Cp, *mag.shape[-2:]),
                                  phase[:, None].expand(B, Cp, *phase.shape[-2:]).reshape(B * Cp, *phase.shape[-2:]),
                                  length=N).reshape(B, Cp, -1)
        sdr_oracle = si_sdr(oracle, src)
        spec_src = frontend.stft(src.reshape(B * Cp, N)).abs()
        spec_rest = frontend.stft((mix - src).reshape(B * Cp, N)).abs()
        spec_src = spec_src.reshape(B, Cp, *spec_src.shape[-2:])[..., :T]
        spec_rest = spec_rest.reshape(B, Cp, *spec_rest.shape[-2:])[..., :T]
        m = mag[:, None, :, :T]
        energy = support_energy_fraction(interpretation.mask[..., :T] * m, spec_src, spec_rest)
        rnd = erand = allc = None
        if random_interpretation is not None:
            rnd = si_sdr(random_interpretation.audio[..., :N], src)[scored]
            erand = support_energy_fraction(random_interpretation.mask[..., :T] * m, spec_src, spec_rest)[scored]
        if all_interpretation is not None:
            allc = si_sdr(all_interpretation.audio[..., :N], src)[scored]
        self.update(sdr[scored], sdr_mix[scored], energy[scored], rnd, erand, multi=multi[scored],
                    si_sdr_other=sdr_other[scored] if with_other else None, si_sdr_all=allc,
                    si_sdr_oracle=sdr_oracle[scored])
        return torch.where(scored, sdr, torch.full_like(sdr, SILENT_DB))

    @staticmethod
    def _cat(state) -> Tensor:
        if isinstance(state, Tensor):
            return state.flatten()
        return dim_zero_cat(state) if len(state) else torch.zeros(0)

    def compute(self) -> dict[str, float]:
        interp = self._cat(self.interp)
        n = interp.numel()
        c = {name: self._cat(getattr(self, name)).to(interp.device) for name in self._NAMES}
        full = lambda name: c[name].numel() == n and n > 0  # noqa: E731 - given for every pair
        multi = c["multi"] > 0.5 if full("multi") else torch.zeros(n, dtype=torch.bool, device=interp.device)
        out: dict[str, float] = {}
        for subset in SUBSETS:
            sel = {"all": torch.ones_like(multi), "single": ~multi, "multi": multi}[subset]
            p = f"{subset}."
            i, mx = interp[sel], c["mixture"][sel]
            out[p + "pairs"] = float(i.numel())
            estimates = [("interpretation", i), ("mixture", mx)]
            if subset == "multi" and full("other"):
                estimates.append(("other_class", c["other"][sel]))
            for name, state in (("random", "random"), ("all_components", "all"), ("oracle", "oracle")):
                if full(state):
                    estimates.append((name, c[state][sel]))
            for name, v in estimates:
                out[f"{p}{name}_median"] = safe_median(v)
                out[f"{p}{name}_mean"] = safe_mean(v)
            out[p + "over_mixture_median"] = safe_median(i - mx)
            out[p + "over_mixture_mean"] = safe_mean(i - mx)
            out[p + "better_than_mixture"] = safe_mean((i > mx).float())
            if full("random"):
                out[p + "better_than_random"] = safe_mean((i > c["random"][sel]).float())
            if subset == "multi" and full("other"):
                out[p + "specificity"] = safe_mean((i > c["other"][sel]).float())
            out[p + "energy_in_support_mean"] = safe_mean(c["energy"][sel])
            if full("energy_random"):
                out[p + "energy_in_support_random_mean"] = safe_mean(c["energy_random"][sel])
        return out
