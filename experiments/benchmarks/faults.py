"""Fault injection: kill -9, full and read-only disks, truncated files, exploding losses, tiny inputs.

    python experiments/benchmarks/faults.py [--quick] [--workdir DIR] [--keep]

Every case runs what a user runs (``python -m experiments.cli …``: ``l2i fit`` with the default logger,
SafeWandbLogger offline; ``l2i nmf``; ``l2i interpret``) on tiny synthetic data or tone fixtures, in
subprocesses, and prints one row per case:

    fault | outcome | work lost (steps) | data lost

"work lost" is the optimiser steps (NMF: epochs, cache: decoded clips) that must be redone after the fault;
"data lost" lists files that were damaged, left behind or silently replaced ("none" when every earlier
result is intact and no temporary file stays).

The full-disk cases use a small tmpfs (``mount -t tmpfs``, root on Linux); where it cannot be mounted they
simulate ENOSPC in the child process (reported as "simulated"). ``--quick`` runs the cases without training
(the decode cache and the truncated NMF state; a few seconds of CPU) and is what the test suite runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Row:
    fault: str
    outcome: str
    lost: str
    data_lost: str
    ok: bool


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def _env(**extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.update(extra)
    return env


def _py(args: list[str], cwd: Path, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def _l2i(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return _py(["-m", "experiments.cli", *args], cwd, **env)


def _last_line(text: str, needle: str | None = None) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if needle:
        lines = [ln for ln in lines if needle in ln] or lines
    return lines[-1][:220] if lines else ""


def _load(path: Path):
    from l2i.checkpoints import safe_load

    return safe_load(path)


@contextlib.contextmanager
def tmpfs(path: Path, size: str, readonly: bool = False):
    """A small tmpfs at ``path`` (yields True), or a plain folder when it cannot be mounted (yields False)."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    mounted = shutil.which("mount") is not None and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], capture_output=True)


def _tiny_fit_config(work: Path, interval: int = 4) -> Path:
    """The shipped synthetic classifier config, made tiny (96 clips / batch 16 = 6 steps per epoch)."""
    import yaml

    config = yaml.safe_load((ROOT / "experiments/synthetic/classifier.yaml").read_text())
    config["trainer"].update(max_epochs=2, enable_progress_bar=False, accelerator="cpu", deterministic=True,
                             log_every_n_steps=1)
    for cb in config["trainer"]["callbacks"]:
        if "last_every_n_train_steps" in cb.get("init_args", {}):
            cb["init_args"]["last_every_n_train_steps"] = interval
    config["data"]["init_args"].update(num_train=96, num_val=32, num_test=32, duration_s=1.0, batch_size=16)
    config["model"]["init_args"]["backbone_kwargs"] = {"channels": [4, 8, 8, 8]}
    path = work / "tiny_classifier.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


KILL_FIT = textwrap.dedent(
    """
    import os, signal, sys
    import lightning as L
    from experiments.cli import lightning_cli

    class KillAt(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == int(os.environ["KILL_AT_STEP"]):
                os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, as a node failure

    cli = lightning_cli(sys.argv[1:], run=False)
    cli.trainer.callbacks.append(KillAt())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    """
)


def _max_diff(a: Path, b: Path) -> float:
    sa, sb = _load(a)["state_dict"], _load(b)["state_dict"]
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa if sa[k].is_floating_point())


