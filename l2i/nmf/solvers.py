"""The full-batch NMF solver :class:`NMF`: HALS (β = 2) and multiplicative updates (β = 1, 2) with
unit-norm dictionary columns and an L1 penalty on the activations (objective and solvers: see the
:mod:`l2i.nmf` docstring); :meth:`NMF.transform` solves the activations of a fixed dictionary. Streaming
(:meth:`NMF.fit_stream`, the resumable state) comes from :class:`l2i.nmf.streaming.StreamingMixin`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from l2i.nmf.core import (
    _TINY,
    NMFResult,
    _frames,
    _hals_dictionary,
    _hals_rows,
    _inner,
    _nndsvda,
    _renormalise,
    _sqnorm,
    _unframes,
    check_nonnegative,
    nmf_objective,
    normalize_columns,
)
from l2i.nmf.streaming import StreamingMixin


# ---------------------------------------------------------------------------------------------------------
# the solver
# ---------------------------------------------------------------------------------------------------------
class NMF(StreamingMixin):
    """NMF ``V (F, N) ≈ W (F, K) H (K, N)`` with unit-norm dictionary columns and an L1 penalty on H.

    Args:
        n_components: K, the number of (free) dictionary columns.
        beta: 2 (Euclidean, default) or 1 (Kullback-Leibler).
        sparsity: λ ≥ 0 of the L1 penalty ``λ ||H||_1``.
        solver: ``"hals"`` (β = 2), ``"mu"`` (β = 1 or 2) or ``"auto"`` (HALS for β = 2, MU for β = 1).
        max_iter: maximum passes of :meth:`fit`.
        tol: stop when the relative objective decrease of one pass, ``(prev - cur) / prev``, is below tol
            (0 runs all ``max_iter`` passes).
        inner_iters: HALS sweeps over H's rows and over W's columns per pass (re-using ``WᵀV``/``WᵀW``
            and ``VHᵀ``/``HHᵀ``).
        init: ``"random"`` (uniform, scaled to V's mean) or ``"nndsvda"`` (sign-split truncated SVD,
            zeros filled with V's mean).
        seed: seed of the initialisation (a CPU generator, so results do not depend on the device).
        dtype: computation dtype (float32 default; float64 for tight checks).
        device: computation device (default: the input's device).
        eps: floor of divisors / of ``WH`` in KL.
        transform_iters, transform_tol: cap and relative-change stop of the activation solve in
            :meth:`transform` and per mini-batch in :meth:`fit_stream`.
        chunk_size: frames per block of the HALS row sweeps (keeps the block of H in cache on CPU).
        init_iters: iterations of the full-batch fit on the first mini-batch that initialises
            :meth:`fit_stream` (when no ``W0`` is given).
        progress: show tqdm bars (fit_stream per epoch; fit per iteration).
    """

    def __init__(
        self,
        n_components: int,
        *,
        beta: float = 2.0,
        sparsity: float = 0.0,
        solver: str = "auto",
        max_iter: int = 200,
        tol: float = 1e-4,
        inner_iters: int = 3,
        init: str = "random",
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
        eps: float = 1e-10,
        transform_iters: int = 100,
        transform_tol: float = 1e-4,
        chunk_size: int = 8192,
        init_iters: int = 50,
        progress: bool = False,
    ):
        if int(n_components) < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if beta not in (1, 2):
            raise ValueError(f"beta must be 1 (KL) or 2 (Euclidean), got {beta}")
        if sparsity < 0 or not math.isfinite(sparsity):
            raise ValueError(f"sparsity must be a finite value >= 0, got {sparsity}")
        if solver == "auto":
            solver = "hals" if beta == 2 else "mu"
        if solver not in ("hals", "mu"):
            raise ValueError(f"solver must be 'auto', 'hals' or 'mu', got {solver!r}")
        if solver == "hals" and beta != 2:
            raise ValueError("solver='hals' needs beta=2 (Euclidean); use solver='mu' for beta=1")
        if init not in ("random", "nndsvda"):
            raise ValueError(f"init must be 'random' or 'nndsvda', got {init!r}")
        if int(max_iter) < 1 or int(inner_iters) < 1 or int(transform_iters) < 1 or int(chunk_size) < 1:
            raise ValueError("max_iter, inner_iters, transform_iters and chunk_size must be >= 1")
        if tol < 0 or transform_tol < 0:
            raise ValueError(f"tol and transform_tol must be >= 0, got {tol}, {transform_tol}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        self.n_components = int(n_components)
        self.beta = int(beta)
        self.sparsity = float(sparsity)
        self.solver = solver
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.inner_iters = int(inner_iters)
        self.init = init
        self.seed = int(seed)
        self.dtype = dtype
        self.device = None if device is None else torch.device(device)
        self.eps = float(eps)
        self.transform_iters = int(transform_iters)
        self.transform_tol = float(transform_tol)
        self.chunk_size = int(chunk_size)
        self.init_iters = int(init_iters)
        self.progress = bool(progress)
        self.dictionary_: Tensor | None = None
        self._stream: dict[str, Any] | None = None

    # -- plumbing ----------------------------------------------------------------------------------------
    def _prep(self, V: Any, name: str = "V") -> Tensor:
        V = check_nonnegative(V, name)
        device = self.device if self.device is not None else V.device
        return V.to(device=device, dtype=self.dtype)

    def _prep_dictionary(self, W: Any, F: int, device: torch.device, name: str = "W") -> Tensor:
        W = check_nonnegative(W, name)
        if W.dim() != 2 or W.shape[0] != F:
            raise ValueError(f"{name} must be ({F}, K) to match V's {F} frequency bins, got shape {tuple(W.shape)}")
        W = W.to(device=device, dtype=self.dtype)
        W, norms = normalize_columns(W)
        if bool((norms == 0).any()):
            raise ValueError(f"{name} has all-zero column(s) {torch.nonzero(norms == 0).flatten().tolist()}")
        return W

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def _init(self, V: Tensor, K: int) -> tuple[Tensor, Tensor]:
        F, N = V.shape
        gen = self._generator()
        mean = float(V.mean())
        if self.init == "nndsvda":
            W, H = _nndsvda(V, K, gen)
        else:
            W = torch.rand(F, K, generator=gen, dtype=torch.float64).to(V.device, V.dtype)
            H = torch.rand(K, N, generator=gen, dtype=torch.float64).to(V.device, V.dtype)
        W, norms = normalize_columns(W)
        H = H * norms[:, None]
        if self.init == "random":
            # scale H so that mean(W H) = mean(V): mean(WH) = (1ᵀW)(H1) / (F N)
            cur = float(W.sum(dim=0) @ H.sum(dim=1)) / (F * N)
            H = H * (mean / max(cur, _TINY))
        bad = norms == 0  # NNDSVD may give empty columns: random unit columns instead
        if bool(bad.any()):
            fill = torch.rand(F, int(bad.sum()), generator=gen, dtype=torch.float64).to(V.device, V.dtype)
            W[:, bad] = normalize_columns(fill)[0]
            H[bad] = mean
        return W.contiguous(), H.contiguous()

    # -- public: objective -------------------------------------------------------------------------------
    def objective(self, V: Tensor, W: Tensor, H: Tensor) -> float:
        """The objective (module docstring) of ``V (F, N)`` at ``W (F, K)``, ``H (K, N)``; also accepts
        ``V (B, F, T)`` with ``H (B, K, T)``."""
        V2, bs = _frames(V)
        H2 = H if bs is None else _frames(H, "H")[0]
        return nmf_objective(V2, W, H2, self.beta, self.sparsity, self.eps)

    def score(self, V: Tensor, W: Tensor | None = None) -> float:
        """Objective of ``V`` with the dictionary fixed (``W`` or the fitted one) and H from :meth:`transform`."""
        W = self._fitted(W)
        V = self._prep(V)
        H = self.transform(V, W)
        return self.objective(V, normalize_columns(W.to(V.device, V.dtype))[0], H)

    def _fitted(self, W: Tensor | None) -> Tensor:
        if W is not None:
            return W
        if self.dictionary_ is None:
            raise ValueError("no dictionary: pass W or call fit / fit_stream first")
        return self.dictionary_

    # -- public: full-matrix fit -------------------------------------------------------------------------
    def fit(
        self,
        V: Any,
        *,
        W_fixed: Tensor | None = None,
        W0: Tensor | None = None,
        H0: Tensor | None = None,
    ) -> NMFResult:
        """Factorise ``V (F, N)`` (or ``(B, F, T)``, frames of all clips pooled) as ``W H``.

        Args:
            V: non-negative spectra, ``(F, N)`` or ``(B, F, T)``.
            W_fixed: optional ``(F, K0)`` columns kept fixed (e.g. a noise block); they come first in the
                returned dictionary, which then has ``K0 + n_components`` columns.
            W0, H0: optional initial ``(F, K_total)`` / ``(K_total, N)`` (``K_total`` includes fixed
                columns; W0's fixed part is replaced by ``W_fixed``); the rest of the init is generated.

        Returns:
            :class:`NMFResult` with ``dictionary (F, K_total)``, ``activations (K_total, N)`` (``(B,
            K_total, T)`` for 3-D input), the history of objectives (one per iteration, plus the exact final
            value) and convergence flag.
        """
        V = self._prep(V)
        V, bs = _frames(V)
        F, N = V.shape
        K0 = 0
        Wf = None
        if W_fixed is not None:
            Wf = self._prep_dictionary(W_fixed, F, V.device, "W_fixed")
            K0 = Wf.shape[1]
        K = K0 + self.n_components
        W, H = self._init(V, K)
        if Wf is not None:
            W[:, :K0] = Wf
        if W0 is not None:
            W0 = self._prep_dictionary(W0, F, V.device, "W0")
            if W0.shape[1] != K:
                raise ValueError(f"W0 must have {K} columns (fixed + n_components), got {W0.shape[1]}")
            W = W0.clone()
            if Wf is not None:
                W[:, :K0] = Wf
        if H0 is not None:
            H0 = _frames(check_nonnegative(H0, "H0"), "H0")[0]
            if tuple(H0.shape) != (K, N):
                raise ValueError(f"H0 must be ({K}, {N}), got {tuple(H0.shape)}")
            H = H0.to(V.device, V.dtype).clone()
        free = torch.arange(K0, K, device=V.device)
        if self.solver == "hals":
            W, H, hist, conv = self._fit_hals(V, W, H, K0)
        elif self.beta == 2:
            W, H, hist, conv = self._fit_mu2(V, W, H, free)
        else:
            W, H, hist, conv = self._fit_mu1(V, W, H, free)
        final = nmf_objective(V, W, H, self.beta, self.sparsity, self.eps)
        hist.append(final)
        self.dictionary_ = W
        return NMFResult(W, _unframes(H, bs), final, hist, n_iter=len(hist) - 1, converged=conv)

    def _converged(self, hist: list[float]) -> bool:
        if self.tol <= 0 or len(hist) < 2:
            return False
        prev, cur = hist[-2], hist[-1]
        return (prev - cur) <= self.tol * max(abs(prev), _TINY)

    def _iters(self) -> Iterable[int]:
        if not self.progress:
            return range(self.max_iter)
        from tqdm.auto import tqdm

        return tqdm(range(self.max_iter), desc=f"NMF ({self.solver}, beta={self.beta})")

    def _fit_hals(self, V: Tensor, W: Tensor, H: Tensor, K0: int) -> tuple[Tensor, Tensor, list[float], bool]:
        normV2 = _sqnorm(V)
        Wt = W.t().contiguous()  # (K, F): rows are dictionary columns, contiguous for the column sweeps
        hist: list[float] = []
        conv = False
        for _ in self._iters():
            # H step: WᵀV - λ and WᵀW once, several sweeps over the rows of H
            WtV = Wt @ V
            if self.sparsity:
                WtV.sub_(self.sparsity)
            G = Wt @ Wt.t()
            _hals_rows(H, WtV, G, self.inner_iters, self.chunk_size)
            # W step: VHᵀ and HHᵀ once, several sweeps over the columns of W
            HHt = H @ H.t()
            HVt = H @ V.t()  # (K, F) = (VHᵀ)ᵀ
            obj = 0.5 * normV2 - _inner(WtV, H) + 0.5 * _inner(G, HHt)
            hist.append(obj)
            _hals_dictionary(Wt, HVt, HHt, self.inner_iters, K0)
            if self._converged(hist):
                conv = True
                break
        return Wt.t().contiguous(), H, hist, conv

    def _fit_mu2(self, V: Tensor, W: Tensor, H: Tensor, free: Tensor) -> tuple[Tensor, Tensor, list[float], bool]:
        eps, lam = self.eps, self.sparsity
        normV2 = _sqnorm(V)
        hist: list[float] = []
        conv = False
        for _ in self._iters():
            WtV = W.t() @ V
            G = W.t() @ W
            denom = (G @ H).add_(lam + eps)
            H.mul_(WtV).div_(denom)
            HHt = H @ H.t()
            VHt = V @ H.t()
            obj = 0.5 * normV2 - _inner(WtV, H) + 0.5 * _inner(G, HHt) + lam * float(H.sum(dtype=torch.float64))
            hist.append(obj)
            # MM step of D + λ Σ ||w_k|| ||h_k||_1 at unit-norm W: denominator W HHᵀ + λ W diag(||h_k||_1)
            denom = W @ HHt
            if lam:
                denom.add_(W * (lam * H.sum(dim=1))[None, :])
            Wn = W * VHt / denom.add_(eps)
            W, H = _renormalise(W, Wn, H, free)
            if self._converged(hist):
                conv = True
                break
        return W, H, hist, conv

    def _fit_mu1(self, V: Tensor, W: Tensor, H: Tensor, free: Tensor) -> tuple[Tensor, Tensor, list[float], bool]:
        eps, lam = self.eps, self.sparsity
        hist: list[float] = []
        conv = False
        for _ in self._iters():
            WH = (W @ H).clamp_min_(eps)
            obj = float((torch.xlogy(V, V) - torch.xlogy(V, WH) - V + WH).sum(dtype=torch.float64))
            hist.append(obj + lam * float(H.sum(dtype=torch.float64)))
            if self._converged(hist):
                conv = True
                break
            # H: H ⊙ Wᵀ(V/WH) / (Wᵀ1 + λ)
            H.mul_(W.t() @ (V / WH)).div_((W.sum(dim=0) + lam + eps)[:, None])
            WH = (W @ H).clamp_min_(eps)
            # W: exact MM minimiser of -a log w + b w + c w²/2 with c = λ ||h_k||_1 / ||w_k|| (||w_k|| = 1)
            a = W * ((V / WH) @ H.t())
            b = H.sum(dim=1)[None, :].expand_as(a)
            if lam:
                c = lam * b
                Wn = 2 * a / (b + torch.sqrt(b * b + 4 * a * c)).add_(eps)
            else:
                Wn = a / (b + eps)
            W, H = _renormalise(W, Wn, H, free)
        return W, H, hist, conv

    # -- public: activations for a fixed dictionary ------------------------------------------------------
    def transform(self, V: Any, W: Tensor | None = None, H0: Tensor | None = None) -> Tensor:
        """Activations ``H ≥ 0`` of ``V`` with the dictionary fixed.

        Args:
            V: ``(F, N)`` frames or a batch ``(B, F, T)`` of spectrograms.
            W: dictionary ``(F, K)`` (columns are normalised here); default the fitted one.
            H0: optional warm start, same layout as the result.

        Returns:
            ``(K, N)`` for 2-D input, ``(B, K, T)`` for 3-D input. Solved with HALS sweeps (β = 2, solver
            hals) or MU until the relative change of H is below ``transform_tol`` or ``transform_iters``.
        """
        V = self._prep(V)
        V2, bs = _frames(V)
        W = self._prep_dictionary(self._fitted(W), V2.shape[0], V2.device)
        H = None
        if H0 is not None:
            H = _frames(check_nonnegative(H0, "H0"), "H0")[0].to(V2.device, V2.dtype).clone()
            if tuple(H.shape) != (W.shape[1], V2.shape[1]):
                raise ValueError(f"H0 must be ({W.shape[1]}, {V2.shape[1]}) in frame layout, got {tuple(H.shape)}")
        return _unframes(self._solve_activations(V2, W, H), bs)

    def _solve_activations(self, V: Tensor, W: Tensor, H: Tensor | None = None) -> Tensor:
        """H for ``V (F, N)`` and unit-norm ``W (F, K)`` (both already prepared)."""
        K, N = W.shape[1], V.shape[1]
        eps, lam = self.eps, self.sparsity
        if H is None:
            # best constant: W (c 1 1ᵀ) closest to V
            w1 = W.sum(dim=1)
            c = float(w1 @ V.sum(dim=1)) / max(N * float(w1 @ w1), _TINY)
            H = torch.full((K, N), max(c, 0.0), dtype=V.dtype, device=V.device)
        if self.solver == "hals":
            WtV = W.t() @ V
            if lam:
                WtV.sub_(lam)
            G = W.t() @ W
            for _ in range(self.transform_iters):
                prev = H.clone()
                _hals_rows(H, WtV, G, 1, self.chunk_size)
                if self._small_change(H, prev):
                    break
            return H
        if self.beta == 2:
            WtV = W.t() @ V
            G = W.t() @ W
            for _ in range(self.transform_iters):
                prev = H.clone()
                denom = (G @ H).add_(lam + eps)
                H.mul_(WtV).div_(denom)
                if self._small_change(H, prev):
                    break
            return H
        col = (W.sum(dim=0) + lam + eps)[:, None]
        for _ in range(self.transform_iters):
            prev = H.clone()
            WH = (W @ H).clamp_min_(eps)
            H.mul_(W.t() @ (V / WH)).div_(col)
            if self._small_change(H, prev):
                break
        return H

    def _small_change(self, H: Tensor, prev: Tensor) -> bool:
        if self.transform_tol <= 0:
            return False
        return float((H - prev).norm()) <= self.transform_tol * max(float(prev.norm()), _TINY)
