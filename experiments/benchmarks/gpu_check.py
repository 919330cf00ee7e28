"""Every GPU speed figure in one prepared run: each benchmark on its GPU path against its baseline, same run.

    python experiments/benchmarks/gpu_check.py                       # GPU when CUDA is there, else the dry mode
    python experiments/benchmarks/gpu_check.py --json runs/gpu_check.json
    python experiments/benchmarks/gpu_check.py --dry                 # the tiny CPU run (what CI runs)
    experiments/benchmarks/gpu_check.sh                              # the same, from any folder

Figures (one line each: the figure, its baseline measured in the same run, the ratio, the target):

========================  ==========================================  =================================  ========
figure                    ours                                        baseline                           target
========================  ==========================================  =================================  ========
``nmf``                   :class:`l2i.nmf.NMF` HALS on the GPU        scikit-learn MU, every CPU core    >= 50x
``interpretations``       batched ``interpret`` on the GPU            the authors' one-clip way          >= 20x
``posthoc_step``          post-hoc training step, CNN14               frozen CNN14 forward (the ratio)   <= 2.0
``train_bf16_cl``         CNN14 train step, bf16 autocast +           the same in float32,               (none)
                          channels_last                               contiguous
``load_uncached_mp3``     uncached MP3 loading, several workers       librosa per item, 1 worker         >= 5x
``load_cached``           decode cache + front-end on the GPU,        librosa per item, 1 worker         >= 50x
                          several workers
========================  ==========================================  =================================  ========

Each part calls the functions of the benchmark scripts beside this one (``nmf_vs_sklearn.main``,
``interpret_throughput.part_a`` / ``part_b``, ``backbones_throughput.bench_one``, ``dataloading.run``): their
docstrings say what is timed and how. Sizes (``GPU_SIZES``) are chosen so the whole run takes a few minutes on
one GPU with 16 cores (well within 8); ``--budget-s`` skips the parts not yet started once it is spent. A
failing part is reported and the others still run (exit status 1). The JSON (``--json``) is rewritten after
every part, so a run cut short keeps what it measured.

Without CUDA (or with ``--dry``) the same parts run on the CPU at toy sizes (``DRY_SIZES``, ~20 s on an idle
2-core machine; the bf16 / channels_last part with the small CNN there, a CNN14 step taking 12 s on such a CPU):
the ratios of that run mean nothing and targets are not judged; it keeps the script working (a test runs it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from any folder
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

#: sizes of the GPU run (one H200-class GPU, 16 cores), estimated from the CPU figures at a few minutes in all (8 at most)
GPU_SIZES = {
    "nmf": {"frames": 60_000, "k": 100, "max_iter": 30, "sk_max_iter": 200},
    "interpret": {"clips": 256, "batch_size": 64, "components": 64, "iters": 3},
    "posthoc": {"seconds": 10.0, "train_batch": 32, "iters": 5},
    "cnn14": {"backbone": "cnn14", "batch_size": 64, "seconds": 10.0, "iters": 10, "warmup": 3},
    "loading": {"clips": 384, "unique_clips": 32, "seconds": 29.1, "batch_size": 32, "our_workers": 8},
}
#: sizes of the dry run (CPU, a few seconds per part): the code paths, not the figures
DRY_SIZES = {
    "nmf": {"frames": 600, "k": 8, "max_iter": 3, "sk_max_iter": 10},
    "interpret": {"clips": 4, "batch_size": 2, "components": 16, "iters": 1},
    "posthoc": {"seconds": 0.35, "train_batch": 2, "iters": 1},
    "cnn14": {"backbone": "small_cnn", "batch_size": 2, "seconds": 0.5, "iters": 1, "warmup": 0},  # CNN14: 12 s a step
    "loading": {"clips": 6, "unique_clips": 3, "seconds": 0.5, "batch_size": 3, "our_workers": 2},
}


def _figure(name: str, what: str, ours: float, baseline: float, unit: str, baseline_what: str,
            target: str | None, higher_is_better: bool = True, ratio: float | None = None, **details) -> dict:
    """One figure: ``ratio`` is ours / baseline (throughputs) unless given (e.g. time / time)."""
    if ratio is None:
        ratio = ours / baseline if baseline > 0 else math.inf
    return {"name": name, "what": what, "value": ours, "unit": unit, "baseline": baseline_what,
            "baseline_value": baseline, "ratio": ratio, "target": target, "higher_is_better": higher_is_better,
            **details}


def _met(fig: dict) -> bool | None:
    t = fig.get("target")
    if not t:
        return None
    op, num = t.split()[0], float(t.split()[1].rstrip("x"))
    return fig["ratio"] >= num if op == ">=" else fig["ratio"] <= num


# -- the parts -----------------------------------------------------------------------------------------------


def part_nmf(sizes: dict, device: torch.device, work: Path) -> list[dict]:
    from experiments.benchmarks import nmf_vs_sklearn

    threads = os.cpu_count() or 1
    ours = "ours-cuda" if device.type == "cuda" else "ours"
    argv = ["--frames", str(sizes["frames"]), "--k", str(sizes["k"]), "--max_iter", str(sizes["max_iter"]),
            "--sk_max_iter", str(sizes["sk_max_iter"]), "--threads", str(threads), "--data", str(work / "nmf_V.npy"),
            "--only", "sklearn", "--only", ours]
    res = nmf_vs_sklearn.main(argv)
    if "sklearn" not in res or ours not in res:
        raise RuntimeError(f"NMF benchmark: a solver failed (got {sorted(res)}); its output is above")
    sk, r = res["sklearn"], res[ours]
    return [_figure("nmf", f"NMF HALS {sizes['max_iter']} passes ({ours}), V 513 x {r['frames']}, K {sizes['k']}",
                    r["seconds"], sk["seconds"], "s", f"scikit-learn MU {sk['iterations']} it, {threads} threads",
                    ">= 50x", ratio=sk["seconds"] / r["seconds"],
                    objective_vs_sklearn=r["objective"] / sk["objective"])]


def part_interpret(sizes: dict, device: torch.device, work: Path) -> list[dict]:
    from experiments.benchmarks import interpret_throughput as it

    args = SimpleNamespace(ckpt=None, threshold=0.2, **sizes)
    a = it.part_a(args, device)
    return [_figure("interpretations", f"batched interpret, {a['clips']} clips, batch {sizes['batch_size']}, "
                    f"{a['chosen_components_mean']:.1f} components chosen", a["ours_interpretations_per_s"],
                    a["authors_interpretations_per_s"], "interpretations/s", "authors' way, one clip at a time",
                    ">= 20x", ratio=a["speedup"])]


def part_posthoc(sizes: dict, device: torch.device, work: Path) -> list[dict]:
    from experiments.benchmarks import interpret_throughput as it

    b = it.part_b(SimpleNamespace(**sizes), device)
    return [_figure("posthoc_step", f"post-hoc training step, CNN14, batch {b['batch']} x {b['seconds']:g} s",
                    b["posthoc_train_step_s"], b["classifier_forward_s"], "s", "frozen CNN14 forward (no grad)",
                    "<= 2.0", higher_is_better=False, ratio=b["ratio"])]


def part_cnn14(sizes: dict, device: torch.device, work: Path) -> list[dict]:
    from experiments.benchmarks import backbones_throughput as bt

    sizes = dict(sizes)
    backbone = sizes.pop("backbone")
    common = dict(classes=50, compile=False, **sizes)
    base = bt.bench_one(backbone, SimpleNamespace(amp="off", channels_last=False, **common), device)
    fast = bt.bench_one(backbone, SimpleNamespace(amp="bf16", channels_last=True, **common), device)
    return [_figure("train_bf16_cl", f"{backbone} train step, bf16 autocast + channels_last, batch "
                    f"{sizes['batch_size']} x {sizes['seconds']:g} s", fast["train_clips_s"], base["train_clips_s"],
                    "clips/s", "float32, contiguous", None, backbone=backbone, forward_clips_s=fast["forward_clips_s"],
                    forward_clips_s_float32=base["forward_clips_s"])]


def part_loading(sizes: dict, device: torch.device, work: Path) -> list[dict]:
    from experiments.benchmarks import dataloading

    args = argparse.Namespace(clips=sizes["clips"], seconds=sizes["seconds"], file_rate=16000, format="mp3",
                              target_rate=16000, batch_size=sizes["batch_size"], workers=1,
                              our_workers=sizes["our_workers"], device=str(device), threads=0,
                              work_dir=str(work / "loading"), json=None, unique_clips=sizes["unique_clips"])
    rep = dataloading.run(args)
    rows = rep["results"]
    base_name = next(iter(rows))
    base = rows[base_name]["clips_per_s"]
    w = f" ({sizes['our_workers']} w)"
    unc = rows[f"ours uncached{w}, loader only"]["clips_per_s"]
    cac = rows[f"ours cached{w} + front-end"]["clips_per_s"]
    what = f"MP3 {sizes['seconds']:g} s at 16 kHz, {sizes['clips']} clips, {sizes['our_workers']} workers"
    return [
        _figure("load_uncached_mp3", f"uncached loading, {what}", unc, base, "clips/s", base_name, ">= 5x"),
        _figure("load_cached", f"decode cache + front-end on {device.type}, {what}", cac, base, "clips/s", base_name,
                ">= 50x"),
    ]


PARTS: dict[str, Callable[[dict, torch.device, Path], list[dict]]] = {
    "nmf": part_nmf,
    "interpret": part_interpret,
    "posthoc": part_posthoc,
    "cnn14": part_cnn14,
    "loading": part_loading,
}


def _line(fig: dict, dry: bool) -> str:
    ratio = fig["ratio"]
    judged = "" if dry else {True: "  [met]", False: "  [NOT met]", None: ""}[_met(fig)]
    target = f"target {fig['target']}" if fig.get("target") else "no target"
    if dry and fig.get("target"):
        target += ", not judged (dry run)"
    return (f"FIGURE {fig['name']:<18} {fig['value']:.4g} {fig['unit']} vs {fig['baseline_value']:.4g} "
            f"({fig['baseline']}): ratio {ratio:.3g} ({target}){judged} — {fig['what']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry", action="store_true", help="the tiny CPU run, even where CUDA is available")
    p.add_argument("--json", default=None, help="write the figures here (default <work>/gpu_check.json)")
    p.add_argument("--work-dir", default=None, help="data, caches (default: a temp folder)")
    p.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    p.add_argument("--budget-s", type=float, default=450.0, help="parts not started after this many seconds are skipped")
    args = p.parse_args(argv)
    dry = args.dry or not torch.cuda.is_available()
    device = torch.device("cpu" if dry else "cuda")
    sizes = DRY_SIZES if dry else GPU_SIZES
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="l2i-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.json) if args.json else work / "gpu_check.json"
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU") + f", {os.cpu_count()} CPU cores"
    report = {"mode": "dry (CPU, toy sizes)" if dry else "gpu", "device": str(device), "machine": machine,
              "platform": platform.platform(), "torch": torch.__version__, "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "sizes": sizes,
              "command": "python experiments/benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "figures": [], "errors": {}, "skipped": [], "part_seconds": {}, "total_seconds": 0.0}
    print(f"[gpu_check] {report['mode']}: {machine}; torch {torch.__version__}; work dir {work}", flush=True)
    start = time.perf_counter()
    for name in args.parts:
        if time.perf_counter() - start > args.budget_s:
            report["skipped"].append(name)
            print(f"[gpu_check] {name}: skipped, the budget of {args.budget_s:g} s is spent", flush=True)
            continue
        t0 = time.perf_counter()
        try:
            figs = PARTS[name](sizes[name], device, work)
        except Exception as err:  # one broken part must not cost the others' figures
            report["errors"][name] = f"{type(err).__name__}: {err}"
            print(f"[gpu_check] {name}: FAILED ({type(err).__name__}: {err})", flush=True)
            figs = []
        report["part_seconds"][name] = round(time.perf_counter() - t0, 2)
        for fig in figs:
            fig["met"] = None if dry else _met(fig)
            report["figures"].append(fig)
            print(_line(fig, dry), flush=True)
        report["total_seconds"] = round(time.perf_counter() - start, 2)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"[gpu_check] {len(report['figures'])} figures in {report['total_seconds']:.0f} s -> {out}", flush=True)
    for fig in report["figures"]:
        print(_line(fig, dry))
    return 1 if report["errors"] else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
