"""Data-loading throughput: our pipeline (uncached and cached) against a per-item librosa pipeline.

Both read the same ESC-50-layout tree (``audio/*.wav`` or ``*.mp3`` + ``meta/esc50.csv``, clips written here
at ``--file-rate``) with a DataLoader of ``--workers`` worker(s) (1 by default: how the authors' code loads data).

* ``librosa``: ``__getitem__`` does ``librosa.load(path, sr=rate)`` then ``librosa.stft`` -> ``|X|``, a
  128-band mel power spectrogram -> ``power_to_db`` (the classifier input) and ``log1p|X|`` (the NMF input),
  every item, every epoch.
* ``ours (uncached)``: :class:`datamodules.ESC50DataModule` decodes with soundfile (+ torchaudio resampling
  when the file rate differs) in the worker; the batch goes through :class:`l2i.frontend.AudioFrontEnd`
  (STFT, log-mel, log1p|X|) on ``--device``.
* ``ours (cached)``: the same with ``cache_dir`` set: clips come from a memory-mapped float16 array built
  once (its build time is reported separately, it is paid once per data set and rate).

clips/s = clips / wall time of one full epoch, after one untimed warm-up epoch per pipeline (so every
pipeline reads files from the OS page cache alike). ``loader only`` leaves the front-end out.

Measured on the development machine (2 CPU cores shared with other jobs, load 5-9, no GPU: the front-end
ran on the same CPU), 256 clips of 5 s, batch 32, 1 worker, clips/s (speed-up over librosa):

=====================  ===========  ==============  ============  ==================  ================
target rate            librosa      ours uncached   ours cached   ours cached, 0 w.   + CPU front-end
=====================  ===========  ==============  ============  ==================  ================
44.1 kHz (no resample) 15.7 - 26.1  313 - 508 (20x) 333 - 759     1044 - 1462 (56-66x) 42 - 107 (3-4x)
16 kHz                 18.2         112 (6.1x)      774 (42x)     3431 (188x)          46 - 82 (2.5-4.5x)
=====================  ===========  ==============  ============  ==================  ================

MP3 (64 clips of 29.1 s at 16 kHz): librosa 7.3, uncached 32 (4.4x, both decode with libsndfile's mpg123),
cached 188 (26x), cached 0 workers 463 (63x). The per-batch front-end is meant for the GPU; on this CPU it
is the bottleneck of our pipeline.

    python experiments/benchmarks/dataloading.py                         # 256 clips, 44.1 kHz, CPU
    python experiments/benchmarks/dataloading.py --target-rate 22050     # with resampling in both pipelines
    python experiments/benchmarks/dataloading.py --format mp3 --file-rate 16000 --target-rate 16000 --seconds 29.1
    python experiments/benchmarks/dataloading.py --device cuda --clips 512 --json out.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.esc50 import ESC50_CLASSES, ESC50DataModule
from l2i.frontend import AudioFrontEnd, FrontEndConfig


def make_tree(root: Path, clips: int, seconds: float, rate: int, seed: int = 0, fmt: str = "wav") -> Path:
    """An ESC-50-layout tree with ``clips`` clips (10 classes x 5 folds, round robin), PCM-16 WAV or MP3."""
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    rows = []
    for i in range(clips):
        fold, target = 1 + i % 5, (i // 5) % 10
        name = f"{fold}-{100000 + i}-A-{target}.{fmt}"
        x = (0.2 * np.sin(2 * np.pi * (150 + 60 * target) * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
        if fmt == "mp3":
            sf.write(str(root / "audio" / name), x, rate, format="MP3")
        else:
            sf.write(str(root / "audio" / name), x, rate, subtype="PCM_16")
        rows.append([name, fold, target, ESC50_CLASSES[target], "False", 100000 + i, "A"])
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)
    return root


class LibrosaPerItem(Dataset):
    """The per-item librosa pipeline: decode (+ resample), STFT, mel, dB and log1p in ``__getitem__``.

    Item: ``{"logmel" float32 (n_mels, T), "log1p" float32 (n_fft//2+1, T), "target" int}``."""

    def __init__(self, paths: list[str], targets: list[int], cfg: FrontEndConfig, seconds: float):
        self.paths, self.targets, self.cfg, self.seconds = paths, targets, cfg, seconds

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        import librosa

        c = self.cfg
        y, sr = librosa.load(self.paths[i], sr=c.sample_rate, mono=True)
        y = librosa.util.fix_length(y, size=int(round(self.seconds * sr)))
        mag = np.abs(librosa.stft(y, n_fft=c.n_fft, hop_length=c.hop_length, window="hann", center=True))
        mel = librosa.feature.melspectrogram(S=mag**2, sr=sr, n_fft=c.n_fft, n_mels=c.n_mels)
        logmel = librosa.power_to_db(mel, top_db=c.top_db)
        return {"logmel": torch.from_numpy(logmel.astype(np.float32)),
                "log1p": torch.from_numpy(np.log1p(mag).astype(np.float32)), "target": self.targets[i]}


def _epoch(loaders, step) -> tuple[float, int]:
    start, n = time.perf_counter(), 0
    for loader in loaders if isinstance(loaders, list) else [loaders]:
        for batch in loader:
            n += step(batch)
    return time.perf_counter() - start, n


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(max(1, args.threads)) if args.threads else None
    device = torch.device(args.device)
    cfg = FrontEndConfig(sample_rate=args.target_rate, n_fft=1024, hop_length=512, n_mels=128, top_db=80.0)
    front = AudioFrontEnd(cfg).to(device)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="l2i-bench-"))
    root = make_tree(work / "ESC-50-master", args.clips, args.seconds, args.file_rate, fmt=args.format)
    kw = dict(sample_rate=args.target_rate, duration_s=args.seconds, batch_size=args.batch_size,
              num_workers=args.workers, persistent_workers=True, pin_memory=device.type == "cuda",
              test_fold=1, val_fold=None, val_fraction=0.0)

    def all_folds(dm: ESC50DataModule) -> list[DataLoader]:
        """Every clip once, in file order: the training folds' loader (unshuffled) and the test fold's."""
        dm.setup("fit")
        dm.setup("test")
        return [dm._loader("train", shuffle=False), dm._loader("test", shuffle=False)]

    def ours_step(with_frontend: bool):
        def step(batch):
            if with_frontend:
                wav = batch["waveform"].to(device, non_blocking=True)
                with torch.no_grad():
                    front(wav, cfg.sample_rate)  # STFT, |X|, phase, log1p|X| (NMF input), log-mel
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            return len(batch["id"])
        return step

    results: dict[str, dict] = {}

    def measure(name: str, loader, step):
        _epoch(loader, step)  # warm-up (page cache, worker start-up paths, kernels)
        secs, n = _epoch(loader, step)
        results[name] = {"clips": n, "seconds": round(secs, 3), "clips_per_s": round(n / secs, 1)}
        print(f"{name:32s} {n:5d} clips  {secs:7.2f} s  {n / secs:9.1f} clips/s", flush=True)

    # librosa per item
    dm = ESC50DataModule(str(root), **kw)
    dm.setup("fit")
    dm.setup("test")
    items = dm.items["train"] + dm.items["test"]
    lib = DataLoader(LibrosaPerItem([it.path for it in items], [it.target for it in items], cfg, args.seconds),
                     batch_size=args.batch_size, num_workers=args.workers, shuffle=False,
                     persistent_workers=args.workers > 0)
    measure("librosa per item (1 worker)" if args.workers == 1 else f"librosa per item ({args.workers} w)",
            lib, lambda b: len(b["target"]))

    unc = all_folds(ESC50DataModule(str(root), **kw))
    measure("ours uncached, loader only", unc, ours_step(False))
    measure("ours uncached + front-end", unc, ours_step(True))

    cache_dir = work / "cache"
    dm_c = ESC50DataModule(str(root), cache_dir=str(cache_dir), cache_dtype="float16", **kw)
    t0 = time.perf_counter()
    dm_c.prepare_data()
    build = time.perf_counter() - t0
    print(f"{'cache build (once)':32s} {args.clips:5d} clips  {build:7.2f} s")
    cac = all_folds(dm_c)
    measure("ours cached, loader only", cac, ours_step(False))
    measure("ours cached + front-end", cac, ours_step(True))
    if args.workers:
        kw0 = dict(kw, num_workers=0)
        cac0 = all_folds(ESC50DataModule(str(root), cache_dir=str(cache_dir), cache_dtype="float16", **kw0))
        measure("ours cached, 0 workers, loader", cac0, ours_step(False))

    base = results[next(iter(results))]["clips_per_s"]
    ratios = {k: round(v["clips_per_s"] / base, 1) for k, v in results.items()}
    print("speed-up over librosa per item: " + ", ".join(f"{k}: {r}x" for k, r in ratios.items()))
    return {
        "clips": args.clips, "seconds_per_clip": args.seconds, "format": args.format, "file_rate": args.file_rate,
        "target_rate": args.target_rate, "batch_size": args.batch_size, "workers": args.workers,
        "device": str(device), "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "machine": platform.platform(), "cache_build_s": round(build, 2), "results": results, "speedup": ratios,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=256)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--file-rate", type=int, default=44100, help="rate the files are written at")
    p.add_argument("--format", choices=("wav", "mp3"), default="wav", help="audio files: PCM-16 WAV or MP3")
    p.add_argument("--target-rate", type=int, default=44100, help="rate both pipelines deliver")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads in the main process (0: default)")
    p.add_argument("--work-dir", default=None, help="where the tree and cache go (default: a temp folder)")
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args(argv)
    report = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
