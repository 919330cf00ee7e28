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

``--our-workers N`` gives our pipeline N workers while the baseline keeps ``--workers`` (label ``(N w)``).

**The baseline's speed depends on BLAS threads.** librosa's mel projection is a BLAS product; the baseline's
worker runs it with numpy's default BLAS threads (one per core). On the development machine (2 cores, other
jobs running: load 2.4-4.9) that made the same baseline run at 18-53 clips/s (MP3) or 29-159 (WAV) from run to
run, depending on whether the other cores were free at the time; with ``OPENBLAS_NUM_THREADS=1`` (set before
starting Python; the script prints the BLAS threads it runs with) it is steady and at its fastest. The
figures before this table were taken against the oversubscribed baseline. Speed-ups below are against the
one-thread baseline (the conservative ones) first, the default-threads ones in brackets; our pipeline uses no
BLAS, its figures do not depend on the setting.

Development machine, 2 CPU cores shared with another engineer's training (load average 2.4-4.9, mostly 3-4,
during the runs), no GPU, 256 clips, batch 32, baseline with 1 worker; clips/s, ranges over 2-4 runs
(speed-up against the one-thread baseline of the same run; in brackets: against default threads, slowest run):

========================  ===============  =================  ==================  ===================
data                      librosa, 1 w     ours uncached 1 w  ours cached 1 w     ours cached 0 w
========================  ===============  =================  ==================  ===================
WAV 5 s, 44.1 kHz         152 - 156        820 - 930          1790 - 2040         3000 - 4900
(no resampling)           (35 - 159)       5.6 - 5.9x (23x)   12 - 13x (56x)      31x (85x)
WAV 5 s, 44.1 -> 16 kHz   216 - 232        430 - 510          3390 - 4700         12200 - 17700
                          (30 - 33)        2.2 - 2.4x (14x)   18 - 20x (110-130x) 64 - 76x (400x)
MP3 29.1 s, 16 kHz        51 - 58          136 - 144          840 - 950           1030 - 1470
(both: libsndfile/mpg123) (18.6 - 53)      2.4 - 2.6x (7.6x)  14 - 17.5x (49x)    19 - 23x (56x)
========================  ===============  =================  ==================  ===================

Against the issue's targets (>= 5x uncached, >= 50x cached, baseline with one worker): with one worker for
ours too, met for uncached 44.1 kHz WAV only (5.6-5.9x); cached reaches 12-20x against the one-thread
baseline (49-130x only against the oversubscribed one); with 0 workers, 64-76x at 16 kHz.
Why not more, measured: uncached MP3 is decode-bound (libsndfile/mpg123 takes ~5-7 ms of a 29.1 s clip, the
baseline ~17-19 ms in all; our other per-clip costs are now <1 ms), two workers for ours gave no more on the
2 busy cores (MP3: 128-141 clips/s, 2.5x). Uncached resampling is torchaudio's sinc kernel against librosa's
soxr. Cached with a worker, every batch crosses into the main process through new shared-memory pages
(28 MB float32 for 32 x 5 s at 44.1 kHz; the page faults alone ~10 ms of the ~15 ms a batch costs the worker);
0 workers read the memmap in-process.

Same runs, before this change (same script, the previous commit's DataModules, back to back): uncached
419-482 (WAV 44.1k), 349 (16k), 104-111 (MP3); cached 1 w 644-785, 1757, 426-469; cached 0 w 2512-2754,
6877, 1182-1260. MagnaTagATune-style cached chunks (3.69 s from 29.1 s at 16 kHz, batch 32): 2,700 ->
5,400-5,800 chunks/s with 1 worker, 7,700-9,400 -> 15,000-23,000 with 0 workers.

**float16 batches** (``batch_dtype: float16``, rows ``f16 batches``): the float16 cache's samples handed over as
stored (one numpy memcpy per row), cast to float32 on the device. Idle machine (load < 1.3), 1 worker for the
baseline, clips/s and speed-up (float32 batches -> float16 batches):

==========================  =========  ==========================  ===============================
data (clips)                librosa    ours cached, 1 w            ours cached, 0 w
==========================  =========  ==========================  ===============================
WAV 5 s, 44.1 kHz (3072)    167        2431 -> 3225 (15 -> 19x)    5850 -> 12573 (35 -> 75x)
WAV 44.1 -> 16 kHz (2048)   230        5713 -> 7558 (25 -> 33x)    15888 -> 29172 (69 -> 127x)
MP3 29.1 s, 16 kHz (256)    61         1116 -> 1679 (18 -> 28x)    1144 -> 3027 (19 -> 50x; 61x in
                                                                   another run)
==========================  =========  ==========================  ===============================

With 0 workers the float16 batch halves the bytes written per clip, skips the cast and, for long clips, keeps
the batch under glibc's 32 MB mmap ceiling (a fresh mmap per batch costs page faults: allocating and filling a
float32 (32, 465600) batch took 23.5 ms, 10.1 ms with ``mallopt(M_MMAP_THRESHOLD, 1 GiB)``). With a worker
the hand-over, not the bytes, bounds it, and its figures move from run to run. The 0-worker 16 kHz and MP3
epochs last 0.07-0.22 s: read them as +-20 %.

