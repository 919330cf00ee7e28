"""Presets that switch every model and interpretation detail at once: ``project`` (the defaults) or ``authors``.

The ``authors`` preset is the authors' public code as they ran it (docs/method.md, "Authors' details"); the
``project`` preset keeps this project's defaults where they differ. A preset only fills the options a
caller leaves unset (``None``): an explicit setting always wins.

================  ====================================================  ==============================================
detail            ``project``                                           ``authors``
================  ====================================================  ==============================================
loss schedule     :data:`~l2i.interpreter.posthoc.AUTHORS_ESC50_SCHEDULE` :data:`AUTHORS_PROTOCOL_SCHEDULE`: λ_rec 5.0 and
                  (epoch 0 reconstruction only, then the authors' λ's)  λ_spa 0.4 every epoch, λ_fid 0.5 then 1.0 from
                                                                        their epoch 20 (our epoch 19)
Ψ                 per-layer 1x1 projections of the frequency-folded     :class:`~l2i.interpreter.psi.AuthorsPsi`: 3x3
                  maps, two Conv1d (k 3) at the maps' time resolution,  convs, frequency collapsed by (4, 1) convs,
                  then upsampled to T                                    upsampled to T *before* two Conv1d (k 5, ReLU)
tapped layers     the backbone's last three conv blocks                 the three before the last one
Θ dropout         none                                                  0.4 on the attention branches' input (the
                                                                        pooled vector itself is never dropped)
interpretation    every component with r > τ                            at most the top 5 by r among those with r > τ
share floor ε     1e-8                                                  1e-6 (``ratio = w_k h_k / (W H + 1e-6)``)
================  ====================================================  ==============================================

Shared by both (already the authors'): gated attention with a biased score layer, a bias-free class layer, the
decoder ``V̂ = ReLU(normalise_columns(ReLU(W)) · H)`` (with ``W, H ≥ 0`` the outer ReLU is the identity), the
unweighted sum of the chosen parts applied to ``log1p|X|`` then ``expm1`` with the input phase.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Protocol", "PROTOCOLS", "AUTHORS_PROTOCOL_SCHEDULE", "get_protocol", "interpreter_options"]

#: the authors' ESC-50 and SONYC-UST schedule in our 0-based epochs: ``train(..., 5.0, 0.5*int(epoch > 0) +
#: 0.5*int(epoch > 19), 0.4*int(epoch > 0))`` over their epochs 1..N, i.e. every weight on from the first epoch
#: and λ_fid 1.0 from their epoch 20 = our epoch 19.
AUTHORS_PROTOCOL_SCHEDULE: dict[str, dict[int, float]] = {
    "reconstruction": {0: 5.0},
    "fidelity": {0: 0.5, 19: 1.0},
    "sparsity": {0: 0.4},
}


@dataclass(frozen=True)
class Protocol:
    """The model / interpretation details a preset decides (see the module docstring).

    Attributes:
        name: ``project`` | ``authors``.
        loss_weights: the loss schedule (``None``: the project's default schedule).
        psi: ``project`` | ``authors`` (:class:`~l2i.interpreter.psi.Psi` or :class:`~l2i.interpreter.psi.AuthorsPsi`).
        skip_last_layers: default taps are the three conv blocks before the last ``skip_last_layers`` ones.
        attention_dropout: dropout on the input of Θ's attention branches (training only).
        top_k: at most this many components per interpretation (``None``: every one above τ).
        share_eps: floor of ``W H`` in each component's share.
    """

    name: str
    loss_weights: dict | None = None
    psi: str = "project"
    skip_last_layers: int = 0
    attention_dropout: float = 0.0
    top_k: int | None = None
    share_eps: float = 1e-8


PROTOCOLS: dict[str, Protocol] = {
    "project": Protocol("project"),
    "authors": Protocol(
        "authors",
        loss_weights=AUTHORS_PROTOCOL_SCHEDULE,
        psi="authors",
        skip_last_layers=1,
        attention_dropout=0.4,
        top_k=5,
        share_eps=1e-6,
    ),
}


def get_protocol(name: str | Protocol | None) -> Protocol:
    """``"project"`` / ``"authors"`` (or ``None`` = ``project``) -> :class:`Protocol`; a clear error otherwise."""
    if isinstance(name, Protocol):
        return name
    key = "project" if name is None else str(name)
    if key not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {name!r}")
    return PROTOCOLS[key]


def interpreter_options(protocol: str | Protocol | None = None, *, psi_variant: str | None = None,
                        skip_last_layers: int | None = None, attention_dropout: float | None = None,
                        top_k: int | None = None, share_eps: float | None = None) -> dict:
    """The interpreter's effective options: each one given (not ``None``) as given, the others from the
    ``protocol`` preset; ``top_k`` 0 means no cap (``None``). The one place a preset becomes options: the
    post-hoc Lightning module and :func:`l2i.trained.build_interpreter` (a checkpoint loaded without
    Lightning) both use it, so a model is rebuilt with the options it was trained with."""
    preset = get_protocol(protocol)
    return {
        "psi_variant": preset.psi if psi_variant is None else psi_variant,
        "skip_last_layers": preset.skip_last_layers if skip_last_layers is None else int(skip_last_layers),
        "attention_dropout": preset.attention_dropout if attention_dropout is None else float(attention_dropout),
        "top_k": preset.top_k if top_k is None else (None if int(top_k) == 0 else int(top_k)),
        "share_eps": preset.share_eps if share_eps is None else float(share_eps),
    }