# ----------------------------------------------------------------------------------------------------------
# training cases (l2i fit with the default logger)
# ----------------------------------------------------------------------------------------------------------
def case_fit_kill_resume(work: Path) -> Row:
    cfg = _tiny_fit_config(work)
    common = ["fit", "--config", str(cfg), "--trainer.logger.init_args.save_dir", str(work / "runs")]
    straight = _l2i(common + ["--trainer.default_root_dir", str(work / "straight")], work)
    script = work / "kill_fit.py"
    script.write_text(KILL_FIT)
    run = work / "killed"
    dead = _py([str(script), *common[1:], "--trainer.default_root_dir", str(run)], work, KILL_AT_STEP="10")
    ckpts = run / "checkpoints"
    saved_step = int(_load(ckpts / "last.ckpt")["global_step"]) if (ckpts / "last.ckpt").is_file() else 0
    resumed = _l2i(common + ["--trainer.default_root_dir", str(run), "--ckpt_path", "last"], work)
    restored = "Restored all states from the checkpoint" in resumed.stderr
    names = sorted(p.name for p in ckpts.iterdir())
    ok = (straight.returncode == 0 and dead.returncode == -signal.SIGKILL and resumed.returncode == 0 and restored
          and names == ["best.ckpt", "last.ckpt"])
    diff = _max_diff(work / "straight" / "checkpoints" / "last.ckpt", ckpts / "last.ckpt") if ok else float("nan")
    outcome = (f"killed at step 10 (rc {dead.returncode}); --ckpt_path last {'restored step ' + str(saved_step) if restored else 'DID NOT RESTORE'}"
               f", rc {resumed.returncode}; final weights vs uninterrupted run: max |diff| {diff:.2g}")
    extra = [n for n in names if n not in ("best.ckpt", "last.ckpt")]
    return Row("kill -9 during l2i fit (default W&B logger), then --ckpt_path last", outcome,
               str(10 - saved_step) if restored else "10 (retrained)", "none" if not extra else f"stray {extra}",
               ok and diff <= 1e-6)


def case_fit_truncated_last(work: Path) -> Row:
    """A full disk or a kill while a newer last-v1.ckpt was written leaves a partial file beside a good one."""
    cfg = _tiny_fit_config(work)
    run = work / "trunc"
    common = ["fit", "--config", str(cfg), "--trainer.logger.init_args.save_dir", str(work / "runs"),
              "--trainer.default_root_dir", str(run)]
    first = _l2i(common + ["--trainer.max_epochs", "1"], work)
    ckpts = run / "checkpoints"
    good = ckpts / "last.ckpt"
    partial = ckpts / "last-v1.ckpt"
    partial.write_bytes(good.read_bytes()[:4096])
    os.utime(partial, ns=(good.stat().st_mtime_ns + 10**9,) * 2)
    resumed = _l2i(common + ["--ckpt_path", "last"], work)
    warned = "skipping last checkpoint" in resumed.stderr and "last-v1.ckpt" in resumed.stderr
    restored = f"Restored all states from the checkpoint at {good}" in resumed.stderr
    step = int(_load(good)["global_step"]) if good.is_file() else -1
    ok = first.returncode == 0 and resumed.returncode == 0 and warned and restored and step == 12
    outcome = (f"{'warned: skipping …last-v1.ckpt (not a readable torch file)' if warned else 'no warning'}; "
               f"{'restored last.ckpt (step 6)' if restored else 'did not restore last.ckpt'}; rc {resumed.returncode}, "
               f"finished at step {step}")
    return Row("--ckpt_path last with a truncated newest last-v1.ckpt", outcome, "0" if restored else "6",
               "none (the partial file is left, ignored)" if ok else "?", ok)


def case_fit_readonly(work: Path) -> Row:
    cfg = _tiny_fit_config(work)
    with tmpfs(work / "ro", "1m", readonly=True) as mounted:
        target = work / "ro" / "run"
        if not mounted:  # a path under a regular file cannot be created either
            (work / "ro" / "file").write_text("x")
            target = work / "ro" / "file" / "run"
        res = _l2i(["fit", "--config", str(cfg), "--trainer.logger.init_args.save_dir", str(work / "runs"),
                    "--trainer.default_root_dir", str(target)], work)
    msg = _last_line(res.stderr, "not writable")
    trained = "Epoch 0" in res.stderr or "train/loss" in res.stderr
    ok = res.returncode != 0 and "checkpoint folder" in msg and str(target) in msg
    return Row("read-only trainer.default_root_dir" + ("" if mounted else " (simulated)"),
               f"rc {res.returncode} before training: {msg.split(': ', 1)[-1][:120]}", "0" if ok and not trained else "?",
               "none", ok)