**Faster decoding** (:class:`l2i.audio.PolyphaseResampler`: torchaudio's sinc filter computed only where its
kernel is non-zero, same samples; 16-bit PCM read as int16 and scaled in numpy). Per 5 s clip on one thread:
44.1 kHz WAV 0.45 -> 0.27 ms, 44.1 -> 16 kHz 1.54 -> 0.39 ms (librosa.load with soxr HQ: 1.45 ms). Idle machine,
uncached, 1 worker each, clips/s (speed-up), before -> after:

==========================  =========  ================================
data (clips)                librosa    ours uncached, 1 w
==========================  =========  ================================
WAV 5 s, 44.1 kHz (3072)    167 / 163  1071 (6.4x) -> 1379 (8.4x)
WAV 44.1 -> 16 kHz (2048)   230 / 257  537 (2.3x) -> 1507 (5.9x)
MP3 29.1 s, 16 kHz (256)    61 / 62    154 (2.5x) -> 154 (2.5x); 2 w: 4.4x
==========================  =========  ================================

(One other 44.1 kHz run gave 960 clips/s, 5.6x, with every one-worker row of that run at half its usual
figure: the worker hand-over, not the decoding, moves from run to run. The same loader alone, old and new
``l2i/audio.py`` back to back: 970 -> 1400-1540 clips/s.) MP3 is decode-bound on both sides and stays so:
libsndfile's mpg123 takes 5.1 ms per 29.1 s clip, the same as the ``mpg123`` program itself (``mpg123 -s``,
AVX decoder) and less than FFmpeg's decoder (PyAV: 9.4 ms); the baseline spends the same 5.1-5.4 ms of its
16 ms decoding, so one worker cannot pass ~3x, and two workers on these 2 cores reach 4.4x (~6x is their
bound with no overhead at all; the fresh shared memory of each batch alone costs ~0.5 ms per clip). A third
core would pass 5x; none was available.

