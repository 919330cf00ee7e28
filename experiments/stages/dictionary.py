"""The ``dictionary`` pipeline stage: learn the NMF dictionary W as ``l2i nmf`` does, with the classifier's
front-end (taken from the classifier stage's checkpoint) so dictionary and classifier always match."""

from __future__ import annotations

from experiments.nmf import _run, build_parser, frontend_from_checkpoint

__all__ = ["dictionary_stage"]


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def dictionary_stage(ctx, settings: dict) -> dict:
    """Pipeline stage ``dictionary``: learn W on the training split with the classifier's front-end.

    settings: ``config`` (optional ``l2i nmf`` YAML to start from) plus any of its keys (``data``,
    ``frontend``, ``nmf``, ``split``, ``num_clips``, ``device``, …) as overrides. The front-end comes from
    ``ctx.artifacts["classifier"]`` when a classifier was trained, so dictionary and classifier match.
    Writes ``<out>/dictionary/dictionary.pt`` and sets ``ctx.artifacts["dictionary"]``.
    """
    from experiments.cli import read_config

    settings = dict(settings or {})
    base: dict = {}
    if settings.get("config"):
        base = read_config(settings.pop("config"))
    merged = _deep_merge(base, settings)
    source = "settings"
    if ctx.artifacts.get("classifier"):
        fe = frontend_from_checkpoint(ctx.artifacts["classifier"])
        merged["frontend"] = fe
        source = str(ctx.artifacts["classifier"])
    merged.setdefault("nmf", {}).setdefault("seed", ctx.seed)
    merged["out"] = str(ctx.stage_dir("dictionary") / "dictionary.pt")
    merged.setdefault("progress", False)
    parser = build_parser()
    cfg = parser.parse_object(merged)
    art, figures = _run(cfg, parser, wandb_run=True)  # the stage's own W&B run (job_type "dictionary"), unless wandb: false
    ctx.artifacts["dictionary"] = figures["dictionary"]
    out = {k: v for k, v in figures.items() if isinstance(v, (int, float, str)) and k != "images_logged"}
    out["frontend_from"] = source
    descriptions = {
        "objective": "NMF objective 0.5||V-WH||^2 + sparsity*sum(H) on the training frames (W fixed, H re-estimated)",
        "objective_per_frame": "objective divided by the number of training frames",
        "relative_error": "||V - WH|| / ||V|| on the training frames (V = log1p|X|)",
        "activation_zeros": "fraction of exactly-zero activations (sparsity of H)",
        "class_purity": "activation mass of each component in its top class, mass-weighted mean (1/C = none)",
        "n_components": "K, columns of the dictionary",
        "n_freq": "F, frequency bins (n_fft/2+1)",
        "noise_components": "columns learnt on noise-only material and kept fixed (first in W)",
        "frames": "training frames seen per epoch",
        "clips": "training clips seen per epoch",
        "epochs": "passes of the online NMF",
        "fit_seconds": "wall time of the streaming fit (s)",
        "eval_frames": "frames of the exact objective evaluation",
        "dictionary": "dictionary artifact (W + front-end + settings)",
        "frontend_from": "where the front-end parameters came from",
    }
    for k in out:
        if k in descriptions:
            ctx.descriptions[f"dictionary.{k}"] = descriptions[k]
    return out
