"""Throughput of each backbone at its native front-end: clips/s for inference and for a training step.

* forward: eval mode, ``torch.no_grad``, log-mel batch already computed (backbone only);
* train: train mode, forward + cross-entropy + backward + Adam step;
* front-end: waveform -> log-mel (``AudioFrontEnd.log_mel``), no grad.

Each measurement runs ``--warmup`` untimed iterations, then ``--iters`` timed ones (CUDA is synchronised).
On a shared CPU the figures are noisy: treat them as orders of magnitude.

    python experiments/benchmarks/backbones_throughput.py                      # CPU, 5 s clips, batch 2
    python experiments/benchmarks/backbones_throughput.py --device cuda --batch-size 32 --seconds 10 --amp bf16
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from l2i.backbones import CNN14_FRONTEND, SBCNN_FRONTEND, build_backbone, prepare_for_device
from l2i.frontend import AudioFrontEnd, FrontEndConfig

#: the front-end each backbone is meant for (SmallCNN: the package default)
NATIVE_FRONTENDS: dict[str, FrontEndConfig] = {
    "small_cnn": FrontEndConfig(),
    "sbcnn": SBCNN_FRONTEND,
    "cnn14": CNN14_FRONTEND,
}


def _timed(fn, iters: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` (mean over ``iters`` after ``warmup``)."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / iters


def bench_one(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    cfg = NATIVE_FRONTENDS[name]
    torch.manual_seed(0)
    model = build_backbone(name, n_mels=cfg.n_mels, num_classes=args.classes).to(device)
    prepare_for_device(model, channels_last=args.channels_last, compile=args.compile)
    front = AudioFrontEnd(cfg).to(device)
    samples = int(args.seconds * cfg.sample_rate)
    wave = torch.randn(args.batch_size, samples, device=device) * 0.1
    with torch.no_grad():
        logmel = front.log_mel(wave)
    target = torch.randint(0, args.classes, (args.batch_size,), device=device)
    amp = (
        torch.autocast(device.type, dtype=torch.bfloat16 if args.amp == "bf16" else torch.float16)
        if args.amp != "off"
        else nullcontext()
    )

    def frontend_step():
        with torch.no_grad():
            front.log_mel(wave)

    def forward_step():
        with torch.no_grad(), amp:
            model(logmel)

    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")

    def train_step():
        opt.zero_grad(set_to_none=True)
        with amp:
            loss = F.cross_entropy(model(logmel).float(), target)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    t_front = _timed(frontend_step, args.iters, args.warmup, device)
    model.eval()
    t_fwd = _timed(forward_step, args.iters, args.warmup, device)
    model.train()
    t_train = _timed(train_step, args.iters, args.warmup, device)
    return {
        "backbone": name,
        "front-end": f"{cfg.sample_rate / 1000:g}k/hop{cfg.hop_length}/{cfg.n_mels}mel",
        "frames": logmel.shape[-1],
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "batch": args.batch_size,
        "frontend_clips_s": args.batch_size / t_front,
        "forward_clips_s": args.batch_size / t_fwd,
        "train_clips_s": args.batch_size / t_train,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--backbones", nargs="+", default=list(NATIVE_FRONTENDS), choices=list(NATIVE_FRONTENDS))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="clip length")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone (slow first calls)")
    parser.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off", help="autocast for forward/train")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    if args.threads:
        torch.set_num_threads(args.threads)
    desc = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"# torch {torch.__version__}, {desc}; {args.seconds:g} s clips, batch {args.batch_size}, "
        f"{args.warmup} warm-up + {args.iters} timed iterations, channels_last={args.channels_last}, "
        f"compile={args.compile}, amp={args.amp}"
    )
    rows = [bench_one(name, args, device) for name in args.backbones]
    header = (
        f"{'backbone':<10} {'front-end':<20} {'frames':>6} {'params':>8} {'batch':>5} "
        f"{'front-end/s':>12} {'forward/s':>10} {'train/s':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['backbone']:<10} {r['front-end']:<20} {r['frames']:>6} {r['params_M']:>7.2f}M {r['batch']:>5} "
            f"{r['frontend_clips_s']:>12.1f} {r['forward_clips_s']:>10.2f} {r['train_clips_s']:>9.2f}"
        )
    print("(clips per second; forward = eval + no_grad on log-mel; train = forward + backward + Adam step)")
    return rows


if __name__ == "__main__":
    main()
