"""Safe loading of every checkpoint and artifact: ``torch.load(weights_only=True)`` with clear errors.

``weights_only=True`` unpickles tensors, plain containers and numbers only; a file that carries pickled
code (a class, a function, ``os.system`` …) is refused before anything in it runs. The few non-tensor
objects our own files hold are plain dicts / lists / strings, so no safe globals are needed.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "UnsafeCheckpointError", "safe_load"]


class CheckpointError(RuntimeError):
    """A checkpoint / artifact file is missing, empty or not a torch file. The message names the file."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds pickled objects that ``weights_only`` loading refuses (possibly code)."""


def safe_load(path: str | os.PathLike, map_location: str | torch.device | None = "cpu", what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file and say what is wrong.

    Raises:
        CheckpointError: missing, empty or unreadable file.
        UnsafeCheckpointError: the file needs unpickling of arbitrary objects (refused, nothing executed).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what} {p}: file does not exist")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{what} {p}: file is empty (0 bytes)")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = str(exc).strip().splitlines()
        detail = next((line.strip() for line in lines if "GLOBAL" in line), None)
        if detail is None:  # not a refused class/function: the bytes are simply not a torch file
            raise CheckpointError(f"{what} {p}: not a readable torch file ({lines[0] if lines else exc})") from None
        raise UnsafeCheckpointError(
            f"{what} {p}: refused — it holds pickled objects that safe loading (weights_only=True) does not "
            f"allow, which can execute code when loaded ({detail}). Re-save it as a plain state dict of tensors, "
            "or load it yourself only if you trust its origin."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:  # OSError: some truncations
        raise CheckpointError(f"{what} {p}: not a readable torch file ({type(exc).__name__}: {exc})") from exc
