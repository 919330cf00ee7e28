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

__all__ = ["CheckpointError", "UnsafeCheckpointError", "CheckpointKindError", "safe_load", "checkpoint_kind", "require_kind",
           "resolve_artifact", "read_interpreter", "export_interpreter", "embedded_bundle"]


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
#: :func:`read_interpreter`): the classifier's architecture and the dictionary, so no other file is needed
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


def _plain(value: Any) -> Any:
    """Plain containers, scalars, strings and tensors only (``weights_only`` loads them)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, os.PathLike):
        return str(value)
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    return str(value)


#: the classifier hyper-parameters that decide its architecture (what an interpreter needs to rebuild it)
CLASSIFIER_ARCH_KEYS = ("backbone", "backbone_kwargs", "frontend", "task", "num_classes", "class_names")


def classifier_architecture(hparams: dict) -> dict:
    """The architecture part of a ``ClassifierModule``'s hyper-parameters (plain values)."""
    return _plain({k: hparams.get(k) for k in CLASSIFIER_ARCH_KEYS})


def embedded_bundle(kind: str, classifier_hparams: dict, dictionary: dict) -> dict:
    """What an interpreter's Lightning checkpoint carries under :data:`EMBEDDED_KEY` (written by the modules'
    ``on_save_checkpoint``): ``kind``, the classifier's architecture and the dictionary artifact (as
    :meth:`~l2i.dictionary.DictionaryArtifact.to_dict`). With the checkpoint's own weights and
    hyper-parameters that is everything the interpreter consists of."""
    return {"kind": kind, "classifier": classifier_architecture(classifier_hparams), "dictionary": _plain(dictionary)}


_HINT_CLASSIFIER = ("Give it with --classifier PATH (l2i interpret / evaluate / export) or classifier=PATH "
                    "(l2i.load_interpreter).")
_HINT_DICTIONARY = ("Give it with --dictionary PATH (l2i interpret / evaluate / export) or dictionary=PATH "
                    "(l2i.load_interpreter).")


