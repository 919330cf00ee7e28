"""The numerical core of :mod:`l2i.nmf`: input checks, the objective (see the package docstring),
:class:`NMFResult` and the in-place HALS / MU kernels the solvers share. Shapes: ``V (F, N)``,
``W (F, K)``, ``H (K, N)``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

_TINY = 1e-30


# ---------------------------------------------------------------------------------------------------------
# validation and small helpers
# ---------------------------------------------------------------------------------------------------------
def check_nonnegative(V: Any, name: str = "V") -> Tensor:
    """Return ``V`` as a floating tensor after refusing NaN/inf and negative entries.

    Raises:
        TypeError: ``V`` is not a tensor/array of numbers.
        ValueError: ``V`` is empty, holds NaN or infinite values, or negative values (the message gives
            the counts / the minimum, e.g. ``"V contains negative values (min=-0.3)"``).
    """
    if not isinstance(V, Tensor):
        try:
            V = torch.as_tensor(V)
        except Exception as exc:  # noqa: BLE001 - any conversion failure is a type error for the caller
            raise TypeError(f"{name} must be a tensor or array of numbers, got {type(V).__name__}") from exc
    if V.is_complex():
        raise ValueError(f"{name} is complex; NMF needs a non-negative real spectrum (take the magnitude first)")
    if not V.is_floating_point():
        V = V.to(torch.get_default_dtype())
    if V.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(V.shape)})")
    finite = torch.isfinite(V)
    if not bool(finite.all()):
        n_nan = int(torch.isnan(V).sum())
        n_inf = int(torch.isinf(V).sum())
        raise ValueError(f"{name} contains NaN or infinite values ({n_nan} NaN, {n_inf} inf)")
    vmin = float(V.min())
    if vmin < 0:
        raise ValueError(f"{name} contains negative values (min={vmin:.6g})")
    return V


def normalize_columns(W: Tensor, eps: float = 1e-12) -> tuple[Tensor, Tensor]:
    """L2-normalise the columns of ``W (F, K)``. Returns ``(W / norms, norms (K,))``; all-zero columns
    stay zero (their norm is reported as 0)."""
    norms = W.norm(dim=0)
    return W / norms.clamp_min(eps), norms


def _frames(V: Tensor, name: str = "V") -> tuple[Tensor, tuple[int, ...] | None]:
    """``(F, N)`` stays; ``(B, F, T)`` -> ``(F, B*T)``. Returns the matrix and the batch shape ``(B, T)``
    (None for 2-D input) so results can be reshaped back."""
    if V.dim() == 2:
        return V, None
    if V.dim() == 3:
        B, F, T = V.shape
        return V.permute(1, 0, 2).reshape(F, B * T), (B, T)
    raise ValueError(f"{name} must be (F, N) frames or (B, F, T) spectrograms, got shape {tuple(V.shape)}")


def _unframes(H: Tensor, batch_shape: tuple[int, ...] | None) -> Tensor:
    """Inverse of :func:`_frames` for activations: ``(K, B*T)`` -> ``(B, K, T)``."""
    if batch_shape is None:
        return H
    B, T = batch_shape
    return H.reshape(H.shape[0], B, T).permute(1, 0, 2).contiguous()


def update_activations(W: Tensor, V: Tensor, H: Tensor, iters: int, beta: int = 2, eps: float = 1e-9) -> Tensor:
    """``iters`` multiplicative updates of the activations of clips with the dictionary fixed (Lee & Seung 2001).

    Shapes: ``W (F, K)``, ``V (B, F, T)``, ``H (B, K, T)`` (the start; an entry at zero stays at zero, which is
    how a component is held off). ``beta`` 2: the Euclidean updates ``H ← H ⊙ WᵀV / (WᵀW H + ε)``; 1: the
    Kullback-Leibler ones ``H ← H ⊙ Wᵀ(V / (W H + ε)) / Wᵀ1``, which weigh a bin's error relative to its level
    instead of its square. Returns the new ``H (B, K, T)``. A fixed number of steps, no stopping rule: what the
    interpretation's separation (``refine_iters``) needs, batched over clips; :meth:`NMF.transform` solves to
    a tolerance instead."""
    if beta == 1:
        norm = W.sum(0)[None, :, None].clamp_min(1e-12)
        for _ in range(int(iters)):
            H = H * torch.einsum("fk,bft->bkt", W, V / (torch.einsum("fk,bkt->bft", W, H) + eps)) / norm
        return H
    if beta != 2:
        raise ValueError(f"update_activations: beta must be 1 (Kullback-Leibler) or 2 (Euclidean), got {beta!r}")
    WtV = torch.einsum("fk,bft->bkt", W, V)
    G = W.t() @ W
    for _ in range(int(iters)):
        H = H * WtV / (torch.einsum("kj,bjt->bkt", G, H) + eps)
    return H


def nmf_objective(
    V: Tensor, W: Tensor, H: Tensor, beta: float = 2.0, sparsity: float = 0.0, eps: float = 1e-12, chunk: int = 2048
) -> float:
    """The exact objective of the module docstring, evaluated directly (chunked over frames, float64).

    Shapes: ``V (F, N)``, ``W (F, K)``, ``H (K, N)``. ``W`` is used as given (normalise it first if it
    does not have unit columns: the value is only "the" objective for unit-norm columns).
    """
    if V.dim() != 2 or W.dim() != 2 or H.dim() != 2:
        raise ValueError(f"nmf_objective expects 2-D V, W, H, got {tuple(V.shape)}, {tuple(W.shape)}, {tuple(H.shape)}")
    if W.shape[0] != V.shape[0] or H.shape[1] != V.shape[1] or W.shape[1] != H.shape[0]:
        raise ValueError(f"shape mismatch: V {tuple(V.shape)}, W {tuple(W.shape)}, H {tuple(H.shape)}")
    total = 0.0
    W64 = W.to(torch.float64)
    for s in range(0, V.shape[1], chunk):
        v = V[:, s : s + chunk].to(torch.float64)
        wh = W64 @ H[:, s : s + chunk].to(torch.float64)
        if beta == 2:
            total += 0.5 * float(((v - wh) ** 2).sum())
        elif beta == 1:
            wh = wh.clamp_min(eps)
            total += float((torch.xlogy(v, v) - torch.xlogy(v, wh) - v + wh).sum())
        else:
            raise ValueError(f"beta must be 1 or 2, got {beta}")
    return total + sparsity * float(H.to(torch.float64).sum())


# ---------------------------------------------------------------------------------------------------------
# the result of a fit
# ---------------------------------------------------------------------------------------------------------
@dataclass
class NMFResult:
    """Outcome of a fit.

    Attributes:
        dictionary: ``W (F, K)``, unit-norm columns.
        activations: ``H (K, N)`` (``(B, K, T)`` when the fit was given ``(B, F, T)``); None for streaming.
        objective: final objective (module docstring) of the returned pair; for streaming, the sum of the
            mini-batch objectives of the last epoch (each taken before that batch's W update).
        history: objective after every iteration (full fit) or per epoch (streaming); non-increasing for
            full fits.
        n_iter: iterations (full fit) or epochs (streaming) run.
        converged: the relative decrease fell below ``tol``.
        labels: one label per column of W (e.g. ``"noise"`` / a class name), or None.
    """

    dictionary: Tensor
    activations: Tensor | None
    objective: float
    history: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    labels: list[str] | None = None

    @property
    def W(self) -> Tensor:
        return self.dictionary

    @property
    def H(self) -> Tensor | None:
        return self.activations


# ---------------------------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------------------------
def _sqnorm(V: Tensor, chunk: int = 2048) -> float:
    """``||V||_F^2`` accumulated in float64 without a full float64 copy of ``V (F, N)``."""
    return sum(float(torch.sum(V[:, s : s + chunk].to(torch.float64) ** 2)) for s in range(0, V.shape[1], chunk))


def _inner(A: Tensor, B: Tensor) -> float:
    """``Σ_ij A_ij B_ij`` of two ``(K, N)`` matrices: row-wise dot products (in A's dtype, accurate over a
    row), summed in float64 — far cheaper than casting the whole product to float64."""
    return float(torch.linalg.vecdot(A, B, dim=-1).sum(dtype=torch.float64))


def _hals_rows(H: Tensor, R: Tensor, G: Tensor, sweeps: int, chunk: int) -> None:
    """In place: ``sweeps`` HALS sweeps over the rows of ``H (K, N)`` for ``min 0.5 tr(HᵀGH) - tr(RᵀH)``,
    ``H ≥ 0`` with ``R = WᵀV - λ (K, N)`` and ``G = WᵀW (K, K)``. Frames are processed in blocks of
    ``chunk`` so a block of H stays in cache while all its sweeps run (exact: frames are independent)."""
    K, N = H.shape
    inv = (1.0 / G.diagonal().clamp_min(1e-12)).tolist()
    step = N if H.device.type != "cpu" else chunk
    for s0 in range(0, N, step):
        Hc = H[:, s0 : s0 + step]
        Rc = R[:, s0 : s0 + step]
        HcT = Hc.t()
        for _ in range(sweeps):
            for k in range(K):
                # h_k <- [h_k + (r_k - G_k H) / G_kk]_+
                d = torch.addmv(Rc[k], HcT, G[k], alpha=-1.0)
                Hc[k].add_(d, alpha=inv[k]).clamp_(min=0)


def _hals_dictionary(Wt: Tensor, BT: Tensor, A: Tensor, sweeps: int, first: int) -> None:
    """In place: HALS sweeps over dictionary columns ``first..K-1`` (rows of ``Wt (K, F)``) for
    ``min 0.5 tr(W A Wᵀ) - tr(Wᵀ B)`` with unit-norm non-negative columns, ``A = HHᵀ (K, K)``,
    ``BT = (VHᵀ)ᵀ (K, F)``. ``w_k = [r]_+ / ||[r]_+||`` with ``r = b_k - Σ_{j≠k} w_j A_jk`` is the exact
    minimiser over the unit sphere ∩ orthant; a column whose ``[r]_+`` is zero is left unchanged."""
    K = Wt.shape[0]
    WT = Wt.t()
    on_cpu = Wt.device.type == "cpu"
    diag = A.diagonal().tolist() if on_cpu else None
    for _ in range(sweeps):
        for k in range(first, K):
            r = torch.addmv(BT[k], WT, A[k], alpha=-1.0)
            if on_cpu:  # fewer, cheaper ops; a host sync costs nothing here
                r.add_(Wt[k], alpha=diag[k]).clamp_(min=0)
                n = float(r.norm())
                if n > 1e-12:
                    Wt[k].copy_(r.div_(n))
            else:  # no host sync on accelerators
                r.add_(Wt[k] * A[k, k]).clamp_(min=0)
                n = r.norm()
                Wt[k] = torch.where(n > 1e-12, r / n.clamp_min(1e-12), Wt[k])


def _renormalise(W: Tensor, Wn: Tensor, H: Tensor, free: Tensor) -> tuple[Tensor, Tensor]:
    """Take the updated free columns of ``Wn``, normalise them and rescale the matching rows of H so that
    ``W H`` is unchanged by the normalisation."""
    if free.numel() != W.shape[1]:
        Wn = torch.cat([W[:, : W.shape[1] - free.numel()], Wn[:, free]], dim=1)
    Wn, norms = normalize_columns(Wn)
    # all-zero columns (norm 0) keep their H row (it multiplies a zero column anyway)
    H = H * torch.where(norms > 0, norms, torch.ones_like(norms))[:, None]
    return Wn, H


def _nndsvda(V: Tensor, K: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """NNDSVD initialisation (Boutsidis & Gallopoulos 2008), zeros filled with V's mean ("a" variant).
    ``V (F, N)`` -> ``W (F, K)``, ``H (K, N)``."""
    F, N = V.shape
    q = min(K, F, N)
    state = torch.random.get_rng_state()
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    try:
        U, S, Vr = torch.svd_lowrank(V, q=q, niter=4)
    finally:
        torch.random.set_rng_state(state)
    W = torch.zeros(F, K, dtype=V.dtype, device=V.device)
    H = torch.zeros(K, N, dtype=V.dtype, device=V.device)
    W[:, 0] = S[0].sqrt() * U[:, 0].abs()
    H[0] = S[0].sqrt() * Vr[:, 0].abs()
    if q > 1:
        x, y = U[:, 1:q], Vr[:, 1:q]
        xp, xn, yp, yn = x.clamp(min=0), (-x).clamp(min=0), y.clamp(min=0), (-y).clamp(min=0)
        xpn, xnn, ypn, ynn = xp.norm(dim=0), xn.norm(dim=0), yp.norm(dim=0), yn.norm(dim=0)
        mp, mn = xpn * ypn, xnn * ynn
        pos = mp > mn
        u = torch.where(pos, xp / xpn.clamp_min(_TINY), xn / xnn.clamp_min(_TINY))
        v = torch.where(pos, yp / ypn.clamp_min(_TINY), yn / ynn.clamp_min(_TINY))
        lbd = (S[1:q] * torch.where(pos, mp, mn)).sqrt()
        W[:, 1:q] = u * lbd
        H[1:q] = (v * lbd).t()
    mean = V.mean()
    W = torch.where(W > 0, W, mean)
    H = torch.where(H > 0, H, mean)
    return W, H
