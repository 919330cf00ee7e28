"""Loading pretrained weights into a backbone, and the fine-tuning policy (which parameters train, at what lr).

The backbone declares, as class attributes, what the loader and the policy need:

* ``head_names``: module names of the classifier head for *this* data set's classes (new, trained at the full
  learning rate, never taken from a pretrained file unless ``load_head=True``);
* ``block_names``: the other modules, ordered from input to output (every parameter not in the head lies in
  exactly one of them);
* ``pretrained_skip_prefixes``: checkpoint keys the official files carry that the backbone does not have and that
  may be left out (CNN14: ``fc_audioset.``, ``spectrogram_extractor.``, ``logmel_extractor.``);
* ``pretrained_head_aliases``: checkpoint prefix -> head prefix, used only with ``load_head=True`` (CNN14:
  ``fc_audioset.`` -> ``fc_head.``, so the 527-class AudioSet head can be kept).

Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain containers only, never pickled code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

__all__ = [
    "PretrainedLoadError",
    "LoadReport",
    "read_state_dict",
    "load_pretrained",
    "head_and_blocks",
    "finetune_param_groups",
    "set_frozen_batchnorm_eval",
]


class PretrainedLoadError(RuntimeError):
    """A checkpoint file cannot be read, or does not fit the backbone. The message names the file."""


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did.

    Attributes:
        path: the checkpoint file.
        loaded: model state keys copied from the file (parameters and buffers).
        skipped: checkpoint key -> why it was not loaded (an allowed left-out key, the head, or - only with
            ``strict_backbone=False`` - a shape mismatch / key the model lacks).
        kept: model state keys left at their current values (the new head; ``num_batches_tracked`` absent from
            old files; with ``strict_backbone=False`` any key the file lacks).
    """

    path: str
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)

    @property
    def num_loaded(self) -> int:
        return len(self.loaded)

    def __str__(self) -> str:
        return (
            f"{self.path}: loaded {self.num_loaded} tensors, skipped {len(self.skipped)} checkpoint keys, "
            f"kept {len(self.kept)} model keys"
        )


