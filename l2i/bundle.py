"""What a trained interpreter (post-hoc or by-design) consists of, as one plain dict read from its file: the
explained classifier's architecture, the NMF dictionary artifact, the interpreter's hyper-parameters and its weights
(:func:`read_interpreter`); the self-contained file ``l2i export`` writes (:func:`export_interpreter`); and the bundle
a Lightning checkpoint embeds (:func:`embedded_bundle`). Every file is read with :func:`l2i.checkpoints.safe_load`.
Pure torch; no Lightning.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from l2i.checkpoints import (
    EMBEDDED_KEY,  # noqa: F401  (the key the bundle is embedded under, named with it)
    INTERPRETER_FORMAT,
    INTERPRETER_KINDS,
    INTERPRETER_VERSION,
    STATE_PREFIX,
    CheckpointError,
    require_kind,
    resolve_artifact,
    safe_load,
)
from l2i.dictionary import DictionaryArtifact, frontend_params

__all__ = ["read_interpreter", "export_interpreter", "embedded_bundle", "classifier_architecture", "CLASSIFIER_ARCH_KEYS",
           "EMBEDDED_KEY"]


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
