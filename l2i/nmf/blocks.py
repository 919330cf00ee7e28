"""Dictionaries made of named blocks (the paper's set-ups): :class:`BlockDictionary`,
:func:`concat_dictionaries`, one block per class (:func:`fit_per_class`), a fixed noise block plus event
components (:func:`fit_with_noise`, SONYC-UST) and class blocks learnt from clip labels alone
(:func:`fit_weak_labels`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from l2i.nmf.core import NMFResult, _frames, check_nonnegative, normalize_columns
from l2i.nmf.solvers import NMF

@dataclass
class BlockDictionary:
    """Concatenated dictionaries with the block each column belongs to.

    Attributes:
        dictionary: ``W (F, K_total)``.
        labels: ``K_total`` labels, one per column (the block name).
        results: per-block :class:`NMFResult` when the blocks were learnt here (else empty).
    """

    dictionary: Tensor
    labels: list[str]
    results: dict[str, NMFResult] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Block names in column order (each once)."""
        return list(dict.fromkeys(self.labels))

    def columns(self, name: str) -> Tensor:
        """Indices (LongTensor) of the columns of block ``name``."""
        idx = [i for i, lab in enumerate(self.labels) if lab == name]
        if not idx:
            raise KeyError(f"no block named {name!r}; blocks: {self.names}")
        return torch.tensor(idx, dtype=torch.long)


def concat_dictionaries(
    dictionaries: Sequence[Tensor] | Mapping[str, Tensor], names: Sequence[str] | None = None
) -> BlockDictionary:
    """Concatenate dictionaries ``W_i (F, K_i)`` column-wise into ``(F, Σ K_i)``, normalising columns.

    ``dictionaries`` is a sequence (block names from ``names``, default ``"block0"``, ``"block1"``…) or a
    mapping name -> W (ordered). E.g. ``concat_dictionaries([W_noise, W_events], names=["noise",
    "events"])``. Returns a :class:`BlockDictionary` whose ``labels`` name the block of every column.
    """
    if isinstance(dictionaries, Mapping):
        if names is not None:
            raise ValueError("pass names either as mapping keys or as `names`, not both")
        names = [str(k) for k in dictionaries.keys()]
        mats = list(dictionaries.values())
    else:
        mats = list(dictionaries)
        names = [f"block{i}" for i in range(len(mats))] if names is None else [str(n) for n in names]
    if not mats:
        raise ValueError("concat_dictionaries needs at least one dictionary")
    if len(names) != len(mats):
        raise ValueError(f"{len(mats)} dictionaries but {len(names)} names")
    if len(set(names)) != len(names):
        raise ValueError(f"block names must be unique, got {names}")
    F = None
    cols, labels = [], []
    for name, W in zip(names, mats):
        W = check_nonnegative(W, f"dictionary {name!r}")
        if W.dim() != 2:
            raise ValueError(f"dictionary {name!r} must be (F, K), got shape {tuple(W.shape)}")
        if F is None:
            F = W.shape[0]
        elif W.shape[0] != F:
            raise ValueError(f"dictionary {name!r} has {W.shape[0]} frequency bins, the first has {F}")
        cols.append(normalize_columns(W)[0])
        labels += [name] * W.shape[1]
    dtype = torch.promote_types(cols[0].dtype, torch.float32)
    device = cols[0].device
    return BlockDictionary(torch.cat([c.to(device, dtype) for c in cols], dim=1), labels)


# ---------------------------------------------------------------------------------------------------------
# block helpers of the paper
# ---------------------------------------------------------------------------------------------------------
def fit_per_class(
    data: Mapping[str, Any], n_components: int | Mapping[str, int], **nmf_kwargs: Any
) -> BlockDictionary:
    """Learn one dictionary per class and concatenate them.

    Args:
        data: class name -> its non-negative spectra ``(F, N_c)`` or ``(B_c, F, T)``.
        n_components: columns per class (an int for all, or a mapping class -> K_c).
        **nmf_kwargs: passed to :class:`NMF` (the seed is offset by the class index).

    Returns:
        :class:`BlockDictionary`: ``dictionary (F, Σ K_c)`` in the order of ``data``, ``labels`` the class
        of each column, ``results`` class -> :class:`NMFResult`.
    """
    if not data:
        raise ValueError("fit_per_class needs at least one class")
    seed = int(nmf_kwargs.pop("seed", 0))
    results: dict[str, NMFResult] = {}
    for i, (name, V) in enumerate(data.items()):
        if isinstance(n_components, Mapping):
            if name not in n_components:
                raise ValueError(f"n_components has no entry for class {name!r}")
            k = n_components[name]
        else:
            k = n_components
        res = NMF(k, seed=seed + i, **nmf_kwargs).fit(check_nonnegative(V, f"spectra of class {name!r}"))
        res.labels = [str(name)] * res.dictionary.shape[1]
        results[str(name)] = res
    block = concat_dictionaries({n: r.dictionary for n, r in results.items()})
    block.results = results
    return block


