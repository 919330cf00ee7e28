"""Epoch time of the demo classifier with 1 vs 2 processes (DDP, gloo on CPU; NCCL on GPUs).

Each configuration runs ``l2i fit`` in a fresh process (DDP launches its own workers) for ``--epochs``
epochs and reports the mean time of the epochs after the first (start-up excluded). On a 2-core CPU two
processes share the same cores, so expect little or no gain there; the script is for multi-GPU machines.

    python experiments/benchmarks/ddp_epoch_time.py                          # CPU: 1 vs 2 processes
    python experiments/benchmarks/ddp_epoch_time.py --accelerator gpu --devices 1 2 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import json, sys, time
import lightning as L
from experiments.cli import lightning_cli

class EpochTimer(L.Callback):
    def __init__(self):
        self.times, self.start = [], None
    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()
    def on_train_epoch_end(self, trainer, pl_module):
        self.times.append(time.perf_counter() - self.start)

timer = EpochTimer()
cli = lightning_cli(sys.argv[2:], run=False)
cli.trainer.callbacks.append(timer)
cli.trainer.fit(cli.model, datamodule=cli.datamodule)
if cli.trainer.is_global_zero:
    json.dump({"epoch_s": timer.times, "world_size": cli.trainer.world_size}, open(sys.argv[1], "w"))
"""


def run(devices: int, args: argparse.Namespace, tmp: Path) -> dict:
    config = yaml.safe_load((ROOT / "experiments/synthetic/classifier.yaml").read_text())
    config["trainer"].update(max_epochs=args.epochs, accelerator=args.accelerator, devices=devices, logger=False,
                             strategy="ddp" if devices > 1 else "auto", enable_progress_bar=False,
                             num_sanity_val_steps=0, default_root_dir=str(tmp / f"d{devices}"), limit_val_batches=0)
    config["data"]["init_args"].update(num_train=args.clips, batch_size=args.batch_size)
    cfg, out, script = tmp / f"d{devices}.yaml", tmp / f"d{devices}.json", tmp / "worker.py"
    cfg.write_text(yaml.safe_dump(config))
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), str(out), "--config", str(cfg)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"devices={devices} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(out.read_text())
    result["wall_s"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--clips", type=int, default=512, help="training clips per epoch (all processes together)")
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = {d: run(d, args, Path(tmp)) for d in args.devices}
    base = None
    print(f"# {args.accelerator}, {args.clips} clips/epoch, batch {args.batch_size} per process, {args.epochs} epochs")
    print(f"{'processes':>9} {'epoch s (mean after 1st)':>25} {'speed-up':>9} {'wall s':>8}")
    for d, r in rows.items():
        later = r["epoch_s"][1:] or r["epoch_s"]
        mean = sum(later) / len(later)
        base = base or mean
        print(f"{d:>9} {mean:>25.2f} {base / mean:>8.2f}x {r['wall_s']:>8.1f}")


if __name__ == "__main__":
    main()
