"""Throughput of the post-hoc interpreter. Prints figures and ratios; not a test.

(a) **End-to-end listenable interpretations per second** — waveform in, interpretation waveform out (front-end,
    classifier, Ψ, Θ, relevance, mask, inverse STFT) — of our batched ``interpret`` against the authors' way on
    the same clips: one clip at a time, numpy STFT, batch-of-one forward passes, a Python loop over the chosen
    components, one inverse STFT per clip. Target: >= 3x on a CPU, >= 20x on a GPU.
(b) **Post-hoc training step / frozen classifier forward** on the same batch with the largest backbone (CNN14 at
    its native front-end): front-end + frozen CNN14 + Ψ + Θ + the three losses + backward + Adam step, divided by
    front-end + CNN14 forward (eval, no grad). Target: <= 2.0.

    python experiments/benchmarks/interpret_throughput.py                  # CPU, both parts
    python experiments/benchmarks/interpret_throughput.py --device cuda --clips 256 --batch-size 64
    python experiments/benchmarks/interpret_throughput.py --part a --ckpt runs/demo/posthoc/interpreter.ckpt

Part (a) uses a trained interpreter when ``--ckpt`` is given, otherwise a randomly initialised SmallCNN demo
classifier with a random dictionary (the timing does not depend on the weights, only on how many components are
chosen: ``--threshold`` sets that for a random model, and the chosen count is printed). On a shared CPU the
figures are noisy: run twice.

Measured 2026-11-28 on the 2-core development CPU shared with other jobs (load average 9-20 during the run),
defaults: (a) 64 clips, 8.0 components chosen, ours 8.9 vs the authors' 1.0 interpretations/s: 8.7x;
(b) CNN14, batch 8 x 5 s, frozen forward 23.6 s, post-hoc step 24.6 s: ratio 1.04. On a GPU:
``experiments/benchmarks/gpu_check.py`` (not measured yet).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from l2i.backbones import CNN14_FRONTEND, build_backbone
from l2i.frontend import AudioFrontEnd, FrontEndConfig
from l2i.interpreter.posthoc import PostHocInterpreter, interpreter_losses


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, warmup: int = 1, iters: int = 1) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / iters


# -- the authors' way: numpy STFT, one clip at a time, a loop over the chosen components ------------------


def np_stft(x: np.ndarray, n_fft: int, hop: int, window: np.ndarray) -> np.ndarray:
    """Centred (reflect-padded) STFT of a 1-D signal, ``(F, T)`` complex, as ``torch.stft(center=True)``."""
    pad = n_fft // 2
    xp = np.pad(x, pad, mode="reflect")
    n_frames = 1 + (len(xp) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    return np.fft.rfft(xp[idx] * window, axis=1).T


def np_istft(spec: np.ndarray, n_fft: int, hop: int, window: np.ndarray, length: int) -> np.ndarray:
    """Inverse of :func:`np_stft` by weighted overlap-add."""
    frames = np.fft.irfft(spec.T, n=n_fft, axis=1) * window
    n = n_fft + hop * (frames.shape[0] - 1)
    idx = (np.arange(n_fft)[None, :] + hop * np.arange(frames.shape[0])[:, None]).ravel()
    y = np.bincount(idx, weights=frames.ravel(), minlength=n)  # vectorised overlap-add
    wsum = np.bincount(idx, weights=np.tile(window**2, frames.shape[0]), minlength=n)
    y /= np.maximum(wsum, 1e-8)
    pad = n_fft // 2
    return y[pad : pad + length]


@torch.no_grad()
def authors_way(net: PostHocInterpreter, clips: np.ndarray, threshold: float, device: torch.device) -> list[np.ndarray]:
    cfg = net.frontend.config
    window = net.frontend.window.cpu().numpy().astype(np.float64)
    mel = net.frontend.mel_fbanks.cpu().numpy()  # (F, n_mels)
    W = net.dictionary.cpu().numpy()
    theta = net.theta.class_weights.cpu().numpy()
    out = []
    for x in clips:
        spec = np_stft(x.astype(np.float64), cfg.n_fft, cfg.hop_length, window)
        mag, phase = np.abs(spec), np.angle(spec)
        db = 10 * np.log10(np.maximum(mel.T @ mag**2, 1e-10))
        if cfg.top_db is not None:
            db = np.maximum(db, db.max() - cfg.top_db)
        logmel = torch.from_numpy(db[None].astype(np.float32)).to(device)  # batch of one
        logits, maps = net.classify_logmel(logmel)
        H = net.psi(maps, mag.shape[1])
        _, pooled = net.theta(H)
        c = int(logits.argmax(-1))
        z = pooled[0].cpu().numpy()
        h = H[0].cpu().numpy()
        r = np.maximum(z * theta[c], 0)
        r = r / r.max() if r.max() > 0 else r
        V = np.log1p(mag)
        WH = W @ h + 1e-8
        part = np.zeros_like(V)
        for k in np.nonzero(r > threshold)[0]:  # the loop over chosen components
            part += V * np.outer(W[:, k], h[k]) / WH
        out.append(np_istft(np.expm1(part) * np.exp(1j * phase), cfg.n_fft, cfg.hop_length, window, len(x)))
    return out


def part_a(args, device: torch.device) -> dict:
    if args.ckpt:
        from lightning_modules.artifacts import load_artifact

        net = load_artifact(args.ckpt, "posthoc", map_location=str(device)).interpreter.to(device).eval()
    else:
        from lightning_modules.classifier import ClassifierModule

        torch.manual_seed(0)
        clf = ClassifierModule(backbone_kwargs={"channels": [8, 16, 32, 64]}, frontend=FrontEndConfig(duration_s=2.0), num_classes=8)
        W = torch.rand(clf.frontend.config.n_freq, args.components)
        net = PostHocInterpreter(clf.frontend, clf.backbone.eval(), W, num_classes=8).to(device).eval()
    cfg = net.frontend.config
    n = int((cfg.duration_s or 2.0) * cfg.sample_rate)
    gen = torch.Generator().manual_seed(0)
    clips = (torch.randn(args.clips, n, generator=gen) * 0.1).numpy()

    def ours():
        for start in range(0, args.clips, args.batch_size):
            wav = torch.from_numpy(clips[start : start + args.batch_size]).to(device)
            net.interpret(wav, threshold=args.threshold).audio.cpu()

    def theirs():
        authors_way(net, clips, args.threshold, device)

    it = net.interpret(torch.from_numpy(clips[: min(8, args.clips)]).to(device), threshold=args.threshold)
    chosen = float(it.num_chosen.float().mean())
    t_ours = _timed(ours, device, warmup=1, iters=args.iters)
    t_theirs = _timed(theirs, device, warmup=0, iters=1)
    res = {
        "clips": args.clips,
        "chosen_components_mean": chosen,
        "ours_interpretations_per_s": args.clips / t_ours,
        "authors_interpretations_per_s": args.clips / t_theirs,
    }
    res["speedup"] = res["ours_interpretations_per_s"] / res["authors_interpretations_per_s"]
    return res


def part_b(args, device: torch.device) -> dict:
    cfg = FrontEndConfig(**{**CNN14_FRONTEND.to_dict(), "duration_s": args.seconds})
    torch.manual_seed(0)
    front = AudioFrontEnd(cfg).to(device)
    backbone = build_backbone("cnn14", n_mels=cfg.n_mels, num_classes=50).to(device).eval()
    W = torch.rand(cfg.n_freq, 100)
    net = PostHocInterpreter(front, backbone, W, num_classes=50).to(device)
    net.train()
    wave = torch.randn(args.train_batch, int(args.seconds * cfg.sample_rate), device=device) * 0.1
    opt = torch.optim.Adam(net.trainable_parameters(), lr=2e-4)

    def classifier_forward():
        with torch.no_grad():
            backbone(front(wave).logmel)

    def train_step():
        opt.zero_grad(set_to_none=True)
        losses = interpreter_losses(net(wave), "multiclass")
        (5.0 * losses["reconstruction"] + losses["fidelity"] + 0.4 * losses["sparsity"]).backward()
        opt.step()

    t_fwd = _timed(classifier_forward, device, warmup=1, iters=args.iters)
    t_step = _timed(train_step, device, warmup=1, iters=args.iters)
    return {
        "backbone": "cnn14",
        "batch": args.train_batch,
        "seconds": args.seconds,
        "layers": ",".join(net.layers),
        "classifier_forward_s": t_fwd,
        "posthoc_train_step_s": t_step,
        "ratio": t_step / t_fwd,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["a", "b", "both"], default="both")
    p.add_argument("--device", default="cpu")
    p.add_argument("--ckpt", default=None, help="trained interpreter checkpoint for part (a)")
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--components", type=int, default=64, help="K of the random dictionary (no --ckpt)")
    p.add_argument("--threshold", type=float, default=0.2)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0, help="clip length for part (b)")
    p.add_argument("--train-batch", type=int, default=8, help="batch for part (b)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'})")
    if args.part in ("a", "both"):
        r = part_a(args, device)
        print(f"(a) {r['clips']} clips, {r['chosen_components_mean']:.1f} chosen components per interpretation")
        print(f"    ours (batched):          {r['ours_interpretations_per_s']:8.1f} interpretations/s")
        print(f"    authors' (one at a time): {r['authors_interpretations_per_s']:8.1f} interpretations/s")
        print(f"    speed-up: {r['speedup']:.1f}x (target >= 3x CPU, >= 20x GPU)")
    if args.part in ("b", "both"):
        r = part_b(args, device)
        print(f"(b) CNN14, batch {r['batch']} x {r['seconds']} s, taps {r['layers']}")
        print(f"    frozen classifier forward: {r['classifier_forward_s'] * 1000:8.1f} ms")
        print(f"    post-hoc training step:    {r['posthoc_train_step_s'] * 1000:8.1f} ms")
        print(f"    ratio: {r['ratio']:.2f} (target <= 2.0)")


if __name__ == "__main__":
    main()