def case_fit_nan(work: Path) -> Row:
    cfg = _tiny_fit_config(work)
    run = work / "nan"
    res = _l2i(["fit", "--config", str(cfg), "--trainer.logger.init_args.save_dir", str(work / "runs"),
                "--trainer.default_root_dir", str(run), "--model.init_args.lr", "1e30"], work)
    rescue = sorted(run.glob("nonfinite-step*.ckpt"))
    msg = _last_line(res.stderr, "NonFiniteLossError")
    if not rescue:
        return Row("NaN loss (lr 1e30)", f"rc {res.returncode}, no rescue checkpoint: {msg}", "?", "?", False)
    import torch

    from lightning_modules import ClassifierModule

    state = _load(rescue[0])["state_dict"]
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    largest = max(float(v.float().abs().max()) for k, v in state.items() if v.is_floating_point() and "running" not in k)
    model = ClassifierModule.load_frozen(str(rescue[0]))
    logits = model(torch.randn(4, 16000) * 0.1)
    finite = bool(torch.isfinite(logits).all())
    warned = "weights are already extreme" in res.stderr
    # lr 1e30: step 0's update already made the weights ~1e30 (finite); the guard must say that the rescue, though
    # finite, cannot predict (the bad batch-norm statistics of the old rescue are gone either way)
    ok = res.returncode != 0 and not bad and (finite or warned)
    return Row("NaN loss (lr 1e30): NaNGuard's rescue checkpoint",
               f"rc {res.returncode}, {rescue[0].name}: {len(bad)} non-finite tensors (was 16), max |w| {largest:.2g}; "
               f"loaded model predicts {'finite' if finite else 'NaN'} logits"
               f"{'; the message says the weights are already extreme' if warned else ''}",
               "0 (the state before the bad step)", "none", ok)


def case_fit_divergence(work: Path) -> Row:
    cfg = _tiny_fit_config(work)
    res = _l2i(["fit", "--config", str(cfg), "--trainer.logger.init_args.save_dir", str(work / "runs"),
                "--trainer.default_root_dir", str(work / "div"), "--trainer.max_epochs", "3",
                "--model.init_args.lr", "1e3"], work)
    msg = _last_line(res.stderr, "DivergenceError")
    stopped = "training diverges" in msg
    return Row("finite divergence (lr 1e3)", f"rc {res.returncode}: {msg.split(': ', 1)[-1][:140] if stopped else 'not stopped: ' + msg}",
               "n/a (stopped)", "none", stopped and res.returncode != 0)


# ----------------------------------------------------------------------------------------------------------
# NMF
# ----------------------------------------------------------------------------------------------------------
def _nmf_args(out: Path, epochs: int = 6, clips: int = 200) -> list[str]:
    return ["nmf", "--config", str(ROOT / "experiments/synthetic/nmf.yaml"), "--num_clips", str(clips),
            "--nmf.epochs", str(epochs), "--eval_split", "null", "--progress", "false", "--images", "false",
            "--wandb", "false", "--cache_mb", "0", "--out", str(out)]


