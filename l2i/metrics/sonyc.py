"""The official SONYC-UST / DCASE 2020 task 5 metric (micro-AUPRC, macro-AUPRC, micro-F1 at 0.5) as a
``torchmetrics.Metric``, at coarse (8 tags) or fine (23 tags + the ``c-X`` "incomplete" tags) level.

The curve is the DCASE baseline's (``metrics.py`` of the task 5 baseline), not torchmetrics' step-wise
average precision. Per coarse group g:

- thresholds: the sorted unique predicted values of g's (complete) columns that are >= ``min_threshold``
  (0.01), plus 1.0; a prediction is positive when ``p >= t``;
- TP/FP/FN at each threshold summed over clips and columns; at fine level clips whose ground truth holds
  ``c-X`` fall back to coarse counting for the group (see :func:`group_counts`);
- ``P = TP / max(TP + FP, 0.5)``, ``R = TP / max(TP + FN, 0.5)``; points sorted by recall, ``(R=0, P=1)``
  prepended and ``(R=1, P=0)`` appended, area by the trapezoid rule. Points with equal recall keep the
  baseline's table order (thresholds descending per group, ascending for the micro table): the baseline
  calls numpy's default (unstable) argsort, whose order of ties - and so the area - depends on the numpy
  version and CPU (AVX-512 sorts differ); we sort stably so a result is the same everywhere.

macro-AUPRC = mean of the 8 group AUPRCs (also at fine level); micro-AUPRC = the same curve on TP/FP/FN
summed over groups at every threshold of the union of the groups' thresholds (each group evaluated at its
smallest own threshold >= t, as the baseline does); micro-F1 = ``2 / (1/P + 1/R)`` of that micro table at
the first threshold >= 0.5.

The counts at all thresholds come from sorted arrays and ``searchsorted`` (O(n log n)), equal to the
baseline's per-threshold loop (tested against a direct loop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = [
    "SONYCTaxonomy",
    "DEFAULT_TAXONOMY",
    "group_counts",
    "dcase_ust_scores",
    "SONYCUSTMetric",
]


@dataclass(frozen=True)
class SONYCTaxonomy:
    """The SONYC-UST v2 taxonomy (``dcase-ust-taxonomy.yaml``): ``coarse {id: name}``, ``fine {coarse_id:
    {fine_id: name}}`` with fine ids ``1, 2, ...`` and ``"X"`` for the incomplete tag.

    Tag names as in the annotation columns (without ``_presence``): coarse ``"1_engine"``, fine
    ``"1-1_small-sounding-engine"`` / ``"1-X_engine-of-uncertain-size"``. Plain data, as the metric needs it;
    reading a release's taxonomy file is the data set's business (:func:`datamodules.sonyc_ust.read_taxonomy`).
    """

    coarse: dict = field(default_factory=dict)
    fine: dict = field(default_factory=dict)

    def coarse_ids(self) -> list[int]:
        return sorted(self.coarse)

    def coarse_tags(self) -> list[str]:
        return [f"{c}_{self.coarse[c]}" for c in self.coarse_ids()]

    def fine_ids(self, coarse_id: int, with_x: bool = True) -> list:
        ids = sorted(k for k in self.fine[coarse_id] if k != "X")
        return ids + (["X"] if with_x and "X" in self.fine[coarse_id] else [])

    def fine_tags(self, with_x: bool = True) -> list[str]:
        """Fine tags in canonical order: per coarse id, fine ids ascending then ``X``."""
        return [f"{c}-{f}_{self.fine[c][f]}" for c in self.coarse_ids() for f in self.fine_ids(c, with_x)]

    def x_tags(self) -> list[str]:
        return [f"{c}-X_{self.fine[c]['X']}" for c in self.coarse_ids() if "X" in self.fine[c]]

    def fine_groups(self) -> list[tuple[list[int], int | None]]:
        """Per coarse group: (indices of its complete fine tags, index of its X tag or None) in
        :meth:`fine_tags` (``with_x=True``) order."""
        groups, i = [], 0
        for c in self.coarse_ids():
            complete, x = [], None
            for f in self.fine_ids(c, True):
                if f == "X":
                    x = i
                else:
                    complete.append(i)
                i += 1
            groups.append((complete, x))
        return groups


DEFAULT_TAXONOMY = SONYCTaxonomy(
    coarse={1: "engine", 2: "machinery-impact", 3: "non-machinery-impact", 4: "powered-saw",
            5: "alert-signal", 6: "music", 7: "human-voice", 8: "dog"},
    fine={
        1: {1: "small-sounding-engine", 2: "medium-sounding-engine", 3: "large-sounding-engine", "X": "engine-of-uncertain-size"},
        2: {1: "rock-drill", 2: "jackhammer", 3: "hoe-ram", 4: "pile-driver", "X": "other-unknown-impact-machinery"},
        3: {1: "non-machinery-impact"},
        4: {1: "chainsaw", 2: "small-medium-rotating-saw", 3: "large-rotating-saw", "X": "other-unknown-powered-saw"},
        5: {1: "car-horn", 2: "car-alarm", 3: "siren", 4: "reverse-beeper", "X": "other-unknown-alert-signal"},
        6: {1: "stationary-music", 2: "mobile-music", 3: "ice-cream-truck", "X": "music-from-uncertain-source"},
        7: {1: "person-or-small-group-talking", 2: "person-or-small-group-shouting", 3: "large-crowd", 4: "amplified-speech", "X": "other-unknown-human-voice"},
        8: {1: "dog-barking-whining"},
    },
)  # fmt: skip


def _count_ge(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each threshold t: how many ``values >= t``. -> int64 ``(T,)``."""
    s = np.sort(values.ravel())
    return (len(s) - np.searchsorted(s, thresholds, side="left")).astype(np.int64)