**CPU ms per clip** (each row, and the last line: librosa's CPU per clip over ours): what a clip costs in CPU in
all the pipeline's processes (main + workers, from ``/proc``), so how a pipeline scales past this machine's
2 cores: with N workers on N free cores ours tends to N times that ratio against the one-worker baseline.
Idle machine: MP3 29.1 s librosa 16.7 vs ours uncached 6.8 ms (2.5x per core: the worker's 6.4 ms is 5.1 ms of
mpg123 plus ~1.3 ms of writing into fresh shared memory and the rest; the main process 0.1 ms), so two free
cores would give ~5x and three more; WAV 44.1 -> 16 kHz 4.1 vs 0.71 ms (5.7x per core). A 10 ms clock tick
makes the short (cached, 0-worker) epochs' CPU figures coarse.

The front-end rows (``+ front-end``, on this CPU) are bound by the front-end, which is meant for the GPU.

    python experiments/benchmarks/dataloading.py                         # 256 clips, 44.1 kHz, CPU
    python experiments/benchmarks/dataloading.py --target-rate 22050     # with resampling in both pipelines
    python experiments/benchmarks/dataloading.py --format mp3 --file-rate 16000 --target-rate 16000 --seconds 29.1
    python experiments/benchmarks/dataloading.py --device cuda --clips 512 --json out.json
    OPENBLAS_NUM_THREADS=1 python experiments/benchmarks/dataloading.py --clips 256     # baseline at its steadiest
    python experiments/benchmarks/dataloading.py --format mp3 --file-rate 16000 --target-rate 16000 --seconds 29.1 --our-workers 2
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
from datamodules.files import LoaderConfig
from l2i.frontend import AudioFrontEnd, FrontEndConfig


def make_tree(root: Path, clips: int, seconds: float, rate: int, seed: int = 0, fmt: str = "wav",
              unique: int | None = None) -> Path:
    """An ESC-50-layout tree with ``clips`` clips (10 classes x 5 folds, round robin), PCM-16 WAV or MP3.

    ``unique``: encode only that many distinct clips and copy their files for the rest (MP3 encoding takes
    ~0.2-0.7 s per 29 s clip; every file is still read and decoded on its own)."""
    import shutil

    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    rows = []
    for i in range(clips):
        fold, target = 1 + i % 5, (i // 5) % 10
        name = f"{fold}-{100000 + i}-A-{target}.{fmt}"
        if unique is not None and i >= unique:
            shutil.copyfile(root / "audio" / rows[i % unique][0], root / "audio" / name)
            rows.append([name, fold, target, ESC50_CLASSES[target], "False", 100000 + i, "A"])
            continue
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


def blas_threads() -> dict[str, int]:
    """Threads of the BLAS libraries numpy loaded (librosa's mel projection is a BLAS product), by library.

    The baseline's DataLoader worker inherits them (torch sets only its own threads to 1 in workers). On a
    machine whose cores are busy with other jobs, a multi-threaded BLAS call in every item slows the baseline
    several-fold; ``OPENBLAS_NUM_THREADS=1`` (set before starting Python) gives its single-thread speed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn (the bench extra)
        return {}
    return {i["internal_api"]: int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"}


def cpu_seconds() -> float | None:
    """CPU seconds (user + system) used so far by this process and its live children - the DataLoader
    workers - read from Linux's ``/proc`` (``None`` elsewhere). Its difference over an epoch divided by the
    clips is what a clip costs in CPU, whichever process spent it: the figure that tells how a pipeline scales
    with more cores and workers, where clips/s on this machine cannot."""
    try:
        tick, me, total = os.sysconf("SC_CLK_TCK"), os.getpid(), 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    stat = fh.read()
            except OSError:  # the process ended meanwhile
                continue
            fields = stat[stat.rindex(")") + 2:].split()  # from field 3 (state): ppid, ..., utime, stime
            if int(entry) == me or int(fields[1]) == me:
                total += int(fields[11]) + int(fields[12])
        return total / tick
    except (OSError, ValueError, AttributeError):
        return None


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
    root = make_tree(work / "ESC-50-master", args.clips, args.seconds, args.file_rate, fmt=args.format,
                     unique=getattr(args, "unique_clips", None))
    ours_workers = args.workers if args.our_workers is None else args.our_workers
    kw = dict(sample_rate=args.target_rate, duration_s=args.seconds, batch_size=args.batch_size,
              num_workers=ours_workers, persistent_workers=True, pin_memory=device.type == "cuda",
              test_fold=1, val_fold=None, val_fraction=0.0)
    w = f" ({ours_workers} w)" if ours_workers != args.workers else ""

    def esc50(**kwargs) -> ESC50DataModule:  # the loader's keys (batch_size, cache_dir …) go into its group
        return ESC50DataModule(str(root), **LoaderConfig.group(kwargs))

    def all_folds(dm: ESC50DataModule) -> list[DataLoader]:
        """Every clip once, in file order: the training folds' loader (unshuffled) and the test fold's."""
        dm.setup("fit")
        dm.setup("test")
        return [dm._loader("train", shuffle=False), dm._loader("test", shuffle=False)]

    def ours_step(with_frontend: bool):
        def step(batch):
            if with_frontend:
                wav = batch["waveform"].to(device, non_blocking=True).float()  # float16 batches: cast on the device
                with torch.no_grad():
                    # STFT, |X|, log-mel and log1p|X| (the NMF input): what the librosa pipeline computes
                    front(wav, cfg.sample_rate).nmf
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            return len(batch["id"])
        return step

    results: dict[str, dict] = {}
    blas = blas_threads()
    print(f"numpy BLAS threads (librosa's mel product, also in its worker): {blas or 'unknown'}; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}", flush=True)

    def measure(name: str, loader, step):
        _epoch(loader, step)  # warm-up (page cache, worker start-up paths, kernels)
        cpu0 = cpu_seconds()
        secs, n = _epoch(loader, step)
        cpu1 = cpu_seconds()
        cpu_ms = None if cpu0 is None or cpu1 is None else 1e3 * (cpu1 - cpu0) / n
        results[name] = {"clips": n, "seconds": round(secs, 3), "clips_per_s": round(n / secs, 1),
                         "cpu_ms_per_clip": None if cpu_ms is None else round(cpu_ms, 2)}
        cpu = "" if cpu_ms is None else f"  {cpu_ms:6.2f} CPU ms/clip"
        print(f"{name:32s} {n:5d} clips  {secs:7.2f} s  {n / secs:9.1f} clips/s{cpu}", flush=True)

    # librosa per item
    dm = esc50(**kw)
    dm.setup("fit")
    dm.setup("test")
    items = dm.items["train"] + dm.items["test"]
    lib = DataLoader(LibrosaPerItem([it.path for it in items], [it.target for it in items], cfg, args.seconds),
                     batch_size=args.batch_size, num_workers=args.workers, shuffle=False,
                     persistent_workers=args.workers > 0)
    measure("librosa per item (1 worker)" if args.workers == 1 else f"librosa per item ({args.workers} w)",
            lib, lambda b: len(b["target"]))

    unc = all_folds(esc50(**kw))
    measure(f"ours uncached{w}, loader only", unc, ours_step(False))
    measure(f"ours uncached{w} + front-end", unc, ours_step(True))

    cache_dir = work / "cache"
    dm_c = esc50(cache_dir=str(cache_dir), cache_dtype="float16", **kw)
    t0 = time.perf_counter()
    dm_c.prepare_data()
    build = time.perf_counter() - t0
    print(f"{'cache build (once)':32s} {args.clips:5d} clips  {build:7.2f} s")
    cac = all_folds(dm_c)
    measure(f"ours cached{w}, loader only", cac, ours_step(False))
    measure(f"ours cached{w} + front-end", cac, ours_step(True))
    half = all_folds(esc50(cache_dir=str(cache_dir), cache_dtype="float16",
                                     batch_dtype="float16", **kw))
    measure(f"ours cached{w}, f16 batches, loader", half, ours_step(False))
    if ours_workers:
        kw0 = dict(kw, num_workers=0)
        cac0 = all_folds(esc50(cache_dir=str(cache_dir), cache_dtype="float16", **kw0))
        measure("ours cached, 0 workers, loader", cac0, ours_step(False))
        half0 = all_folds(esc50(cache_dir=str(cache_dir), cache_dtype="float16",
                                          batch_dtype="float16", **kw0))
        measure("ours cached, 0 w, f16 batches, loader", half0, ours_step(False))

    base = results[next(iter(results))]["clips_per_s"]
    ratios = {k: round(v["clips_per_s"] / base, 1) for k, v in results.items()}
    print("speed-up over librosa per item: " + ", ".join(f"{k}: {r}x" for k, r in ratios.items()))
    base_cpu = results[next(iter(results))]["cpu_ms_per_clip"]
    cpu_ratios = {k: round(base_cpu / v["cpu_ms_per_clip"], 1) for k, v in results.items()
                  if base_cpu and v["cpu_ms_per_clip"]}
    if cpu_ratios:  # per core: with N workers on N free cores, ours tends to N times this against one librosa worker
        print("CPU per clip, librosa per item / ours: " + ", ".join(f"{k}: {r}x" for k, r in cpu_ratios.items()))
    return {
        "clips": args.clips, "seconds_per_clip": args.seconds, "format": args.format, "file_rate": args.file_rate,
        "target_rate": args.target_rate, "batch_size": args.batch_size, "workers": args.workers,
        "our_workers": ours_workers,
        "device": str(device), "torch_threads": torch.get_num_threads(), "blas_threads": blas, "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "machine": platform.platform(), "cache_build_s": round(build, 2), "results": results, "speedup": ratios,
        "cpu_ratio": cpu_ratios,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=256)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--file-rate", type=int, default=44100, help="rate the files are written at")
    p.add_argument("--format", choices=("wav", "mp3"), default="wav", help="audio files: PCM-16 WAV or MP3")
    p.add_argument("--target-rate", type=int, default=44100, help="rate both pipelines deliver")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers of both pipelines")
    p.add_argument("--our-workers", type=int, default=None,
                   help="workers of our pipeline only (default --workers); the librosa baseline keeps --workers")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads in the main process (0: default)")
    p.add_argument("--work-dir", default=None, help="where the tree and cache go (default: a temp folder)")
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--unique-clips", type=int, default=None,
                   help="encode only this many distinct clips, copy their files for the rest (faster MP3 set-up)")
    args = p.parse_args(argv)
    report = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
