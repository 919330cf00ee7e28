"""Dictionary learning survives a kill (per-epoch streaming state, --resume) and runs on several processes
(torchrun: statistics summed across ranks, one dictionary written)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from datamodules import SyntheticDataModule
from experiments.cli import read_config
from experiments.nmf import NMFSettings, learn_dictionary
from l2i.checkpoints import safe_load
from l2i.dictionary import DictionaryArtifact
from l2i.frontend import FrontEndConfig

ROOT = Path(__file__).resolve().parents[1]
FRONTEND = FrontEndConfig(sample_rate=16000, n_fft=256, hop_length=128, n_mels=32)
SETTINGS = dict(n_components=8, sparsity=0.1, epochs=3, batch_frames=512, seed=0)


def _learn(tmp: Path, name: str, epochs: int, resume: bool = False) -> DictionaryArtifact:
    dm = SyntheticDataModule(num_classes=4, duration_s=1.0, batch_size=8)
    art, _ = learn_dictionary(dm, FRONTEND, NMFSettings(**{**SETTINGS, "epochs": epochs}), tmp / f"{name}.pt",
                              split="nmf", num_clips=24, device="cpu", eval_split=None, save_images=False,
                              progress=False, threads=1, state_path=tmp / f"{name}.state.pt", resume=resume)
    return art


def test_killed_dictionary_learning_resumes_to_the_uninterrupted_dictionary(tmp_path):
    straight = _learn(tmp_path, "straight", epochs=3)
    _learn(tmp_path, "killed", epochs=1)  # "killed" after its first epoch: only the state of epoch 1 exists
    state = safe_load(tmp_path / "killed.state.pt")
    assert state["epoch"] == 1
    resumed = _learn(tmp_path, "killed", epochs=3, resume=True)
    assert safe_load(tmp_path / "killed.state.pt")["epoch"] == 3
    assert torch.allclose(straight.W, resumed.W, atol=1e-5), (straight.W - resumed.W).abs().max()
    assert resumed.meta["history"] == pytest.approx(straight.meta["history"], rel=1e-5)


@pytest.mark.slow
def test_torchrun_two_processes_learn_one_dictionary(tmp_path):
    config = read_config(ROOT / "experiments/synthetic/nmf.yaml")  # its data / front-end files read in
    config["data"]["init_args"].update(num_classes=4, duration_s=1.0, batch_size=8)
    config["frontend"] = {"sample_rate": 16000, "n_fft": 256, "hop_length": 128, "n_mels": 32}
    config["nmf"].update(n_components=8, epochs=2, batch_frames=512)
    config.update(split="nmf", num_clips=32, out=str(tmp_path / "d" / "dictionary.pt"), images=False, wandb=False,
                  eval_split=None, threads=1, progress=False, device="cpu")
    cfg = tmp_path / "nmf.yaml"
    cfg.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "experiments.cli", "nmf", "--config", str(cfg)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert files == ["dictionary.pt", "dictionary.state.pt", "dictionary.yaml"], files  # one artifact, not one per rank
    art = DictionaryArtifact.load(tmp_path / "d" / "dictionary.pt", frontend=FrontEndConfig(**config["frontend"]))
    assert art.W.shape == (129, 8) and bool(torch.isfinite(art.W).all())
    # each rank streamed its half of the clips; the statistics of both went into every W update
    assert art.meta["clips"] == 16
    # both ranks finished (no rank left waiting in a reduction); rank 0 alone says what was written
    assert proc.stdout.count("[l2i nmf] DictionaryArtifact") == 2 and proc.stdout.count("[l2i nmf] summary") == 1
