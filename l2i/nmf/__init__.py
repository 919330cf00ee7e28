"""Non-negative matrix factorisation for stage 1 (dictionary learning), pure torch.

Frames are samples: a spectrogram in the NMF domain (``V = log1p|X|``) is stacked over clips into a matrix
``V`` of shape ``(F, N)`` (``F`` frequency bins, ``N`` frames) and factorised as ``V ≈ W H`` with the
**dictionary** ``W`` of shape ``(F, K)`` (non-negative, every column of unit L2 norm) and the
**activations** ``H`` of shape ``(K, N)`` (non-negative).

Objective (``beta`` selects the β-divergence, ``sparsity`` is λ ≥ 0; ``||H||_1`` is the sum of all
entries of H because H ≥ 0)::

    beta = 2 (Euclidean):  0.5 * ||V - W H||_F^2            + λ * ||H||_1
    beta = 1 (KL):         Σ_fn [V log(V / WH) - V + WH]     + λ * ||H||_1

minimised over ``W ≥ 0`` with ``||w_k||_2 = 1`` for every column ``k`` and ``H ≥ 0``. Because W's columns
have unit norm, the L1 penalty cannot be dodged by shrinking H and growing W.

Solvers (all monotone: the objective never increases from one iteration to the next, up to rounding):

* ``"hals"`` (β = 2 only, the default for β = 2): hierarchical alternating least squares, i.e. exact
  block-coordinate descent on one row of H / one column of W at a time. One pass computes ``WᵀV`` and
  ``WᵀW`` once and then runs ``inner_iters`` sweeps over the rows of H (each costing ``K² N`` instead of
  the ``F K N`` of the big product), then ``VHᵀ`` and ``HHᵀ`` once and ``inner_iters`` sweeps over the
  columns of W (``F K²`` each). The column update ``w_k = [r]_+ / ||[r]_+||`` is the exact minimiser over
  unit-norm non-negative columns, so normalisation costs no monotonicity (Gillis & Glineur 2012,
  "Accelerated multiplicative updates and HALS").
* ``"mu"`` (β = 2 and β = 1): multiplicative updates. The W update is the majorise-minimise step of the
  scale-invariant objective ``D(V|WH) + λ Σ_k ||w_k|| ||h_k||_1`` (equal to the objective above when the
  columns have unit norm), followed by column normalisation with the inverse rescaling of H's rows; this
  keeps the product ``WH`` and the objective unchanged, so MU stays monotone with ``sparsity > 0``.

Streaming (:meth:`NMF.fit_stream`): online mini-batch NMF (Mairal et al. 2010, "Online learning for matrix
factorization and sparse coding"; scikit-learn's ``MiniBatchNMF``). For each mini-batch the activations
are estimated with W fixed, sufficient statistics are accumulated with a forgetting factor and W is
updated from them; the data set is never held in memory. W starts from a short full-batch fit on the first
mini-batch rather than from K random frames, the textbook start, which falls into worse local minima (the
README's measured notes give the gap). A fixed block (e.g. noise components) can be kept
unchanged while the rest is learnt.

The package, by room (import everything from ``l2i.nmf``):

* :mod:`l2i.nmf.core` - input checks, the objective, :class:`NMFResult` and the update kernels;
* :mod:`l2i.nmf.solvers` - :class:`NMF`: the full-batch fit (HALS, MU) and :meth:`NMF.transform`;
* :mod:`l2i.nmf.streaming` - online mini-batch fitting (:meth:`NMF.fit_stream`) and its resumable state;
* :mod:`l2i.nmf.blocks` - dictionaries made of named blocks (per class, noise + events, weak labels).

Nothing here imports Lightning.
"""

from l2i.nmf.blocks import (
    SHARED_LABEL,
    BlockDictionary,
    concat_dictionaries,
    fit_per_class,
    fit_weak_labels,
    fit_with_noise,
)
from l2i.nmf.core import NMFResult, check_nonnegative, nmf_objective, normalize_columns, update_activations
from l2i.nmf.solvers import NMF

__all__ = [
    "NMF",
    "NMFResult",
    "BlockDictionary",
    "check_nonnegative",
    "nmf_objective",
    "normalize_columns",
    "update_activations",
    "concat_dictionaries",
    "fit_per_class",
    "fit_weak_labels",
    "SHARED_LABEL",
    "fit_with_noise",
]
