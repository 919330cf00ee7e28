"""Shared test set-up: W&B offline into a temporary folder, few threads, small fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
#: run folders a test must never leave in the repository (they belong in tmp_path)
RUN_FOLDERS = ("runs", "lightning_logs", "wandb", "checkpoints", "l2i-cache")


@pytest.fixture(autouse=True, scope="session")
def _offline_wandb(tmp_path_factory):
    """No test may reach the network or write W&B files into the repository."""
    root = tmp_path_factory.mktemp("wandb")
    for key in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        os.environ[key] = str(root)
    os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    yield


@pytest.fixture(autouse=True, scope="session")
def _no_run_folders_in_the_repository():
    """The suite leaves no run folder in the repository: a test that does fails the session (named at the end).
    Folders already there (a user's earlier ``make demo``) are left alone."""
    before = {name for name in RUN_FOLDERS if (ROOT / name).exists()}
    yield
    left = sorted({name for name in RUN_FOLDERS if (ROOT / name).exists()} - before)
    assert not left, f"tests left run folder(s) in the repository: {left} (write them under tmp_path)"


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _no_wandb_run_left_open():
    """Each test starts without a W&B run in progress: Lightning's W&B logger would silently log into one that
    an earlier in-process test left open (its group and job type instead of the new run's). A user's command
    is a fresh process, where this cannot happen."""
    yield
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


@pytest.fixture(scope="module")
def one_thread_module():
    """Torch on one thread for a module of tests on tiny matrices: on a busy 2-core machine two threads handing
    off tiny products cost more than they gain. The thread count is restored after the module."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