def _read_bundle_file(path: str | os.PathLike, state: dict) -> dict:
    """A self-contained interpreter file's bundle, its version and keys checked."""
    version = int(state.get("version", 0))
    if version > INTERPRETER_VERSION:
        raise CheckpointError(f"{path}: interpreter file version {version} is newer than this code reads ({INTERPRETER_VERSION})")
    missing = [k for k in ("classifier", "dictionary", "interpreter", "state_dict") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: self-contained interpreter file is missing {missing}")
    return {**state, "source": str(path)}


def _architecture(path, kind: str, hp: dict, embedded: dict | None, classifier, map_location) -> dict:
    """The explained classifier's architecture: embedded in the checkpoint, a by-design model's own hyper-parameters,
    or read from the classifier checkpoint it names (found by :func:`resolve_artifact`, or given)."""
    if embedded is not None and classifier is None:
        return dict(embedded["classifier"])
    if kind == "bydesign" and not hp.get("classifier_checkpoint") and classifier is None:
        return classifier_architecture(hp)
    recorded = classifier or hp.get("classifier_checkpoint")
    if not recorded:
        raise CheckpointError(f"{path}: names no classifier checkpoint (hyper-parameter classifier_checkpoint). {_HINT_CLASSIFIER}")
    clf_path = Path(classifier) if classifier else resolve_artifact(recorded, path, "classifier checkpoint", _HINT_CLASSIFIER)
    clf_state = safe_load(clf_path, map_location=map_location, what="classifier checkpoint")
    require_kind(clf_path, clf_state, ("classifier",), "an interpreter's classifier")
    arch = classifier_architecture(clf_state["hyper_parameters"])
    if kind == "bydesign":
        arch.update({k: hp[k] for k in ("frontend", "task", "num_classes", "class_names") if hp.get(k) is not None})
    return arch


def _dictionary_state(path, hp: dict, embedded: dict | None, dictionary, weights: dict, arch: dict) -> dict:
    """The dictionary artifact's dict: embedded in the checkpoint, or read from the file it names (found by
    :func:`resolve_artifact`, or given); when that file is lost, the dictionary stored in the weights (with a
    warning) unless its noise labels are needed."""
    import warnings

    from l2i.dictionary import DictionaryArtifact, frontend_params

    if embedded is not None and dictionary is None:
        return embedded["dictionary"]
    recorded = dictionary or hp.get("dictionary_path")
    try:
        if not recorded:
            raise CheckpointError(f"{path}: names no dictionary (hyper-parameter dictionary_path). {_HINT_DICTIONARY}")
        dict_path = Path(dictionary) if dictionary else resolve_artifact(recorded, path, "dictionary", _HINT_DICTIONARY)
        return DictionaryArtifact.load(dict_path).to_dict()
    except (CheckpointError, FileNotFoundError) as exc:
        if hp.get("noise_evidence", True) is False:
            raise CheckpointError(f"{exc} (its noise labels are needed: noise_evidence is false)") from None
        W = weights.get("dictionary_buffer")
        if W is None and "dictionary_param" in weights:
            W = torch.nn.functional.normalize(weights["dictionary_param"].float().relu(), dim=0, eps=1e-12)
        if W is None:
            raise
        warnings.warn(f"{exc} Using the dictionary stored in the interpreter's weights.", stacklevel=3)
        return {"format": "l2i.dictionary", "version": 1, "dictionary": W.float().cpu(),
                "frontend": frontend_params(arch["frontend"]), "meta": {"source": "interpreter weights"}}


def read_interpreter(path: str | os.PathLike, *, classifier: str | os.PathLike | None = None,
                     dictionary: str | os.PathLike | None = None, verb: str = "loading an interpreter",
                     map_location: str | torch.device = "cpu") -> dict:
    """Everything a trained interpreter (post-hoc or by-design) consists of, from its file, as one plain dict::

        {"format": "l2i.interpreter", "version": 1, "kind": "posthoc" | "bydesign",
         "classifier": {backbone, backbone_kwargs, frontend, task, num_classes, class_names},  # architecture
         "dictionary": DictionaryArtifact.to_dict(),           # W, its front-end, labels (noise block) …
         "interpreter": {hidden, layers, pooling, threshold, …},  # the module's hyper-parameters
         "state_dict": {...},                                    # the pure-torch model's weights (classifier's included)
         "source": "<path>"}

    ``path`` is a self-contained file (``l2i export``), or a Lightning checkpoint of a
    ``PostHocInterpreterModule`` / ``ByDesignModule``. Checkpoints written by this version carry the
    classifier's architecture and the dictionary themselves; older ones name the classifier checkpoint and
    the dictionary file, which are found with :func:`resolve_artifact` (or given: ``classifier``,
    ``dictionary``). When only the dictionary file is lost, the dictionary stored in the weights is used
    (with a warning) unless its noise labels are needed.

    Raises:
        CheckpointKindError: another kind of checkpoint (a classifier's …), named with what is needed.
        CheckpointError: missing / unreadable / unsafe file, or an artifact not found (path named).
    """
    state = safe_load(path, map_location=map_location, what="interpreter checkpoint")
    kind = require_kind(path, state, INTERPRETER_KINDS, verb)
    if state.get("format") == INTERPRETER_FORMAT:
        return _read_bundle_file(path, state)
    if "state_dict" not in state:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict)")
    hp = {k: v for k, v in (state.get("hyper_parameters") or {}).items() if not str(k).startswith("_")}
    prefix = STATE_PREFIX[kind]
    weights = {k[len(prefix):]: v for k, v in state["state_dict"].items() if k.startswith(prefix)}
    embedded = state.get(EMBEDDED_KEY) if isinstance(state.get(EMBEDDED_KEY), dict) else None
    arch = _architecture(path, kind, hp, embedded, classifier, map_location)
    dict_state = _dictionary_state(path, hp, embedded, dictionary, weights, arch)
    return {"format": INTERPRETER_FORMAT, "version": INTERPRETER_VERSION, "kind": kind, "classifier": arch,
            "dictionary": dict_state, "interpreter": _plain(hp), "state_dict": weights, "source": str(path)}


def export_interpreter(path: str | os.PathLike, out: str | os.PathLike, **kwargs) -> Path:
    """Write the self-contained interpreter file of ``path`` (see :func:`read_interpreter`) to ``out``: one file,
    loadable with ``torch.load(weights_only=True)``, that ``l2i interpret``, ``l2i evaluate`` and
    :func:`l2i.load_interpreter` read alone. Returns ``out``."""
    bundle = read_interpreter(path, verb="l2i export", **kwargs)
    bundle = {**bundle, "source": str(Path(path).resolve())}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(bundle, tmp)
    tmp.replace(out)
    return out