def case_nmf_kill_resume(work: Path) -> Row:
    out = work / "nmf" / "d.pt"
    state = out.with_suffix(".state.pt")
    proc = subprocess.Popen([sys.executable, "-m", "experiments.cli", *_nmf_args(out)], cwd=work, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed_after = None
    deadline = time.time() + 600
    while proc.poll() is None and time.time() < deadline:
        if state.is_file():
            try:
                epoch = int(_load(state)["epoch"])
            except Exception:  # noqa: BLE001 - being replaced right now
                epoch = 0
            if epoch >= 2:
                proc.send_signal(signal.SIGKILL)
                killed_after = epoch
                break
        time.sleep(0.2)
    proc.communicate()
    res = _l2i(_nmf_args(out) + ["--resume", "true"], work)
    line = _last_line(res.stdout, "resuming from")
    ok = killed_after is not None and res.returncode == 0 and "resuming from" in line and out.is_file()
    return Row("kill -9 during l2i nmf, then --resume true",
               f"killed after epoch {killed_after} of 6; rerun rc {res.returncode}: {line[:110]}",
               "< 1 epoch (the one in progress)", "none" if ok else "?", ok)


def case_nmf_truncated_state(work: Path) -> Row:
    import torch

    out = work / "nmf_tr" / "d.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    whole = work / "nmf_tr" / "whole.pt"
    torch.save({"W": torch.rand(257, 64), "epoch": torch.tensor(3)}, whole)
    out.with_suffix(".state.pt").write_bytes(whole.read_bytes()[:2000])
    res = _l2i(_nmf_args(out, epochs=1, clips=8) + ["--resume", "true"], work)
    msg = _last_line(res.stderr, "l2i nmf: error")
    ok = res.returncode == 2 and "d.state.pt: not a readable torch file" in msg and "Traceback" not in res.stderr
    return Row("truncated NMF streaming state, --resume true", f"rc {res.returncode}: {msg[:150]}", "0 (nothing run)",
               "none (the state file is named, left for inspection)", ok)


# ----------------------------------------------------------------------------------------------------------
# the decode cache
# ----------------------------------------------------------------------------------------------------------
CACHE_CHILD = textwrap.dedent(
    """
    import errno, os, signal, sys
    from pathlib import Path
    from datamodules import decode
    from datamodules.cache import WaveformCache

    cache_dir, mode = sys.argv[1], sys.argv[2]
    paths = sorted(str(p) for p in Path(sys.argv[3]).glob("*.wav"))
    rate, seconds = 32000, 5.0
    if mode == "kill":  # SIGKILL after 5 decoded clips
        real, count = decode.decode_clip, [0]
        def dying(*a, **k):
            count[0] += 1
            if count[0] > 5:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*a, **k)
        decode.decode_clip = dying
    if mode == "simulated-enospc":  # no tmpfs: the file system reports a full disk when blocks are reserved
        def full(fd, offset, length):
            raise OSError(errno.ENOSPC, "No space left on device")
        os.posix_fallocate = full
    try:
        arr = WaveformCache(cache_dir, rate, int(rate * seconds)).build(paths, tag="train", progress=False)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"built {len(arr)} rows, {sum(arr.ok)} ok")
    """
)


def _audio(work: Path, n: int = 12) -> Path:
    import numpy as np
    import soundfile as sf

    folder = work / "audio"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i in range(n):
            t = np.arange(int(44100 * 5.0)) / 44100
            x = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.01 * rng.standard_normal(t.size)
            sf.write(str(folder / f"clip{i:02d}.wav"), x.astype(np.float32), 44100, subtype="PCM_16")
    return folder


def _cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


def case_cache_kill(work: Path) -> Row:
    audio, cache = _audio(work), work / "cache_kill"
    script = work / "cache_child.py"
    script.write_text(CACHE_CHILD)
    dead = _py([str(script), str(cache), "kill", str(audio)], work)
    left = [n for n in _cache_files(cache) if ".tmp-" in n]
    again = _py([str(script), str(cache), "plain", str(audio)], work)
    after = _cache_files(cache)
    ok = dead.returncode == -signal.SIGKILL and again.returncode == 0 and not any(".tmp-" in n for n in after)
    return Row("kill -9 during the decode-cache build, then rerun",
               f"killed (rc {dead.returncode}) leaving {len(left)} temporary file(s); rerun: {again.stdout.strip()}, "
               f"files now {len(after)} ({'no' if ok else 'some'} temporaries)",
               "5 decoded clips", "none (stale temporary removed)" if ok else f"left {after}", ok)


def case_cache_full_disk(work: Path) -> Row:
    audio = _audio(work)
    script = work / "cache_child.py"
    script.write_text(CACHE_CHILD)
    with tmpfs(work / "tiny", "3m") as mounted:
        cache = work / "tiny" / "cache"
        res = _py([str(script), str(cache), "plain" if mounted else "simulated-enospc", str(audio)], work)
        left = _cache_files(cache)
        used = shutil.disk_usage(work / "tiny").used if mounted else 0
    msg = _last_line(res.stderr, "error:")
    ok = res.returncode == 1 and ("needs" in msg or "no space left" in msg) and not left
    return Row("full disk during the decode-cache build (" + ("3 MB tmpfs" if mounted else "simulated ENOSPC") + ")",
               f"rc {res.returncode} (was SIGBUS 135): {msg.replace('error: ', '')[:150]}",
               "0 (nothing decoded yet)", f"none ({len(left)} files left, {used / 1e3:.0f} kB used)", ok)


def case_cache_truncated(work: Path) -> Row:
    audio, cache = _audio(work), work / "cache_tr"
    script = work / "cache_child.py"
    script.write_text(CACHE_CHILD)
    first = _py([str(script), str(cache), "plain", str(audio)], work)
    array = next(cache.glob("*.npy"))
    with open(array, "r+b") as f:
        f.truncate(array.stat().st_size // 2)
    again = _py([str(script), str(cache), "plain", str(audio)], work)
    warned = "truncated or unreadable; rebuilding" in again.stderr
    ok = first.returncode == 0 and again.returncode == 0 and warned
    return Row("cache array truncated under a valid manifest",
               f"rerun rc {again.returncode}: {'warned and rebuilt' if warned else 'NOT rebuilt'} ({again.stdout.strip()})",
               "12 decoded clips (the rebuild)", "none", ok)


# ----------------------------------------------------------------------------------------------------------
# interpret
# ----------------------------------------------------------------------------------------------------------
def _interpreter_checkpoint(work: Path) -> Path:
    import lightning as L
    import torch

    from datamodules import SyntheticDataModule
    from l2i.dictionary import DictionaryArtifact
    from l2i.frontend import FrontEndConfig
    from lightning_modules import ClassifierModule
    from lightning_modules.posthoc import PostHocInterpreterModule

    fe = dict(sample_rate=16000, n_fft=512, hop_length=256, n_mels=32, top_db=80.0)
    dm = SyntheticDataModule(num_classes=4, num_train=16, num_val=8, num_test=8, batch_size=8, duration_s=1.0)
    kw = dict(max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    clf = ClassifierModule(backbone="small_cnn", backbone_kwargs={"channels": [4, 8, 8, 8]}, frontend=fe, num_classes=4)
    trainer = L.Trainer(**kw)
    trainer.fit(clf, datamodule=dm)
    trainer.save_checkpoint(work / "clf.ckpt")
    DictionaryArtifact(W=torch.rand(257, 16), frontend=FrontEndConfig(**fe).spectral_params(), meta={}).save(work / "dict.pt")
    model = PostHocInterpreterModule(classifier_checkpoint=str(work / "clf.ckpt"), dictionary_path=str(work / "dict.pt"),
                                     hidden=8, attention_dim=8)
    trainer = L.Trainer(**kw)
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(work / "interp.ckpt")
    return work / "interp.ckpt"


def case_interpret_short(work: Path) -> list[Row]:
    import numpy as np
    import soundfile as sf

    ckpt = _interpreter_checkpoint(work)
    rows = []
    for seconds in (0.05, 1 / 16000):
        clip = work / f"short_{seconds:.5f}.wav"
        n = max(1, int(round(seconds * 16000)))
        sf.write(str(clip), (0.3 * np.sin(np.arange(n) * 0.2)).astype(np.float32), 16000)
        res = _l2i(["interpret", "--ckpt", str(ckpt), "--input", str(clip), "--out", str(work / "iout"), "--no_plots"], work)
        tail = _last_line(res.stdout if res.returncode == 0 else res.stderr)
        clean = res.returncode == 0 or ("Traceback" not in res.stderr and "s" in tail)
        rows.append(Row(f"l2i interpret on a {n}-sample clip ({n / 16000:.4f} s)", f"rc {res.returncode}: {tail[:150]}",
                        "n/a", "none", clean))
    return rows


# ----------------------------------------------------------------------------------------------------------
QUICK = [case_cache_kill, case_cache_full_disk, case_cache_truncated, case_nmf_truncated_state]
FULL = QUICK + [case_fit_kill_resume, case_fit_truncated_last, case_fit_readonly, case_fit_nan, case_fit_divergence,
                case_nmf_kill_resume, case_interpret_short]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the cases without training (seconds)")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--only", default=None, help="run the cases whose function name contains this")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="l2i-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    cases = [c for c in (QUICK if args.quick else FULL) if not args.only or args.only in c.__name__]
    rows: list[Row] = []
    try:
        for case in cases:
            start = time.time()
            sub = work / case.__name__
            sub.mkdir(exist_ok=True)
            try:
                got = case(sub)
            except Exception as exc:  # noqa: BLE001 - a crashing case is a row, not the end of the table
                got = Row(case.__name__, f"case crashed: {type(exc).__name__}: {str(exc)[:160]}", "?", "?", False)
            for row in got if isinstance(got, list) else [got]:
                rows.append(row)
                print(f"[{time.time() - start:5.0f} s] {'GOOD' if row.ok else 'BAD '} {row.fault}", flush=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print("| fault | outcome | work lost (steps) | data lost | verdict |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.fault} | {r.outcome} | {r.lost} | {r.data_lost} | {'GOOD' if r.ok else 'BAD'} |")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