def fit_with_noise(
    V: Any,
    V_noise: Any,
    n_noise: int,
    n_components: int,
    *,
    noise_label: str = "noise",
    event_label: str = "event",
    **nmf_kwargs: Any,
) -> NMFResult:
    """The SONYC-UST setup: ``n_noise`` components learnt on noise-only spectra ``V_noise``, then kept fixed
    while ``n_components`` more are learnt on ``V``.

    Returns:
        :class:`NMFResult` on ``V`` with ``dictionary (F, n_noise + n_components)`` (noise block first),
        ``activations`` over all columns and ``labels`` ``[noise_label] * n_noise + [event_label] * n_components``.
        The noise-only fit is kept in no field; call :class:`NMF` yourself if you need it.
    """
    noise = NMF(n_noise, **nmf_kwargs).fit(check_nonnegative(V_noise, "V_noise"))
    res = NMF(n_components, **nmf_kwargs).fit(V, W_fixed=noise.dictionary)
    res.labels = [noise_label] * n_noise + [event_label] * n_components
    return res


#: label of the columns every clip may use in :func:`fit_weak_labels`
SHARED_LABEL = "shared"


def fit_weak_labels(
    V: Any,
    targets: Any,
    class_names: Sequence[str],
    n_components: int,
    shared_components: int = 0,
    *,
    W_fixed: Tensor | None = None,
    fixed_label: str = "noise",
    **nmf_kwargs: Any,
) -> NMFResult:
    """Class-specific dictionary blocks learnt from clip labels alone (weak-label constrained NMF).

    ``V (B, F, T)`` spectra of B clips, ``targets (B, C)`` their multi-hot labels (or ``(B,)`` class indices).
    The dictionary has a block of ``n_components`` columns per class and ``shared_components`` columns every
    clip may use; on a clip without class c the activations of c's block are **held at zero**, so c's block
    only ever explains frames of clips that contain c, and what all clips share goes to the shared block.
    Multiplicative updates (``solver="mu"``) keep an activation that starts at zero at zero, so the constraint
    is the initialisation of H, nothing more. ``W_fixed`` (e.g. a noise block learnt first) comes first and
    stays fixed.

    Returns:
        :class:`NMFResult` with ``dictionary (F, K0 + shared + C·n_components)`` (fixed, shared, then class
        blocks in class order), ``activations (B, K, T)`` and ``labels`` naming each column's block.
    """
    V = check_nonnegative(V, "V")
    if V.dim() != 3:
        raise ValueError(f"fit_weak_labels: V must be (B, F, T) spectra of clips, got {tuple(V.shape)}")
    B, F, T = V.shape
    targets = torch.as_tensor(targets)
    C = len(class_names)
    if targets.dim() == 1:
        targets = torch.nn.functional.one_hot(targets.long(), C)
    if tuple(targets.shape) != (B, C):
        raise ValueError(f"fit_weak_labels: targets must be (B={B}, C={C}) multi-hot, got {tuple(targets.shape)}")
    if int(n_components) < 1 or int(shared_components) < 0:
        raise ValueError(f"fit_weak_labels: n_components must be >= 1 and shared_components >= 0, got "
                         f"{n_components}, {shared_components}")
    present = (targets > 0.5).to(V.dtype)  # (B, C)
    nmf_kwargs.setdefault("solver", "mu")
    if nmf_kwargs["solver"] != "mu":
        raise ValueError("fit_weak_labels needs solver='mu' (the multiplicative updates keep the zeros of H)")
    K0 = 0 if W_fixed is None else int(W_fixed.shape[1])
    K_free = int(shared_components) + C * int(n_components)
    model = NMF(K_free, **nmf_kwargs)
    Vf = model._prep(V)
    frames, _ = _frames(Vf)
    W, H = model._init(frames, K0 + K_free)  # H (K, B*T)
    allowed = torch.ones(B, K0 + K_free, dtype=V.dtype, device=Vf.device)
    allowed[:, K0 + int(shared_components):] = present.to(Vf.device).repeat_interleave(int(n_components), dim=1)
    H = H * allowed.repeat_interleave(T, dim=0).t().to(H.dtype)
    if W_fixed is not None:
        W[:, :K0] = model._prep_dictionary(W_fixed, F, Vf.device, "W_fixed")
    res = model.fit(Vf, W_fixed=W_fixed, W0=W, H0=H.reshape(K0 + K_free, B, T).permute(1, 0, 2))
    res.labels = [fixed_label] * K0 + [SHARED_LABEL] * int(shared_components) + [
        str(name) for name in class_names for _ in range(int(n_components))]
    return res