def group_counts(
    preds: np.ndarray,
    target: np.ndarray,
    preds_x: np.ndarray | None = None,
    target_x: np.ndarray | None = None,
    min_threshold: float = 0.01,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The baseline's table for one coarse group -> ``(thresholds, TP, FP, FN)``, thresholds **descending**.

    ``preds``/``target``: ``(N, K)`` for the group's K complete tags (coarse level: K=1, the coarse tag);
    ``preds_x``/``target_x``: ``(N,)`` for its ``c-X`` tag (None = no X tag: zeros). Counting at threshold
    t (``Ŷ = preds >= t``, ``x̂ = preds_x >= t``, ``M_n = max(max_k preds, preds_x)``):

    - complete part: TP = #(Y & Ŷ); FP = #(~Y & Ŷ) on clips whose truth lacks X; FN = #(Y & ~Ŷ);
    - X truth (coarse fallback): +1 TP if ``M_n >= t`` and no true complete tag is predicted; +1 FN if the
      clip has no true complete tag and ``M_n < t``;
    - X predicted, truth has neither X nor complete tags: +1 FP if ``x̂`` and not every complete tag is
      predicted.
    """
    P = np.asarray(preds, dtype=np.float64)
    Y = np.asarray(target).astype(bool)
    if P.ndim != 2 or P.shape != Y.shape:
        raise ValueError(f"preds and target must both be (N, K), got {P.shape} and {Y.shape}")
    n = P.shape[0]
    px = np.zeros(n) if preds_x is None else np.asarray(preds_x, dtype=np.float64).reshape(n)
    yx = np.zeros(n, dtype=bool) if target_x is None else np.asarray(target_x).astype(bool).reshape(n)

    values = np.sort(P.ravel())
    thresholds = values[np.searchsorted(values, min_threshold):]
    thresholds = np.unique(np.append(thresholds, 1.0))[::-1]

    tp = _count_ge(P[Y], thresholds)
    fp = _count_ge(P[~Y & ~yx[:, None]], thresholds)
    fn = int(Y.sum()) - tp

    any_true = Y.any(axis=1)
    m_all = np.maximum(P.max(axis=1), px) if P.shape[1] else px
    a_true = np.where(Y, P, -np.inf).max(axis=1) if P.shape[1] else np.full(n, -np.inf)
    sel = yx  # TP_X: A_n < t <= M_n
    tp = tp + _count_ge(m_all[sel], thresholds) - _count_ge(np.minimum(a_true[sel], m_all[sel]), thresholds)
    sel = ~yx & ~any_true  # FP_X: min_k P < t <= px
    p_min = P.min(axis=1) if P.shape[1] else np.full(n, -np.inf)
    fp = fp + _count_ge(px[sel], thresholds) - _count_ge(np.minimum(p_min[sel], px[sel]), thresholds)
    sel = yx & ~any_true  # FN_X: M_n < t
    fn = fn + int(sel.sum()) - _count_ge(m_all[sel], thresholds)
    return thresholds, tp, fp, fn


def _pr(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = 0.5
    return tp / np.maximum(tp + fp, mu), tp / np.maximum(tp + fn, mu)


def _auprc(precision: np.ndarray, recall: np.ndarray) -> float:
    order = np.argsort(recall, kind="stable")  # ties keep the table's row order (see module doc)
    r = np.concatenate([[0.0], recall[order], [1.0]])
    p = np.concatenate([[1.0], precision[order], [0.0]])
    return float((np.diff(r) * (p[1:] + p[:-1]) / 2.0).sum())


def dcase_ust_scores(
    preds: np.ndarray,
    target: np.ndarray,
    groups: list[tuple[list[int], int | None]],
    min_threshold: float = 0.01,
) -> dict[str, float | list[float]]:
    """Official scores from ``preds``/``target`` ``(N, C)`` and the column groups -> ``{"micro_auprc",
    "macro_auprc", "micro_f1", "classwise_auprc" (one per group)}``.

    ``groups``: per coarse group ``(complete column indices, X column index or None)``; coarse level is
    ``[([0], None), ([1], None), ...]``.
    """
    preds = np.asarray(preds, dtype=np.float64)
    target = np.asarray(target)
    tables = []
    for complete, x in groups:
        tables.append(group_counts(
            preds[:, complete], target[:, complete],
            None if x is None else preds[:, x], None if x is None else target[:, x], min_threshold,
        ))
    classwise = []
    for thr, tp, fp, fn in tables:
        p, r = _pr(tp, fp, fn)
        classwise.append(_auprc(p, r))

    thresholds = np.unique(np.hstack([t[0] for t in tables]))  # ascending
    tp_sum = np.zeros(len(thresholds), dtype=np.int64)
    fp_sum = np.zeros_like(tp_sum)
    fn_sum = np.zeros_like(tp_sum)
    for thr, tp, fp, fn in tables:
        asc = thr[::-1]
        j = np.searchsorted(asc, thresholds, side="left")  # the group's smallest threshold >= t
        if (j >= len(asc)).any():
            raise ValueError("predictions above 1.0: the metric expects probabilities in [0, 1]")
        tp_sum += tp[::-1][j]
        fp_sum += fp[::-1][j]
        fn_sum += fn[::-1][j]
    p, r = _pr(tp_sum, fp_sum, fn_sum)
    with np.errstate(divide="ignore"):
        f = 2.0 / (1.0 / p + 1.0 / r)
    i05 = int(np.nonzero(thresholds >= 0.5)[0][0])
    return {
        "micro_auprc": _auprc(p, r),
        "macro_auprc": float(np.mean(classwise)),
        "micro_f1": float(f[i05]),
        "classwise_auprc": classwise,
    }


class SONYCUSTMetric(Metric):
    """DCASE 2020 task 5 scores accumulated over batches (states are concatenated lists: exact under DDP).

    ``update(preds, target, target_x=None)``:

    - ``level="coarse"``: ``preds`` probabilities ``(B, 8)``, ``target`` {0,1} ``(B, 8)``
      (:meth:`SONYCTaxonomy.coarse_tags` order);
    - ``level="fine"``: ``preds`` ``(B, 29)`` over :meth:`SONYCTaxonomy.fine_tags` (23 fine + 6 X tags) or
      ``(B, 23)`` (no X predictions: counted as 0, as the baseline does for missing columns); ``target``
      ``(B, 29)``, or ``(B, 23)`` together with ``target_x`` ``(B, 6)`` (:meth:`SONYCTaxonomy.x_tags` order).

    ``compute()`` -> ``{"micro_auprc", "macro_auprc", "micro_f1"}`` 0-d float tensors (plus
    ``"auprc/<coarse tag>"`` for every group when ``classwise=True``).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        level: Literal["coarse", "fine"] = "coarse",
        taxonomy: SONYCTaxonomy | None = None,
        min_threshold: float = 0.01,
        classwise: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if level not in ("coarse", "fine"):
            raise ValueError(f"level must be 'coarse' or 'fine', got {level!r}")
        self.level = level
        self.taxonomy = taxonomy or DEFAULT_TAXONOMY
        self.min_threshold = float(min_threshold)
        self.classwise = bool(classwise)
        tx = self.taxonomy
        self._n_coarse = len(tx.coarse)
        self._n_full = len(tx.fine_tags(with_x=True))
        self._n_complete = len(tx.fine_tags(with_x=False))
        self._x_positions = [x for _, x in tx.fine_groups() if x is not None]
        self._complete_positions = [i for c, _ in tx.fine_groups() for i in c]
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    @property
    def num_columns(self) -> int:
        return self._n_coarse if self.level == "coarse" else self._n_full

    def _expand(self, x: torch.Tensor, x_tags: torch.Tensor | None) -> torch.Tensor:
        """``(B, 23)`` (+ ``(B, 6)``) -> ``(B, 29)`` in fine_tags order."""
        full = x.new_zeros(x.shape[0], self._n_full)
        full[:, self._complete_positions] = x
        if x_tags is not None:
            full[:, self._x_positions] = x_tags.to(x.dtype)
        return full

    def update(self, preds: torch.Tensor, target: torch.Tensor, target_x: torch.Tensor | None = None) -> None:
        # float64 predictions stay float64 (a float32 cast moves e.g. 0.01 below the 0.01 threshold floor)
        preds = preds.detach().to(torch.float64 if preds.dtype == torch.float64 else torch.float32)
        target = target.detach().to(preds.dtype)
        if preds.dim() != 2 or target.dim() != 2 or preds.shape[0] != target.shape[0]:
            raise ValueError(f"preds and target must be (B, C) with the same B, got {tuple(preds.shape)}, {tuple(target.shape)}")
        if self.level == "fine":
            if preds.shape[1] == self._n_complete:
                preds = self._expand(preds, None)
            if target.shape[1] == self._n_complete:
                if target_x is None or target_x.shape != (target.shape[0], len(self._x_positions)):
                    raise ValueError(f"fine target with {self._n_complete} columns needs target_x of shape (B, {len(self._x_positions)})")
                target = self._expand(target, target_x.detach().to(target.dtype))
        n = self.num_columns
        if preds.shape[1] != n or target.shape[1] != n:
            raise ValueError(
                f"{self.level} level expects {n} columns, got preds {tuple(preds.shape)} and target {tuple(target.shape)}"
            )
        if preds.numel() and (preds.min() < 0 or preds.max() > 1 or not torch.isfinite(preds).all()):
            raise ValueError("preds must be probabilities in [0, 1] (apply a sigmoid to logits first)")
        if not torch.isin(target, target.new_tensor([0.0, 1.0])).all():
            raise ValueError("target must hold only 0 and 1")
        self.preds.append(preds)
        self.target.append(target)

    def compute(self) -> dict[str, torch.Tensor]:
        preds = dim_zero_cat(self.preds).cpu().double().numpy()
        target = dim_zero_cat(self.target).cpu().numpy()
        if self.level == "coarse":
            groups = [([i], None) for i in range(self._n_coarse)]
        else:
            groups = self.taxonomy.fine_groups()
        scores = dcase_ust_scores(preds, target, groups, self.min_threshold)
        out = {k: torch.tensor(scores[k], dtype=torch.float32) for k in ("micro_auprc", "macro_auprc", "micro_f1")}
        if self.classwise:
            for tag, v in zip(self.taxonomy.coarse_tags(), scores["classwise_auprc"]):
                out[f"auprc/{tag}"] = torch.tensor(v, dtype=torch.float32)
        return out