def _shape(t: torch.Tensor) -> str:
    return "(" + ",".join(str(s) for s in t.shape) + ")"


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint: the official PANNs container ``{"model": state_dict, ...}`` or a bare state dict.

    Raises :class:`FileNotFoundError` for a missing file and :class:`PretrainedLoadError` (naming the file) for a
    corrupted file, a file that is not a PyTorch checkpoint, one that holds pickled code (refused by
    ``weights_only=True``), or one whose content is not a ``{name: tensor}`` mapping.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip/pickle errors come as RuntimeError, UnpicklingError, EOFError, ValueError...
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise PretrainedLoadError(
            f"{path}: not a readable PyTorch checkpoint (corrupted, truncated, not a checkpoint, or holding pickled "
            f"code that weights_only loading refuses): {type(exc).__name__}: {first_line}"
        ) from exc
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping):
        raise PretrainedLoadError(
            f"{path}: expected a state dict or a {{'model': state_dict}} container, got {type(obj).__name__}"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise PretrainedLoadError(
            f"{path}: not a state dict: {len(bad)} entries are not name -> tensor, e.g. {bad[:5]}"
        )
    return dict(obj)


def _module_prefixes(names) -> tuple[str, ...]:
    return tuple(f"{n}." for n in names)


def _unfit_message(path: str, backbone: nn.Module, missing: list[str], unexpected: list[str], mismatched: list[str]) -> str:
    """The strict refusal: the file, then the missing keys, the unexpected keys and the shape mismatches."""
    lines = [f"{path}: checkpoint does not fit {type(backbone).__name__}"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {missing}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): {unexpected}")
    if mismatched:
        lines.append(f"  shape mismatches ({len(mismatched)}):")
        lines.extend(f"    {m}" for m in mismatched)
    return "\n".join(lines)


def _map_checkpoint_keys(source, target, head_prefixes, skip_prefixes, aliases, load_head, report: LoadReport
                         ) -> tuple[dict[str, str], list[str]]:
    """Which model key each checkpoint key fills (``{checkpoint key: model key}``, head aliases resolved when
    ``load_head``) and the checkpoint keys the model lacks; the head and the allowed left-out keys are recorded
    in ``report.skipped`` with the reason."""
    mapping: dict[str, str] = {}
    unexpected: list[str] = []
    for key in source:
        if key in target and not key.startswith(head_prefixes):
            mapping[key] = key
            continue
        alias = next((a for a in aliases if key.startswith(a)), None)
        if load_head and (key.startswith(head_prefixes) or alias is not None):
            model_key = key if alias is None else aliases[alias] + key[len(alias):]
            if model_key in target:
                mapping[key] = model_key
                continue
            unexpected.append(key)
            continue
        if key.startswith(head_prefixes) or alias is not None:
            report.skipped[key] = "head (replaced by the new head; load_head=False)"
            continue
        if key.startswith(skip_prefixes):
            report.skipped[key] = "allowed left-out key (front-end replaced by l2i.frontend / dataset head)"
            continue
        unexpected.append(key)
    return mapping, unexpected


def load_pretrained(
    backbone: nn.Module,
    path: str | os.PathLike,
    *,
    strict_backbone: bool = True,
    load_head: bool = False,
) -> LoadReport:
    """Copy pretrained weights from ``path`` into ``backbone`` (in place) and report what was done.

    Every model state key outside the head must be found in the file with the same shape; checkpoint keys the model
    lacks must be among the backbone's ``pretrained_skip_prefixes`` (or the head). Otherwise, with
    ``strict_backbone=True`` (default), nothing is loaded and a :class:`PretrainedLoadError` names the file, the
    missing keys, the unexpected keys and the shape mismatches
    (``conv_block1.conv1.weight: checkpoint (64,1,3,3) vs model (32,1,3,3)``); with ``strict_backbone=False`` the
    matching keys are loaded and the rest reported in ``skipped`` / ``kept``.

    ``num_batches_tracked`` missing from (old) files is tolerated: the model keeps its own counter.

    Args:
        backbone: a backbone declaring ``head_names`` (and optionally ``pretrained_skip_prefixes``,
            ``pretrained_head_aliases``).
        path: checkpoint file (``{"model": state_dict}`` or a bare state dict).
        strict_backbone: raise on any mismatch outside the head (see above).
        load_head: also load the head (from the head's own keys or an alias such as ``fc_audioset.``); shapes
            must then match, e.g. ``num_classes=527`` for the AudioSet head.
    """
    path = os.fspath(path)
    source = read_state_dict(path)
    target = backbone.state_dict()
    head_prefixes = _module_prefixes(getattr(backbone, "head_names", ()))
    skip_prefixes = tuple(getattr(backbone, "pretrained_skip_prefixes", ()))
    aliases: dict[str, str] = dict(getattr(backbone, "pretrained_head_aliases", {}))

    report = LoadReport(path=path)
    mapping, unexpected = _map_checkpoint_keys(source, target, head_prefixes, skip_prefixes, aliases, load_head, report)
    mapped_targets = set(mapping.values())
    missing: list[str] = []
    for key in target:
        if key in mapped_targets:
            continue
        if (key.startswith(head_prefixes) and not load_head) or key.endswith("num_batches_tracked"):
            report.kept.append(key)
        else:
            missing.append(key)

    mismatched = [
        f"{src}: checkpoint {_shape(source[src])} vs model {_shape(target[dst])}"
        for src, dst in mapping.items()
        if source[src].shape != target[dst].shape
    ]

    if strict_backbone and (missing or unexpected or mismatched):
        raise PretrainedLoadError(_unfit_message(path, backbone, missing, unexpected, mismatched))

    for key in unexpected:
        report.skipped[key] = "not in the model"
    for key in missing:
        report.kept.append(key)
    new_state: dict[str, torch.Tensor] = {}
    for src, dst in mapping.items():
        if source[src].shape != target[dst].shape:
            report.skipped[src] = f"shape {_shape(source[src])} vs model {_shape(target[dst])}"
            report.kept.append(dst)
            continue
        new_state[dst] = source[src]
        report.loaded.append(dst)
    with torch.no_grad():
        result = backbone.load_state_dict(new_state, strict=False)
    if result.unexpected_keys:  # cannot happen: every key was checked against the model's state dict
        raise PretrainedLoadError(f"{path}: internal error, unexpected keys {result.unexpected_keys}")
    return report


# -- fine-tuning policy ------------------------------------------------------------------------------------------


def head_and_blocks(backbone: nn.Module) -> tuple[list[str], list[str]]:
    """The backbone's declared ``head_names`` and ordered ``block_names``, checked to cover every parameter once.

    Raises ``ValueError`` when a declaration is missing, names an unknown module, or leaves parameters out.
    """
    head = list(getattr(backbone, "head_names", ()) or ())
    blocks = list(getattr(backbone, "block_names", ()) or ())
    if not head or not blocks:
        raise ValueError(f"{type(backbone).__name__} must declare head_names and block_names for fine-tuning")
    modules = dict(backbone.named_modules())
    unknown = [n for n in head + blocks if n not in modules]
    if unknown:
        raise ValueError(f"{type(backbone).__name__}: declared modules {unknown} do not exist")
    owner: dict[str, str] = {}
    for group in head + blocks:
        for pname, _ in modules[group].named_parameters(prefix=group):
            if pname in owner:
                raise ValueError(f"{type(backbone).__name__}: parameter {pname} is in both {owner[pname]} and {group}")
            owner[pname] = group
    uncovered = [n for n, _ in backbone.named_parameters() if n not in owner]
    if uncovered:
        raise ValueError(f"{type(backbone).__name__}: parameters outside head_names/block_names: {uncovered}")
    return head, blocks


def finetune_param_groups(
    backbone: nn.Module,
    policy: Literal["head", "last_blocks", "all"],
    lr: float,
    pretrained_lr_scale: float = 0.1,
    last_blocks: int = 2,
) -> list[dict]:
    """Optimizer parameter groups for a fine-tuning policy; sets ``requires_grad`` accordingly (in place).

    * ``head``: only the head trains (lr); every block is frozen.
    * ``last_blocks``: the head (lr) and the last ``last_blocks`` entries of ``block_names``
      (``lr * pretrained_lr_scale``); earlier blocks are frozen.
    * ``all``: the head (lr) and every block (``lr * pretrained_lr_scale``).

    Returns ``[{"name": "head", "params": [...], "lr": lr}, {"name": "pretrained", "params": [...], "lr": ...}]``
    (a group without parameters is left out); pass it to any ``torch.optim`` optimizer. Frozen BatchNorm layers
    still update their running statistics in train mode: see :func:`set_frozen_batchnorm_eval`.
    Training from scratch: use ``policy="all", pretrained_lr_scale=1.0``.
    """
    if policy not in ("head", "last_blocks", "all"):
        raise ValueError(f"policy must be head|last_blocks|all, got {policy!r}")
    if lr <= 0 or pretrained_lr_scale < 0:
        raise ValueError(f"need lr > 0 and pretrained_lr_scale >= 0, got lr={lr}, scale={pretrained_lr_scale}")
    head, blocks = head_and_blocks(backbone)
    if policy == "head":
        trainable_blocks: list[str] = []
    elif policy == "all":
        trainable_blocks = blocks
    else:
        if not 1 <= last_blocks <= len(blocks):
            raise ValueError(f"last_blocks must be in 1..{len(blocks)} for {type(backbone).__name__}, got {last_blocks}")
        trainable_blocks = blocks[-last_blocks:]
    modules = dict(backbone.named_modules())
    head_params = [p for n in head for p in modules[n].parameters()]
    block_params = [p for n in trainable_blocks for p in modules[n].parameters()]
    frozen = [p for n in blocks if n not in trainable_blocks for p in modules[n].parameters()]
    for p in frozen:
        p.requires_grad_(False)
    for p in head_params + block_params:
        p.requires_grad_(True)
    groups = [{"name": "head", "params": head_params, "lr": lr}]
    if block_params:
        groups.append({"name": "pretrained", "params": block_params, "lr": lr * pretrained_lr_scale})
    return groups


def set_frozen_batchnorm_eval(backbone: nn.Module) -> int:
    """Put every BatchNorm whose parameters are all frozen into eval mode (running statistics stay as loaded).

    ``model.train()`` turns them back to train mode, so call this after it (e.g. at the start of each training
    epoch). Returns how many BatchNorm layers were set to eval.
    """
    count = 0
    for module in backbone.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                module.eval()
                count += 1
    return count
