"""Online mini-batch NMF (Mairal et al. 2010, "Online learning for matrix factorization and sparse coding";
scikit-learn's ``MiniBatchNMF``): :class:`StreamingMixin` gives :class:`~l2i.nmf.NMF` its
:meth:`~StreamingMixin.fit_stream` and the resumable streaming state (:meth:`~StreamingMixin.state_dict`,
:meth:`~StreamingMixin.load_state_dict`). The mixin uses the solver's activation solve and checks
(``_prep``, ``_prep_dictionary``, ``_solve_activations``, the settings); it is not used on its own."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from l2i.nmf.core import NMFResult, _frames, _hals_dictionary, normalize_columns


class StreamingMixin:
    """Streaming fit and state of :class:`~l2i.nmf.NMF` (see the module docstring)."""

    # -- public: streaming -------------------------------------------------------------------------------
    def fit_stream(
        self,
        batches: Iterable[Any] | Callable[[], Iterable[Any]],
        *,
        epochs: int = 1,
        forget_factor: float = 0.7,
        W0: Tensor | None = None,
        W_fixed: Tensor | None = None,
        reduce_fn: Callable[[Tensor], Tensor] | None = None,
        to_frames: Callable[[Any], Tensor] | None = None,
        w_sweeps: int | None = None,
        progress: bool | None = None,
    ) -> NMFResult:
        """Online mini-batch NMF: learn W from a stream of batches without holding the data set.

        For every batch ``V_b`` (``(B, F, T)`` spectrograms or ``(F, n)`` frames): ``H_b`` = activations
        with W fixed (:meth:`transform`'s solver), then the statistics are decayed by ρ and the batch's
        added, then W is updated from the statistics alone:

        * β = 2: ``A = ρA + H_b H_bᵀ (K, K)``, ``B = ρB + V_b H_bᵀ (F, K)``, ``S = ρS + H_b 1 (K,)``;
          W by ``w_sweeps`` HALS sweeps on ``0.5 tr(Wᵀ W A) - tr(Wᵀ B)`` (solver hals) or MU steps
          (solver mu) — the surrogate of Mairal et al.
        * β = 1: scikit-learn ``MiniBatchNMF``'s accumulation of the MU numerator
          ``A = ρA + W ⊙ ((V_b / W H_b) H_bᵀ)`` and denominator ``B = ρB + 1 H_bᵀ (1 + λW)``; ``W = A / B``.

        W's columns are renormalised after each update. ρ = ``forget_factor ** (n_b / n_epoch)``, with
        ``n_b`` the frames of the batch and ``n_epoch`` the frames of one pass (during the first pass: the
        frames seen so far, which forgets fast early and slowly later).

        Args:
            batches: an iterable of batches, re-iterated each epoch (a list, a DataLoader), or a callable
                returning a fresh iterable per epoch (needed for one-shot generators when epochs > 1).
            epochs: passes over the data (continuing from a loaded / previous state).
            forget_factor: weight left to the statistics after one full pass, in (0, 1].
            W0: initial dictionary ``(F, K)``; default: a short full-batch fit (``init_iters`` iterations,
                NNDSVDa start) on the first batch, or the state's W when resuming.
            W_fixed: optional ``(F, K0)`` columns kept fixed (e.g. a noise block learnt on noise-only
                material); they come first in the dictionary, which then has ``K0 + n_components`` columns
                (only when starting, not when resuming: the state remembers them).
            reduce_fn: applied before each W update to the batch's statistics, concatenated into one 1-D
                tensor (``[H_b H_bᵀ, V_b H_bᵀ, S_b, frames, objective]`` flattened); must return the summed
                tensor of the same shape (e.g. a DDP ``all_reduce(SUM)``), so that every process holds the
                same statistics and W. The increments are reduced, not the decayed totals, so the history
                is not counted once per process.
            to_frames: maps a batch object to its spectrogram tensor (e.g. ``lambda b: b["nmf"]``).
            w_sweeps: HALS sweeps / MU steps on W per batch (default ``inner_iters``).
            progress: tqdm bar per epoch (default: the constructor's ``progress``).

        Returns:
            :class:`NMFResult` with ``activations=None``; ``history`` holds, per epoch, the sum over batches
            of the batch objective taken before its W update (an estimate of the data objective).
        """
        if int(epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if not (0 < forget_factor <= 1):
            raise ValueError(f"forget_factor must be in (0, 1], got {forget_factor}")
        if callable(batches):
            make = batches
        else:
            if isinstance(batches, Iterator) and epochs > 1:
                raise ValueError(
                    "batches is a one-shot iterator but epochs > 1; pass a list/DataLoader or a callable "
                    "that returns a fresh iterable for every epoch"
                )
            make = lambda: batches  # noqa: E731
        show = self.progress if progress is None else bool(progress)
        sweeps = self.inner_iters if w_sweeps is None else int(w_sweeps)
        if (W0 is not None or W_fixed is not None) and self._stream is not None:
            raise ValueError("W0 / W_fixed given but a streaming state exists (loaded or from a previous fit_stream)")
        last = float("nan")
        for _ in range(int(epochs)):
            last = self._stream_epoch(make(), forget_factor, sweeps, reduce_fn, to_frames, show, W0, W_fixed)
        st = self._stream
        self.dictionary_ = st["W"]
        return NMFResult(st["W"].clone(), None, last, list(st["history"]), n_iter=st["epoch"], converged=False)

    def _stream_epoch(
        self,
        it: Iterable[Any],
        forget_factor: float,
        sweeps: int,
        reduce_fn: Callable | None,
        to_frames: Callable[[Any], Tensor] | None,
        show: bool,
        W0: Tensor | None,
        W_fixed: Tensor | None,
    ) -> float:
        """One pass over ``it``: a :meth:`_stream_step` per batch (the state is made on the first batch of the
        first pass). Returns the epoch's summed batch objective, also appended to the state's history."""
        st = self._stream
        if show:
            from tqdm.auto import tqdm

            e = 0 if st is None else st["epoch"]
            it = tqdm(it, desc=f"NMF stream epoch {e + 1}", unit="batch")
        epoch_obj = 0.0
        epoch_frames = 0
        n_batches = 0
        for batch in it:
            Vb = to_frames(batch) if to_frames is not None else batch
            Vb = self._prep(Vb, "batch")
            Vb, _ = _frames(Vb, "batch")
            if st is None:
                st = self._stream = self._init_stream(Vb, W0, W_fixed)
            elif Vb.shape[0] != st["W"].shape[0]:
                raise ValueError(f"batch has {Vb.shape[0]} frequency bins, the dictionary {st['W'].shape[0]}")
            W = st["W"]
            Vb = Vb.to(W.device, W.dtype)
            n_frames, obj = self._stream_step(st, Vb, forget_factor, sweeps, reduce_fn)
            epoch_obj += obj
            epoch_frames += n_frames
            n_batches += 1
            if show:
                it.set_postfix(obj_per_frame=f"{epoch_obj / max(epoch_frames, 1):.4g}")
        if n_batches == 0:
            raise ValueError("batches yielded no batch in this epoch")
        st["frames_per_epoch"] = epoch_frames
        st["frames_seen"] = 0
        st["epoch"] += 1
        st["history"].append(epoch_obj)
        return epoch_obj

    def _init_stream(self, Vb: Tensor, W0: Tensor | None, W_fixed: Tensor | None = None) -> dict[str, Any]:
        F, n = Vb.shape
        Wf = None if W_fixed is None else self._prep_dictionary(W_fixed, F, Vb.device, "W_fixed")
        K0 = 0 if Wf is None else Wf.shape[1]
        K = K0 + self.n_components
        if W0 is not None:
            W = self._prep_dictionary(W0, F, Vb.device, "W0")
            if W.shape[1] != self.n_components:
                raise ValueError(f"W0 must have n_components={self.n_components} columns, got {W.shape[1]}")
            if Wf is not None:
                W = torch.cat([Wf, W], dim=1)
        else:
            # a short full-batch fit on the first mini-batch (NNDSVDa start): far fewer bad local minima
            # than K random frames
            first = type(self)(
                self.n_components, beta=self.beta, sparsity=self.sparsity, solver=self.solver, max_iter=self.init_iters, tol=1e-4,
                inner_iters=self.inner_iters, init="nndsvda", seed=self.seed, dtype=self.dtype, eps=self.eps,
                chunk_size=self.chunk_size,
            )
            W = first.fit(Vb, W_fixed=Wf).dictionary
            if Wf is not None:
                W[:, :K0] = Wf  # bit-exact fixed block
        zeros = lambda *s: torch.zeros(*s, dtype=W.dtype, device=W.device)  # noqa: E731
        return {
            "W": W.contiguous(),
            "A": zeros(K, K) if self.beta == 2 else zeros(F, K),
            "B": zeros(F, K),
            "S": zeros(K),
            "frames_seen": 0,
            "frames_per_epoch": 0,
            "epoch": 0,
            "steps": 0,
            "history": [],
            "fixed": K0,
        }

    def _stream_step(
        self, st: dict[str, Any], Vb: Tensor, forget_factor: float, sweeps: int, reduce_fn: Callable | None
    ) -> tuple[int, float]:
        W = st["W"]
        F, n = Vb.shape
        K = W.shape[1]
        lam, eps = self.sparsity, self.eps
        Hb = self._solve_activations(Vb, W)
        if self.beta == 2:
            HHt = Hb @ Hb.t()
            VHt = Vb @ Hb.t()
            WtV = W.t() @ Vb
            obj_t = 0.5 * (Vb.to(torch.float64) ** 2).sum() - torch.sum(WtV * Hb, dtype=torch.float64) + 0.5 * torch.sum(
                (W.t() @ W) * HHt, dtype=torch.float64
            )
            incA, incB = HHt, VHt
        else:
            WH = (W @ Hb).clamp_min_(eps)
            obj_t = (torch.xlogy(Vb, Vb) - torch.xlogy(Vb, WH) - Vb + WH).sum(dtype=torch.float64)
            incA = W * ((Vb / WH) @ Hb.t())
            incB = Hb.sum(dim=1)[None, :] * (1 + lam * W)
        incS = Hb.sum(dim=1)
        obj_t = obj_t + lam * incS.sum(dtype=torch.float64)
        extra = torch.stack([torch.tensor(float(n), dtype=torch.float64), obj_t.detach().cpu().to(torch.float64)])
        if reduce_fn is not None:
            flat = torch.cat([incA.reshape(-1), incB.reshape(-1), incS, extra.to(incA.device, incA.dtype)])
            red = reduce_fn(flat)
            if not isinstance(red, Tensor) or red.shape != flat.shape:
                raise ValueError(
                    f"reduce_fn must return a tensor of shape {tuple(flat.shape)}, got "
                    f"{getattr(red, 'shape', type(red).__name__)}"
                )
            a, b = incA.numel(), incB.numel()
            incA = red[:a].reshape(incA.shape)
            incB = red[a : a + b].reshape(incB.shape)
            incS = red[a + b : a + b + K]
            extra = red[a + b + K :].to("cpu", torch.float64)
        n_frames, obj = int(round(float(extra[0]))), float(extra[1])
        st["frames_seen"] += n_frames
        ref = st["frames_per_epoch"] or st["frames_seen"]
        rho = forget_factor ** (n_frames / max(ref, 1))
        st["A"].mul_(rho).add_(incA)
        st["B"].mul_(rho).add_(incB)
        st["S"].mul_(rho).add_(incS)
        st["steps"] += 1
        K0 = st.get("fixed", 0)
        if self.beta == 2 and self.solver == "hals":
            Wt = W.t().contiguous()
            _hals_dictionary(Wt, st["B"].t().contiguous(), st["A"], sweeps, K0)
            st["W"] = Wt.t().contiguous()
        elif self.beta == 2:
            Wf = W[:, :K0].clone()
            for _ in range(sweeps):
                denom = W @ st["A"]
                if lam:
                    denom.add_(W * (lam * st["S"])[None, :])
                W = normalize_columns(W * st["B"] / denom.add_(eps))[0]
                W[:, :K0] = Wf
            st["W"] = W
        else:
            Wn = normalize_columns(st["A"] / st["B"].add(eps))[0]
            Wn[:, :K0] = W[:, :K0]
            st["W"] = Wn
        return n_frames, obj

    # -- streaming state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Streaming state (plain tensors/ints/floats/lists; ``torch.save``-able, ``weights_only``-loadable):
        W, the statistics A, B, S, counters, the per-epoch history and the settings that must match."""
        if self._stream is None:
            raise ValueError("no streaming state yet: call fit_stream (or load_state_dict) first")
        st = self._stream
        return {
            "W": st["W"].detach().cpu().clone(),
            "A": st["A"].detach().cpu().clone(),
            "B": st["B"].detach().cpu().clone(),
            "S": st["S"].detach().cpu().clone(),
            "frames_seen": int(st["frames_seen"]),
            "frames_per_epoch": int(st["frames_per_epoch"]),
            "epoch": int(st["epoch"]),
            "steps": int(st["steps"]),
            "history": [float(h) for h in st["history"]],
            "fixed": int(st.get("fixed", 0)),
            "config": {"n_components": self.n_components, "beta": self.beta, "sparsity": self.sparsity, "solver": self.solver},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume streaming from :meth:`state_dict`'s output; refuses a state learnt with other settings."""
        missing = {"W", "A", "B", "S", "frames_seen", "frames_per_epoch", "epoch", "steps", "history", "config"} - set(state)
        if missing:
            raise ValueError(f"streaming state is missing {sorted(missing)}")
        cfg = state["config"]
        mine = {"n_components": self.n_components, "beta": self.beta, "sparsity": self.sparsity, "solver": self.solver}
        diff = [f"{k}: state has {cfg.get(k)!r}, this NMF has {v!r}" for k, v in mine.items() if cfg.get(k) != v]
        if diff:
            raise ValueError("streaming state does not match this NMF: " + "; ".join(diff))
        W = state["W"]
        F, K = W.shape
        if K != int(state.get("fixed", 0)) + self.n_components:
            raise ValueError(
                f"streaming state W has {K} columns, expected fixed {int(state.get('fixed', 0))} + n_components {self.n_components}"
            )
        shapes = {"A": (K, K) if self.beta == 2 else (F, K), "B": (F, K), "S": (K,)}
        for k, s in shapes.items():
            if tuple(state[k].shape) != s:
                raise ValueError(f"streaming state {k} has shape {tuple(state[k].shape)}, expected {s}")
        device = self.device if self.device is not None else W.device
        conv = lambda t: t.detach().to(device=device, dtype=self.dtype).clone()  # noqa: E731
        self._stream = {
            "W": conv(W),
            "A": conv(state["A"]),
            "B": conv(state["B"]),
            "S": conv(state["S"]),
            "frames_seen": int(state["frames_seen"]),
            "frames_per_epoch": int(state["frames_per_epoch"]),
            "epoch": int(state["epoch"]),
            "steps": int(state["steps"]),
            "history": [float(h) for h in state["history"]],
            "fixed": int(state.get("fixed", 0)),
        }
        self.dictionary_ = self._stream["W"]
