"""Benchmark: our NMF (torch, HALS) vs scikit-learn's multiplicative updates on the same matrix.

    python experiments/benchmarks/nmf_vs_sklearn.py [--frames 100000] [--k 100] [--sparsity 0.1] [--threads 2]

Data: V = log1p|X| of synthetic clips (``SyntheticDataModule.dataset("nmf")``, 16 kHz, 2 s) at n_fft 1024,
hop 512 — ``F = 513`` bins, ``N ≥ frames`` frames (whole clips), float32.

Same objective and penalty for both (frames are samples; scikit-learn factorises ``X = Vᵀ (N, F) ≈
W_s H_s`` so its ``W_s (N, K)`` are our activations ``Hᵀ`` and its ``H_s (K, F)`` our dictionary ``Wᵀ``)::

    ours:     0.5 ||V - W H||_F² + λ Σ H          with ||w_k||_2 = 1 for every dictionary column
    sklearn:  0.5 ||X - W_s H_s||_F² + alpha_W * l1_ratio * n_features * ||W_s||_1
              + alpha_H * l1_ratio * n_samples * ||H_s||_1 (+ L2 terms scaled by 1 - l1_ratio)

so ``l1_ratio = 1``, ``alpha_H = 0`` and ``alpha_W = λ / F`` (scikit-learn multiplies alpha_W by
``n_features = F``) give the same penalty λ Σ H on the activations. scikit-learn does not constrain the
dictionary's scale, so its problem is a relaxation of ours (any of our feasible points is feasible for it
with the same value): its objective is reported as it defines it, and also after normalising its dictionary
columns (activations rescaled so W H is unchanged), which is the value of our constrained problem at its
solution. "Equal or lower objective" below compares our value with scikit-learn's own (unconstrained) one,
the harder comparison for us.

Each solver runs in its own subprocess (fresh memory accounting): wall time of the fit (initialisation
included, data loading excluded; on a GPU the copy of V to the device included, the CUDA context and kernels
made beforehand by a 2-pass fit of a small slice, as imports are made before the clock starts), peak resident memory above the loaded data (``VmHWM`` minus ``VmRSS``
after the libraries and the data are loaded, the peak reset there), final objective computed by the same float64 function for both. Both use the same number
of CPU threads (torch intra-op and BLAS via threadpoolctl). The CPU may be shared with other jobs: the
script prints the load average before and after.

Figures of a run are printed as a table, the ratio last.

Measured 2026-11-25 on the 2-core CPU this project develops on, shared with other jobs (load average 5-9
during every run, so wall times are noisy), V = 513 × 100,044 float32, K = 100, nndsvda starts, ours 30
HALS passes (2 sweeps each), scikit-learn 1.9.1 200 MU iterations (it ran all 200 each time):

====================  =======  ========  ===================  ==========  ==========================
run                   sklearn  ours      ratio                objective   peak memory over the data
====================  =======  ========  ===================  ==========  ==========================
λ = 0, 1 thread       196.9 s  55.4 s    3.55× faster         0.928×      452 vs 356 MiB
λ = 0, 1 thread       217.0 s  43.5 s    4.99× faster         0.928×      (first run)
λ = 0, 2 threads      553.3 s  48.8 s    11.35× faster        0.929×      489 vs 356 MiB
λ = 0.1, 1 thread     150.9 s  31.4 s    4.80× faster         0.777× *    451 vs 356 MiB
====================  =======  ========  ===================  ==========  ==========================

Objectives λ = 0: sklearn 101,674, ours 94,399 (0.5‖V − WH‖²). * λ = 0.1: on our (unit-norm) objective
ours 215,807 vs 277,729 for scikit-learn's solution; scikit-learn's own relaxed objective of its solution
is 106,296 (it shrinks the activations and grows the dictionary to dodge the penalty). With only 20 HALS
passes ours was 5.69× faster but its objective 0.4 % above scikit-learn's, hence the budget of 30.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def make_matrix(frames: int, path: Path, seed: int = 0) -> np.ndarray:
    """``V (F=513, N)`` float32 from synthetic clips at n_fft 1024 / hop 512, saved to ``path``."""
    import torch

    sys.path.insert(0, str(ROOT))
    from datamodules.synthetic import SyntheticDataModule
    from l2i.frontend import AudioFrontEnd, FrontEndConfig

    cfg = FrontEndConfig(sample_rate=16000, n_fft=1024, hop_length=512)
    fe = AudioFrontEnd(cfg)
    per_clip = cfg.num_frames(32000)
    clips = -(-frames // per_clip)
    ds = SyntheticDataModule(sample_rate=16000, duration_s=2.0, seed=seed).dataset("nmf", clips)
    out = []
    with torch.no_grad():
        for s in range(0, clips, 64):
            wav = torch.stack([ds[i]["waveform"] for i in range(s, min(s + 64, clips))])
            V = fe.nmf_spectrogram(wav)  # (B, F, T)
            out.append(V.permute(1, 0, 2).reshape(V.shape[1], -1))
    V = torch.cat(out, dim=1).contiguous().numpy().astype(np.float32)
    np.save(path, V)
    return V


def objective(V: np.ndarray, W: np.ndarray, H: np.ndarray, lam: float, chunk: int = 2048) -> float:
    """0.5 ||V - W H||² + λ Σ H in float64, V (F, N), W (F, K), H (K, N)."""
    W64 = W.astype(np.float64)
    total = 0.0
    for s in range(0, V.shape[1], chunk):
        R = V[:, s : s + chunk].astype(np.float64) - W64 @ H[:, s : s + chunk].astype(np.float64)
        total += 0.5 * float(np.einsum("ij,ij->", R, R))
    return total + lam * float(H.astype(np.float64).sum())


def _status_kb(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in KiB. (``ru_maxrss`` would not do: Linux keeps
    it across exec, so a child started by this script would report the parent's peak.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def worker(args) -> None:
    from threadpoolctl import threadpool_limits

    # import the solver's libraries first, so their own resident pages are not counted as its memory
    if args.worker == "sklearn":
        from sklearn.decomposition import NMF as SkNMF
    else:
        import torch

        sys.path.insert(0, str(ROOT))
        from l2i.nmf import NMF
    V = np.load(args.data)
    F, N = V.shape
    lam = args.sparsity
    base_kb = _status_kb("VmRSS")
    try:  # reset the peak (VmHWM) to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    with threadpool_limits(limits=args.threads):
        if args.worker == "sklearn":
            model = SkNMF(
                n_components=args.k, solver="mu", beta_loss="frobenius", init="nndsvda", max_iter=args.sk_max_iter,
                tol=args.sk_tol, alpha_W=lam / F, alpha_H=0.0, l1_ratio=1.0, random_state=0,
            )
            X = V.T  # (N, F): frames are samples (a view: no copy)
            t0 = time.perf_counter()
            Ws = model.fit_transform(X)  # (N, K) = our H^T
            secs = time.perf_counter() - t0
            W, H = model.components_.T, Ws.T  # dictionary (F, K), activations (K, N)
            own = objective(V, W, H, lam)  # == sklearn's own objective (its W-penalty is λ Σ H)
            norms = np.linalg.norm(W, axis=0)
            norms[norms == 0] = 1.0
            constrained = objective(V, W / norms, H * norms[:, None], lam)
            info = {"iterations": int(model.n_iter_), "objective": own, "objective_unit_norm": constrained}
        else:
            torch.set_num_threads(args.threads)
            device = "cuda" if args.worker == "ours-cuda" else "cpu"
            Vt = torch.from_numpy(V)
            if device == "cuda":  # CUDA context, cuBLAS handles and kernels: paid once per process, like an import
                NMF(2, solver="hals", max_iter=2, init="nndsvda", device=device).fit(Vt[:, :256].to(device))
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            if device == "cuda":
                Vt = Vt.to(device)
            res = NMF(args.k, sparsity=lam, solver="hals", max_iter=args.max_iter, tol=args.tol, init="nndsvda",
                      inner_iters=args.inner_iters, device=device).fit(Vt)
            if device == "cuda":
                torch.cuda.synchronize()
            secs = time.perf_counter() - t0
            W, H = res.dictionary.cpu().numpy(), res.activations.cpu().numpy()
            obj = objective(V, W, H, lam)
            info = {"iterations": int(res.n_iter), "objective": obj, "objective_unit_norm": obj,
                    "objective_reported": res.objective}
    peak_kb = _status_kb("VmHWM")
    info.update(seconds=secs, peak_mb=peak_kb / 1024, extra_mb=(peak_kb - base_kb) / 1024, frames=N, bins=F)
    print("RESULT " + json.dumps(info), flush=True)


def main(argv: list[str] | None = None) -> dict:
    """Run the comparison; returns each solver's figures by name (``sklearn``, ``ours``, ``ours-cuda``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--sparsity", type=float, default=0.0, help="λ of λ Σ H (sklearn: alpha_W = λ / F, l1_ratio 1)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--max_iter", type=int, default=30, help="ours: HALS passes (a fixed budget, chosen beforehand)")
    p.add_argument("--tol", type=float, default=0.0, help="ours: stop early when a pass lowers the objective by < tol (relative)")
    p.add_argument("--inner_iters", type=int, default=2, help="ours: HALS sweeps per pass over H's rows and W's columns")
    p.add_argument("--sk_max_iter", type=int, default=200)
    p.add_argument("--sk_tol", type=float, default=1e-4)
    p.add_argument("--data", type=str, default="/tmp/l2i_nmf_bench_V.npy", help="cached matrix (made if missing)")
    p.add_argument("--only", choices=["ours", "sklearn", "ours-cuda"], action="append", help="run only these")
    p.add_argument("--worker", choices=["ours", "sklearn", "ours-cuda"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return {}

    data = Path(args.data)
    V = np.load(data, mmap_mode="r") if data.is_file() else None
    if V is None or V.shape[1] < args.frames or V.shape[0] != 513:
        print(f"making the matrix ({args.frames} frames) -> {data}", flush=True)
        V = make_matrix(args.frames, data)
    print(f"matrix: V {V.shape[0]} bins x {V.shape[1]} frames float32 ({V.nbytes / 2**20:.0f} MiB), K={args.k}, "
          f"lambda={args.sparsity} (sklearn alpha_W={args.sparsity / V.shape[0]:.3g}, alpha_H=0, l1_ratio=1), "
          f"threads={args.threads}, load avg before: {os.getloadavg()[0]:.2f}", flush=True)
    runs = args.only or ["sklearn", "ours"]
    results = {}
    for name in runs:
        cmd = [sys.executable, __file__, "--worker", name] + [a for a in argv if a != "--only" and a not in ("ours", "sklearn", "ours-cuda")]
        cmd += ["--data", str(data)]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
        if out.returncode or not line:
            print(f"{name} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}", flush=True)
            continue
        results[name] = json.loads(line[-1][7:])
        r = results[name]
        print(f"{name:>9}: {r['seconds']:8.2f} s  {r['iterations']:4d} it  peak RSS {r['peak_mb']:7.0f} MiB "
              f"(+{r['extra_mb']:.0f} MiB over the data)  objective {r['objective']:.6g}"
              + (f"  (unit-norm dictionary: {r['objective_unit_norm']:.6g})" if name == "sklearn" else ""), flush=True)
    print(f"load avg after: {os.getloadavg()[0]:.2f}")
    if "sklearn" in results:
        sk = results["sklearn"]
        for name in ("ours", "ours-cuda"):
            if name in results:
                r = results[name]
                if args.sparsity > 0:  # the problems differ: also compare on ours (unit-norm dictionary)
                    print(f"  on the unit-norm (paper's) objective: {name} {r['objective']:.6g} vs sklearn's solution "
                          f"{sk['objective_unit_norm']:.6g} ({r['objective'] / sk['objective_unit_norm']:.4f}x)")
                print(f"RATIO {name} vs sklearn: {sk['seconds'] / r['seconds']:.2f}x faster, objective "
                      f"{r['objective'] / sk['objective']:.4f}x of sklearn's own ({'lower or equal' if r['objective'] <= sk['objective'] else 'HIGHER'})")
    return results


if __name__ == "__main__":
    main()
