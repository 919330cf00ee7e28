"""DDP on CPU (gloo, 2 processes): metrics equal a single-process run's, one W&B run, one set of files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from experiments.cli import read_config

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(
    """
    import json, sys
    from experiments.cli import lightning_cli

    out = sys.argv[1]
    cli = lightning_cli(sys.argv[2:], run=False)
    trainer = cli.trainer
    trainer.fit(cli.model, datamodule=cli.datamodule)
    results = trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=None, verbose=False)[0]
    if trainer.is_global_zero:
        json.dump({"world_size": trainer.world_size, **{k: float(v) for k, v in results.items()}}, open(out, "w"))
    """
)


def _config(tmp_path: Path, devices: int, max_epochs: int) -> Path:
    config = read_config(ROOT / "experiments/synthetic/classifier.yaml")  # its data / front-end files read in
    config["trainer"].update(max_epochs=max_epochs, enable_progress_bar=False, accelerator="cpu", devices=devices,
                             strategy="ddp" if devices > 1 else "auto", num_sanity_val_steps=0)
    config["trainer"]["logger"] = {"class_path": "lightning.pytorch.loggers.WandbLogger",
                                   "init_args": {"project": "ddp-test", "save_dir": str(tmp_path / f"runs{devices}"),
                                                 "offline": True}}
    config["trainer"]["default_root_dir"] = str(tmp_path / f"root{devices}")
    # 64 test clips: 32 per rank in 2 full batches, so no rank pads with repeated clips
    config["data"]["init_args"].update(num_train=64, num_val=32, num_test=64, duration_s=1.0, batch_size=16)
    config["model"]["init_args"]["backbone_kwargs"] = {"channels": [4, 8, 8, 8]}
    path = tmp_path / f"ddp{devices}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(tmp_path: Path, devices: int, max_epochs: int, extra: list[str] = ()) -> dict:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / f"results{devices}.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb"),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(out), "--config", str(_config(tmp_path, devices, max_epochs)),
                           *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_single_process_metrics_and_write_one_run(tmp_path):
    # max_epochs 0: no training, so both runs evaluate the same seeded initial weights; the test metrics
    # (torchmetrics, synced across ranks) must be the single-process figures
    single = _run(tmp_path, devices=1, max_epochs=0)
    double = _run(tmp_path, devices=2, max_epochs=0)
    assert single["world_size"] == 1 and double["world_size"] == 2
    for key in ("test/accuracy", "test/macro_accuracy", "test/loss"):
        assert abs(single[key] - double[key]) < 1e-5, (key, single[key], double[key])


@pytest.mark.slow
def test_ddp_fit_writes_one_wandb_run_and_one_set_of_checkpoints(tmp_path):
    results = _run(tmp_path, devices=2, max_epochs=1)
    assert results["world_size"] == 2 and 0.0 <= results["test/accuracy"] <= 1.0
    runs = list((tmp_path / "runs2" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    ckpts = sorted(p.name for p in (tmp_path / "root2" / "checkpoints").glob("*.ckpt"))
    assert ckpts == ["best.ckpt", "last.ckpt"], ckpts
