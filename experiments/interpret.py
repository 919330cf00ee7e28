"""Post-hoc interpretation: the ``posthoc`` pipeline stage and the ``l2i interpret`` command.

``l2i interpret --ckpt interpreter.ckpt [--config posthoc.yaml] --input a.wav [b.wav …] --out DIR`` writes, per
input and explained class, ``<stem>__<class>.wav`` (the interpretation), ``<stem>__<class>__residual.wav``,
``<stem>__<class>.json`` (relevance of every component, the chosen ones, probabilities) and
``<stem>__<class>.png`` (input spectrogram, interpretation spectrogram, activations, relevance bars).

The ``posthoc`` stage (``l2i demo``) trains the interpreter of ``ctx.artifacts["classifier"]`` with the dictionary
``ctx.artifacts["dictionary"]`` and scores it on the synthetic test split with the project's one evaluator,
:func:`l2i.evaluation.evaluate_interpreter`: fidelity, faithfulness (probability drop when the chosen vs random
components are removed), L-MAC's mask metrics and the ground-truth report (per class present: interpretation vs
mixture, another class's interpretation, random / all components, ideal ratio mask; single- and multi-source
clips apart). Its figures land in the report as ``posthoc.<family>.<key>``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml

__all__ = [
    "learn_dictionary",
    "score_posthoc",
    "SCORE_DESCRIPTIONS",
    "write_interpretations",
    "load_interpreter",
    "posthoc_stage",
    "main",
]


# -- dictionary (fallback when no dictionary stage ran) ---------------------------------------------------


def learn_dictionary(frontend_config, dataset, *, n_clips: int = 400, n_components: int = 64, sparsity: float = 0.0,
                     max_iter: int = 100, seed: int = 0, batch_size: int = 64, per_class: bool = False,
                     noise_components: int = 0):
    """A :class:`~l2i.dictionary.DictionaryArtifact` learnt with :mod:`l2i.nmf` on ``V = log1p|X|`` of the first
    ``n_clips`` items of ``dataset``. Used by the ``posthoc`` stage when no dictionary artifact is given, and by
    the tests.

    * ``per_class=False``: one NMF of ``n_components`` on the mixtures' frames pooled.
    * ``per_class=True`` (docs/method.md's per-class dictionaries, a *choice*; needs items with ``sources`` and
      ``source_labels``, as the synthetic set has): ``n_components // C`` columns per class learnt on the
      isolated events of that class (non-silent frames), concatenated, plus ``noise_components`` columns learnt
      on the items' ``background``; ``meta["labels"]`` names each column's block.
    """
    from l2i.dictionary import NOISE_LABEL, DictionaryArtifact
    from l2i.frontend import AudioFrontEnd
    from l2i.nmf import NMF, concat_dictionaries, fit_per_class

    frontend = AudioFrontEnd(frontend_config)
    n = min(int(n_clips), len(dataset))
    if n < 1:
        raise ValueError("learn_dictionary: the dataset is empty")
    meta = {"n_components": n_components, "beta": 2, "sparsity": sparsity, "clips": n,
            "split": getattr(dataset, "split", None), "per_class": per_class}
    spec = lambda w: frontend.nmf_spectrogram(frontend.prepare(w))  # noqa: E731
    with torch.no_grad():
        if not per_class:
            V = torch.cat([spec(torch.stack([dataset[i]["waveform"] for i in range(s, min(n, s + batch_size))]))
                           for s in range(0, n, batch_size)])  # (n, F, T)
            result = NMF(n_components, sparsity=sparsity, max_iter=max_iter, seed=seed).fit(V)
            meta["objective"] = float(result.objective)
            return DictionaryArtifact(W=result.dictionary, frontend=frontend.config.spectral_params(), meta=meta)
        per: dict[int, list[torch.Tensor]] = {}
        noise: list[torch.Tensor] = []
        for i in range(n):
            item = dataset[i]
            if "sources" not in item or "source_labels" not in item:
                raise ValueError("learn_dictionary(per_class=True) needs items with 'sources' and 'source_labels'")
            labels = item["source_labels"].tolist()
            keep = [j for j, lab in enumerate(labels) if lab >= 0]
            if keep:
                Vs = spec(item["sources"][keep])  # (S, F, T)
                for j, V in zip(keep, Vs):
                    frames = V[:, V.sum(0) > 1e-3 * max(float(V.sum(0).max()), 1e-12)]
                    per.setdefault(labels[j], []).append(frames)
            if noise_components and "background" in item:
                noise.append(spec(item["background"][None])[0])
        classes = sorted(per)
        k = max(1, (n_components - noise_components) // max(len(classes), 1))
        names = list(getattr(dataset, "class_names", None) or []) or [str(c) for c in range(max(classes) + 1)]
        block = fit_per_class({names[c] if c < len(names) else str(c): torch.cat(per[c], dim=1) for c in classes}, k,
                              sparsity=sparsity, max_iter=max_iter, seed=seed)
        W, labels = block.dictionary, list(block.labels)
        if noise_components:
            Wn = NMF(noise_components, sparsity=sparsity, max_iter=max_iter, seed=seed + 1000).fit(torch.cat(noise, dim=1)).dictionary
            joined = concat_dictionaries({"noise": Wn, "events": W})
            W, labels = joined.dictionary, [NOISE_LABEL] * noise_components + labels
        meta.update(n_components=int(W.shape[1]), labels=labels)
        return DictionaryArtifact(W=W, frontend=frontend.config.spectral_params(), meta=meta)


# -- files: WAV, JSON, PNG --------------------------------------------------------------------------------


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


def _plot(path: Path, title: str, magnitude, mask, activations, relevance, chosen, sample_rate: int, hop: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mag = magnitude.cpu().float()
    db_in = 20 * torch.log10(mag.clamp_min(1e-5))
    db_out = 20 * torch.log10((mask.cpu().float() * mag).clamp_min(1e-5))
    vmax = float(db_in.max())
    extent = [0, mag.shape[-1] * hop / sample_rate, 0, sample_rate / 2000]
    fig, axes = plt.subplots(4, 1, figsize=(9, 11), constrained_layout=True)
    for ax, db, name in ((axes[0], db_in, "input"), (axes[1], db_out, "interpretation")):
        im = ax.imshow(db.numpy(), origin="lower", aspect="auto", extent=extent, vmin=vmax - 80, vmax=vmax, cmap="magma")
        ax.set_title(f"{name} spectrogram (dB)")
        ax.set_ylabel("kHz")
        fig.colorbar(im, ax=ax)
    H = activations.cpu().float()
    im = axes[2].imshow(H.numpy(), origin="lower", aspect="auto", extent=[extent[0], extent[1], -0.5, H.shape[0] - 0.5],
                        cmap="viridis")
    axes[2].set_title("component activations H")
    axes[2].set_ylabel("component")
    axes[2].set_xlabel("s")
    fig.colorbar(im, ax=axes[2])
    r = relevance.cpu().float().numpy()
    colors = ["tab:red" if c else "tab:gray" for c in chosen.cpu().tolist()]
    axes[3].bar(range(len(r)), r, color=colors)
    axes[3].set_title("relevance (red: chosen)")
    axes[3].set_xlabel("component")
    fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)


@torch.no_grad()
def write_interpretations(model, waveform: torch.Tensor, names: Sequence[str], out_dir: str | Path, *,
                          target=None, threshold: float | None = None, plots: bool = True,
                          top_k: int | None = None) -> list[dict]:
    """Interpret ``waveform (B, samples)`` and write per clip and explained class a WAV, a residual WAV, a JSON
    and (``plots``) a PNG into ``out_dir``. Returns one record per written interpretation. ``top_k``: at most
    that many components per interpretation (default: the model's setting; 0 = no cap)."""
    from l2i.audio import save_audio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    net = model.interpreter
    wav = waveform.to(device)
    it = model.interpret(wav, target=target, threshold=threshold, **({} if top_k is None else {"top_k": top_k}))
    feats = net.frontend(wav)
    probs = it.classifier_logits.softmax(-1) if net.task == "multiclass" else it.classifier_logits.sigmoid()
    iprobs = it.logits.softmax(-1) if net.task == "multiclass" else it.logits.sigmoid()
    class_names = list(getattr(model, "class_names", None) or [str(c) for c in range(it.logits.shape[-1])])
    sr = int(it.sample_rate or net.frontend.config.sample_rate)
    records = []
    for b, name in enumerate(names):
        for j, c in enumerate(it.classes[b].tolist()):
            if c < 0:
                continue
            cname = class_names[c]
            stem = f"{_safe(name)}__{_safe(cname)}"
            save_audio(out / f"{stem}.wav", it.audio[b, j], sr)
            save_audio(out / f"{stem}__residual.wav", it.residual[b, j], sr)
            rel = it.relevance[b, c]
            chosen = it.components[b, c]
            record = {
                "input": str(name),
                "class": cname,
                "class_index": c,
                "classifier_probability": float(probs[b, c]),
                "interpreter_probability": float(iprobs[b, c]),
                "threshold": it.threshold,
                "chosen_components": torch.nonzero(chosen).flatten().tolist(),
                "relevance": [round(float(v), 6) for v in rel],
                "interpretation_wav": f"{stem}.wav",
                "residual_wav": f"{stem}__residual.wav",
                "sample_rate": sr,
            }
            (out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
            if plots:
                _plot(out / f"{stem}.png", f"{name}: {cname} (p={record['classifier_probability']:.2f}, "
                      f"{len(record['chosen_components'])} components)", feats.magnitude[b], it.mask[b, j],
                      it.activations[b], rel, chosen, sr, net.frontend.config.hop_length)
                record["png"] = f"{stem}.png"
            records.append(record)
    return records


# -- loading ----------------------------------------------------------------------------------------------


def load_interpreter(ckpt: str | Path, config: str | Path | None = None, overrides: dict | None = None,
                     map_location: str = "cpu"):
    """A trained :class:`~lightning_modules.posthoc.PostHocInterpreterModule` from its checkpoint.

    The checkpoint's hyper-parameters rebuild the model (classifier checkpoint, dictionary path, Ψ/Θ sizes);
    ``config`` (a posthoc YAML: its ``model.init_args``) replaces them, except the two artifact paths, taken from
    the config only when the checkpoint's file no longer exists (moved artifacts); ``overrides`` replace anything
    (e.g. ``threshold``). Then the weights are loaded.
    """
    from lightning_modules.posthoc import PostHocInterpreterModule

    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise FileNotFoundError(f"interpreter checkpoint not found: {ckpt}")
    state = torch.load(ckpt, map_location=map_location, weights_only=True)
    if "state_dict" not in state:
        raise ValueError(f"{ckpt}: not a Lightning checkpoint (no state_dict)")
    hparams = dict(state.get("hyper_parameters") or {})
    if config is not None:
        from experiments.cli import resolve_config

        cfg = yaml.safe_load(resolve_config(config).read_text()) or {}
        init = ((cfg.get("model") or {}).get("init_args")) or {}
        for key, value in init.items():
            if value is None:
                continue
            if key in ("classifier_checkpoint", "dictionary_path") and hparams.get(key) and Path(hparams[key]).is_file():
                continue  # the artifact the interpreter was trained with is still there: keep it
            hparams[key] = value
    hparams.update(overrides or {})
    for key in ("classifier_checkpoint", "dictionary_path"):
        if not hparams.get(key):
            raise ValueError(f"{ckpt}: hyper-parameter {key!r} is missing; give it in --config")
    import inspect

    accepted = set(inspect.signature(PostHocInterpreterModule.__init__).parameters) - {"self"}
    model = PostHocInterpreterModule(**{k: v for k, v in hparams.items() if k in accepted})  # drops LightningCLI's _class_path …
    missing, unexpected = model.load_state_dict(state["state_dict"], strict=False)
    missing = [k for k in missing if not k.startswith(("train_fidelity", "val_fidelity", "test_fidelity"))]
    if missing or unexpected:
        raise ValueError(f"{ckpt}: weights do not fit the model: missing {missing[:8]}, unexpected {unexpected[:8]}")
    return model.eval()


# -- scoring ----------------------------------------------------------------------------------------------

#: what the non-family keys of :func:`score_posthoc` mean
SCORE_DESCRIPTIONS = {
    "threshold": "relevance threshold τ of the interpretations",
    "components_mean": "mean number of chosen components per interpretation",
    "clips": "test clips scored",
    "random_baseline": "1 when the random-component baselines were computed",
}


@torch.no_grad()
def score_posthoc(model, classifier_checkpoint: str, batches, *, threshold: float | None = None, mask_mode: str = "log1p",
                  seed: int = 0, max_batches: int | None = None) -> dict:
    """The post-hoc interpreter ``model`` scored by :func:`l2i.evaluation.evaluate_interpreter` (no noise
    experiment), explaining the classifier of ``classifier_checkpoint``; ``mask_mode`` is passed to every
    ``interpret``. Returns the suite's flat ``family.key`` figures (but ``seconds``) plus ``threshold``."""
    from l2i.evaluation import evaluate_interpreter
    from lightning_modules.classifier import ClassifierModule

    device = next(model.parameters()).device
    classifier = ClassifierModule.load_frozen(classifier_checkpoint, map_location=device)
    tau = float(model.hparams.threshold if threshold is None else threshold)
    cls_thr = float(model.hparams.class_threshold)
    scores = evaluate_interpreter(model, classifier, batches, threshold=tau, thresholds=cls_thr, classifier_thresholds=cls_thr,
                                  noise_snr_db=None, seed=seed, max_batches=max_batches, device=device,
                                  interpret_kwargs={"mask_mode": mask_mode})
    scores.pop("seconds", None)  # the stage reports its own eval_seconds
    scores["threshold"] = tau
    return scores


# -- the pipeline stage ----------------------------------------------------------------------------------


def posthoc_stage(ctx, settings: dict) -> dict:
    """Train the post-hoc interpreter of the demo classifier and score it on the synthetic test split.

    settings:
        config: posthoc LightningCLI config (default ``experiments/synthetic/posthoc.yaml``).
        overrides: extra CLI arguments (list).
        threshold: relevance threshold τ for the evaluation (default: the model's).
        mask_mode: ``log1p`` (default) or ``share``.
        max_batches: test batches scored (default all).
        examples: number of test clips whose interpretations are written (WAV/JSON/PNG), default 4.
        dictionary: when ``ctx.artifacts`` has no ``dictionary``: settings of :func:`learn_dictionary`
            (``n_components``, ``sparsity``, ``n_clips``, ``max_iter``), learnt on the ``nmf`` split.
    """
    from experiments.cli import lightning_cli

    if "classifier" not in ctx.artifacts:
        raise ValueError("posthoc stage: no classifier artifact; run the 'classifier' stage first")
    out = ctx.stage_dir("posthoc")
    dictionary_path = ctx.artifacts.get("dictionary")
    args = ["--config", settings.get("config", "experiments/synthetic/posthoc.yaml")]
    args += ["--seed_everything", str(ctx.seed), "--trainer.default_root_dir", str(out)]
    args += ["--trainer.logger.init_args.save_dir", str(ctx.out_dir), "--trainer.logger.init_args.name", "posthoc"]
    args += ["--model.init_args.classifier_checkpoint", str(ctx.artifacts["classifier"])]
    figures: dict[str, Any] = {}
    if not dictionary_path:
        from lightning_modules.classifier import ClassifierModule
        from datamodules.synthetic import SyntheticDataModule

        dset = dict(settings.get("dictionary") or {})
        start = time.perf_counter()
        clf = ClassifierModule.load_frozen(ctx.artifacts["classifier"])
        dm_nmf = SyntheticDataModule(seed=ctx.seed, num_classes=clf.num_classes, mode=clf.task,
                                     sample_rate=clf.frontend.config.sample_rate)
        art = learn_dictionary(clf.frontend.config, dm_nmf.dataset("nmf", size=int(dset.get("n_clips", 400))),
                               n_components=int(dset.get("n_components", 64)), sparsity=float(dset.get("sparsity", 0.0)),
                               max_iter=int(dset.get("max_iter", 100)), seed=ctx.seed, n_clips=int(dset.get("n_clips", 400)),
                               per_class=bool(dset.get("per_class", False)), noise_components=int(dset.get("noise_components", 0)))
        dictionary_path = str(art.save(out / "dictionary.pt"))
        ctx.artifacts["dictionary"] = dictionary_path
        figures["dictionary_seconds"] = round(time.perf_counter() - start, 2)
        ctx.descriptions["posthoc.dictionary_seconds"] = "time to learn the fallback NMF dictionary (no dictionary stage ran)"
    args += ["--model.init_args.dictionary_path", str(dictionary_path)]
    args += [str(a) for a in settings.get("overrides", [])]
    cli = lightning_cli(args, run=False)
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    figures["train_seconds"] = round(time.perf_counter() - start, 2)
    ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    final = out / "interpreter.ckpt"
    if ckpt:
        shutil.copyfile(ckpt, final)
        model = load_interpreter(final)
    else:
        trainer.save_checkpoint(final)
    ctx.artifacts["interpreter"] = str(final)
    from experiments.pipeline import finish_loggers

    finish_loggers(trainer)
    (out / "config.yaml").write_text(yaml.safe_dump({"args": args}, sort_keys=False))
    model.eval()
    dm.setup("test")
    start = time.perf_counter()
    scores = score_posthoc(model, ctx.artifacts["classifier"], dm.test_dataloader(), threshold=settings.get("threshold"),
                           mask_mode=settings.get("mask_mode", "log1p"), seed=ctx.seed, max_batches=settings.get("max_batches"))
    figures["eval_seconds"] = round(time.perf_counter() - start, 2)
    n_examples = int(settings.get("examples", 4))
    if n_examples > 0:
        test = dm.dataset("test") if hasattr(dm, "dataset") else dm.test_dataloader().dataset
        items = [test[i] for i in range(min(n_examples, len(test)))]
        write_interpretations(model, torch.stack([x["waveform"] for x in items]), [x.get("id", str(i)) for i, x in enumerate(items)],
                              out / "examples", threshold=settings.get("threshold"))
    from l2i.evaluation import DESCRIPTIONS

    for key, value in scores.items():
        figures[key] = value
        family = key.split(".")[0]
        ctx.descriptions[f"posthoc.{key}"] = DESCRIPTIONS.get(family, SCORE_DESCRIPTIONS.get(key, ""))
    ctx.descriptions["posthoc.train_seconds"] = "interpreter training time (s)"
    ctx.descriptions["posthoc.eval_seconds"] = "evaluation time on the test split (s)"
    figures["epochs"] = int(trainer.current_epoch)
    figures["checkpoint"] = str(final)
    ctx.descriptions["posthoc.checkpoint"] = "trained post-hoc interpreter"
    return figures


# -- the command -------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """``l2i interpret --ckpt interpreter.ckpt [--config posthoc.yaml] --input a.wav [b.wav …] --out DIR``."""
    from jsonargparse import ArgumentParser

    from l2i.audio import load_audio

    parser = ArgumentParser(prog="l2i interpret", description="Listenable interpretations of audio files.")
    parser.add_argument("--ckpt", required=True, help="trained post-hoc interpreter checkpoint")
    parser.add_argument("--config", default=None, help="posthoc config; its model.init_args override the checkpoint's")
    parser.add_argument("--input", nargs="+", required=True, help="audio files to interpret")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--threshold", type=float, default=None, help="relevance threshold τ (default: the model's)")
    parser.add_argument("--target", default=None,
                        help="comma-separated class names or indices to explain (default: the classifier's prediction)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no_plots", action="store_true", help="skip the PNGs")
    parser.add_argument("--protocol", default=None, choices=["project", "authors"],
                        help="interpretation details of a preset (authors: the top 5 components above τ); "
                             "default: the model's own settings")
    parser.add_argument("--top_k", type=int, default=None, help="at most this many components (0 = no cap)")
    args = parser.parse_args(argv)
    model = load_interpreter(args.ckpt, args.config, map_location=args.device).to(args.device)
    cfg = model.interpreter.frontend.config
    waves = []
    for path in args.input:
        wav, _ = load_audio(path, cfg.sample_rate)
        waves.append(wav)
    n = cfg.num_samples or max(w.shape[-1] for w in waves)
    from l2i.frontend import fix_length

    batch = torch.stack([fix_length(w, n, cfg.pad_mode, cfg.crop_mode) for w in waves])
    target = None
    if args.target:
        names = list(model.class_names)
        idx = []
        for t in str(args.target).split(","):
            t = t.strip()
            if t.isdigit():
                idx.append(int(t))
            elif t in names:
                idx.append(names.index(t))
            else:
                raise SystemExit(f"l2i interpret: unknown class {t!r}; classes: {names}")
        target = torch.tensor([idx] * len(waves))
    top_k = args.top_k
    if top_k is None and args.protocol is not None:
        from l2i.interpreter.protocol import get_protocol

        top_k = get_protocol(args.protocol).top_k or 0
    records = write_interpretations(model, batch, [Path(p).stem for p in args.input], args.out, target=target,
                                    threshold=args.threshold, plots=not args.no_plots, top_k=top_k)
    for r in records:
        print(f"{r['input']}: {r['class']} (p={r['classifier_probability']:.3f}), "
              f"{len(r['chosen_components'])} components -> {Path(args.out) / r['interpretation_wav']}")
    from callbacks.summary import print_summary  # what the run wrote, where

    print_summary("interpret", {"checkpoint": args.ckpt, "interpretations": f"{len(records)} in {args.out}"})
    if not math.isfinite(sum(r["classifier_probability"] for r in records) if records else 0.0):
        return 1
    return 0
