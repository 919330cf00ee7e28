"""Shared test set-up: W&B offline into a temporary folder, few threads, small fixtures."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _offline_wandb(tmp_path_factory):
    """No test may reach the network or write W&B files into the repository."""
    root = tmp_path_factory.mktemp("wandb")
    for key in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        os.environ[key] = str(root)
    os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    yield


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield
