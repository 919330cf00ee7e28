"""Safe loading of every checkpoint and artifact: ``torch.load(weights_only=True)`` with clear errors.

``weights_only=True`` unpickles tensors, plain containers and numbers only; a file that carries pickled
code (a class, a function, ``os.system`` …) is refused before anything in it runs. The few non-tensor
objects our own files hold are plain dicts / lists / strings, so no safe globals are needed.

This module also tells what a file is (:func:`checkpoint_kind`, :func:`require_kind`) and finds the artifacts a
checkpoint names (:func:`resolve_artifact`). What a trained interpreter consists of, read from its file, is
:mod:`l2i.bundle` (it needs the dictionary artifact, which itself loads through :func:`safe_load`).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "UnsafeCheckpointError", "CheckpointKindError", "safe_load", "checkpoint_kind", "require_kind",
           "resolve_artifact"]


class CheckpointError(RuntimeError):
    """A checkpoint / artifact file is missing, empty or not a torch file. The message names the file."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds pickled objects that ``weights_only`` loading refuses (possibly code)."""


def did_you_mean(path: str | os.PathLike) -> str:
    """``" (did you mean interpreter.ckpt?)"`` when a file of a close name is in the same folder, else ``""``."""
    import difflib

    p = Path(path)
    try:
        names = [x.name for x in p.parent.iterdir() if x.is_file()] if p.parent.is_dir() else []
    except OSError:
        return ""
    close = difflib.get_close_matches(p.name, names, n=1, cutoff=0.75)
    return f" (did you mean {p.parent / close[0]}?)" if close else ""


def safe_load(path: str | os.PathLike, map_location: str | torch.device | None = "cpu", what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file and say what is wrong.

    Raises:
        CheckpointError: missing, empty or unreadable file.
        UnsafeCheckpointError: the file needs unpickling of arbitrary objects (refused, nothing executed).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what} {p}: {'is a directory, not a file' if p.is_dir() else 'file does not exist'}"
                              f"{did_you_mean(p)}")
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


# -- what a checkpoint is, and interpreters that load from any folder --------------------------------------

#: the class each kind of checkpoint belongs to (the names users see in messages)
KIND_CLASSES = {
    "classifier": "ClassifierModule",
    "posthoc": "PostHocInterpreterModule",
    "bydesign": "ByDesignModule",
    "lmac": "LMACModule",
    "dictionary": "DictionaryArtifact",
    "interpreter": "self-contained interpreter",
}
#: ``format`` of the self-contained interpreter file (``l2i export``)
INTERPRETER_FORMAT = "l2i.interpreter"
INTERPRETER_VERSION = 1
#: top-level key under which the Lightning checkpoints of the interpreters carry their own bundle (see
#: :func:`l2i.bundle.read_interpreter`): the classifier's architecture and the dictionary, so no other file is needed
EMBEDDED_KEY = "l2i_interpreter"
#: the state-dict prefix of the pure-torch model inside each LightningModule
STATE_PREFIX = {"posthoc": "interpreter.", "bydesign": "model."}
INTERPRETER_KINDS = ("posthoc", "bydesign")


class CheckpointKindError(CheckpointError):
    """The file is a checkpoint of another kind than the command needs (e.g. a classifier's for ``interpret``)."""


def checkpoint_kind(state: Any) -> str | None:
    """What a loaded checkpoint / artifact is: ``classifier``, ``posthoc``, ``bydesign``, ``lmac``, ``dictionary``
    or the kind stored in a self-contained interpreter file; ``None`` when it cannot be told.

    Read from the stored class (``hyper_parameters._class_path``, written by LightningCLI) when there is one,
    else from the weights' names (``interpreter.psi.*`` is a post-hoc interpreter, ``model.psi.*`` a by-design
    model, ``backbone.*`` alone a classifier)."""
    if not isinstance(state, dict):
        return None
    if state.get("format") == INTERPRETER_FORMAT:
        return str(state.get("kind"))
    if state.get("format") == "l2i.dictionary":
        return "dictionary"
    embedded = state.get(EMBEDDED_KEY)
    if isinstance(embedded, dict) and embedded.get("kind") in INTERPRETER_KINDS:
        return str(embedded["kind"])
    hp = state.get("hyper_parameters") or {}
    class_path = str(hp.get("_class_path") or "")
    by_name = {name: kind for kind, name in KIND_CLASSES.items()}
    if class_path.rpartition(".")[2] in by_name:
        return by_name[class_path.rpartition(".")[2]]
    keys = list((state.get("state_dict") or {}).keys())
    if any(k.startswith("interpreter.psi.") for k in keys):
        return "posthoc"
    if any(k.startswith("model.psi.") for k in keys):
        return "bydesign"
    if any(k.startswith("interpreter.") for k in keys) and "out_cap" in hp:
        return "lmac"
    if any(k.startswith("backbone.") for k in keys) and "backbone" in hp:
        return "classifier"
    return None


def describe_kind(kind: str | None, class_path: str | None = None) -> str:
    """``"a ClassifierModule checkpoint"`` … for messages."""
    if kind is None:
        return f"a checkpoint of {class_path}" if class_path else "a checkpoint of an unknown kind"
    if kind == "dictionary":
        return "an NMF dictionary artifact (l2i nmf), not a model checkpoint"
    if kind == "interpreter":
        return "a self-contained interpreter file"
    return f"a {KIND_CLASSES.get(kind, kind)} checkpoint"


def require_kind(path: str | os.PathLike, state: Any, kinds: tuple[str, ...], verb: str) -> str:
    """The kind of ``state`` when it is one of ``kinds``; else :class:`CheckpointKindError` saying what the
    file is and what ``verb`` needs, e.g. "this is a ClassifierModule checkpoint; interpret needs a post-hoc
    interpreter's (PostHocInterpreterModule) or a by-design model's (ByDesignModule)"."""
    kind = checkpoint_kind(state)
    if kind in kinds:
        return kind
    wanted = {"posthoc": "a post-hoc interpreter's (PostHocInterpreterModule, l2i fit --config …/posthoc.yaml)",
              "bydesign": "a by-design model's (ByDesignModule, l2i fit --config …/bydesign.yaml)",
              "classifier": "a classifier's (ClassifierModule)", "lmac": "an L-MAC decoder's (LMACModule)"}
    need = " or ".join(wanted.get(k, k) for k in kinds)
    class_path = ((state.get("hyper_parameters") or {}).get("_class_path") if isinstance(state, dict) else None)
    raise CheckpointKindError(f"{path}: this is {describe_kind(kind, class_path)}; {verb} needs {need}")


def _ancestors(folder: Path) -> list[Path]:
    folder = folder.resolve()
    return [folder, *folder.parents]


def resolve_artifact(recorded: str | os.PathLike, checkpoint: str | os.PathLike, what: str, hint: str = "") -> Path:
    """The file an interpreter checkpoint names (``classifier_checkpoint``, ``dictionary_path``), found from any
    working directory.

    A relative path was relative to the folder training ran in. It is looked for, in order: below each folder
    that contains the checkpoint (``<ckpt folder>/<path>``, ``<its parent>/<path>`` …, which finds
    ``runs/demo/classifier/classifier.ckpt`` for ``/anywhere/runs/demo/posthoc/interpreter.ckpt``); below the
    working directory; then its shorter tails below those folders (a copied ``demo/`` folder, or the file
    sent beside the checkpoint). An absolute path is used when it exists, else its tails are searched the
    same way.

    Raises:
        CheckpointError: not found; the message names the recorded path, says whether it is relative and
            where it was looked for, and ``hint`` (how to give the file).
    """
    rec = Path(recorded)
    ckpt_dir = Path(checkpoint).parent
    bases = _ancestors(ckpt_dir)
    candidates: list[Path] = []
    if rec.is_absolute():
        candidates.append(rec)
    else:
        candidates += [b / rec for b in bases] + [Path.cwd() / rec]
    parts = rec.parts[1:] if rec.is_absolute() else rec.parts
    for i in range(1 if not rec.is_absolute() else 0, len(parts)):
        tail = Path(*parts[i:])
        candidates += [b / tail for b in bases[:3]]
    for c in candidates:
        if c.is_file():
            return c
    relative = "a path relative to the folder training ran in" if not rec.is_absolute() else "an absolute path"
    raise CheckpointError(
        f"{checkpoint}: its {what} '{rec}' ({relative}) is not found from here — looked below {ckpt_dir.resolve()} "
        f"and its parent folders and below {Path.cwd()}.{(' ' + hint) if hint else ''}"
    )
