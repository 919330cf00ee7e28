"""One loader for every trained artifact: :func:`load_artifact` reads the file safely, tells what it stores
(:func:`l2i.checkpoints.checkpoint_kind`: the stored class, else the weights' names) and builds it.

=================  =====================================================================
stored             returned (in eval mode)
=================  =====================================================================
ClassifierModule   :class:`~lightning_modules.classifier.ClassifierModule` (frozen)
PostHoc…Module     :class:`~lightning_modules.posthoc.PostHocInterpreterModule`
ByDesignModule     :class:`~lightning_modules.bydesign.ByDesignModule`
LMACModule         :class:`~lightning_modules.lmac.LMACModule`
l2i export file    the post-hoc / by-design module it holds
l2i nmf artifact   :class:`~l2i.dictionary.DictionaryArtifact`
=================  =====================================================================

The pure-torch front door for users without Lightning is :func:`l2i.load_interpreter`.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from l2i.checkpoints import CheckpointError, checkpoint_kind, describe_kind, require_kind, safe_load

__all__ = ["load_artifact", "ARTIFACT_KINDS"]


def _classifier(path, map_location, **kwargs):
    from lightning_modules.classifier import ClassifierModule

    return ClassifierModule.load_frozen(str(path), map_location=map_location)


def _posthoc(path, map_location, **kwargs):
    from lightning_modules.posthoc import PostHocInterpreterModule

    return PostHocInterpreterModule.load_from_checkpoint(path, map_location=map_location, **kwargs)


def _bydesign(path, map_location, **kwargs):
    from lightning_modules.bydesign import ByDesignModule

    return ByDesignModule.load_from_checkpoint(path, map_location=map_location, **kwargs)


def _lmac(path, map_location, **kwargs):
    from lightning_modules.lmac import LMACModule

    return LMACModule.load_from_checkpoint(path, map_location=map_location, weights_only=True, **kwargs)


def _dictionary(path, map_location, **kwargs):
    from l2i.dictionary import DictionaryArtifact

    return DictionaryArtifact.load(path)


#: what each stored kind is built with
ARTIFACT_KINDS = {"classifier": _classifier, "posthoc": _posthoc, "bydesign": _bydesign, "lmac": _lmac,
                  "dictionary": _dictionary}


def load_artifact(path: str | os.PathLike, expect: str | tuple[str, ...] | None = None, *,
                  map_location: str | torch.device = "cpu", verb: str = "loading", **kwargs) -> Any:
    """The trained artifact in ``path``, built as the class it stores (see the module docstring).

    Args:
        path: a Lightning checkpoint of one of the project's modules, a self-contained interpreter file
            (``l2i export``) or a dictionary artifact (``l2i nmf``).
        expect: the kind(s) the caller can use (``classifier``, ``posthoc``, ``bydesign``, ``lmac``,
            ``dictionary``); another kind is refused naming what the file is and what ``verb`` needs.
        map_location: where the weights go.
        kwargs: passed to the interpreters' loaders (``classifier_checkpoint`` / ``dictionary_path`` of an old
            checkpoint whose recorded artifacts moved, or hyper-parameters to replace, e.g. ``threshold``).
    Raises:
        CheckpointError: a missing, unreadable or unsafe file (named), a kind that cannot be told, or
            :class:`~l2i.checkpoints.CheckpointKindError` for a kind not in ``expect``.
    """
    state = safe_load(path, what="checkpoint")
    if expect:
        kind = require_kind(path, state, (expect,) if isinstance(expect, str) else tuple(expect), verb)
    else:
        kind = checkpoint_kind(state)
    if kind not in ARTIFACT_KINDS:
        class_path = (state.get("hyper_parameters") or {}).get("_class_path") if isinstance(state, dict) else None
        raise CheckpointError(f"{path}: {describe_kind(kind, class_path)}; known: {', '.join(ARTIFACT_KINDS)}")
    del state
    model = ARTIFACT_KINDS[kind](path, map_location, **kwargs)
    return model.eval() if isinstance(model, torch.nn.Module) else model
