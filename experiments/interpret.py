"""Post-hoc interpretation: the ``l2i interpret`` and ``l2i export`` commands.

``l2i interpret --ckpt interpreter.ckpt --input a.wav [b.wav …] --out_dir DIR`` interprets each file on its own
with :class:`l2i.trained.TrainedInterpreter` (a post-hoc interpreter or a by-design model) and writes the files
listed in :data:`OUTPUT_FILES` (also in ``--help``). ``l2i export`` writes an interpreter's self-contained file.

The ``posthoc`` pipeline stage (``l2i demo``), which trains and scores an interpreter, is
:mod:`experiments.stages.posthoc`.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch

__all__ = [
    "write_interpretations",
    "interpreter_for",
    "read_interpreter_config",
    "main",
    "export_main",
    "unique_stems",
    "config_model_args",
]


# -- files: WAV, JSON, PNG --------------------------------------------------------------------------------


def _safe(name: str) -> str:
    from l2i.trained import safe_name

    return safe_name(name)


@torch.no_grad()
def write_interpretations(model, waveform: torch.Tensor, names: Sequence[str], out_dir: str | Path, *,
                          target=None, threshold: float | None = None, plots: bool = True,
                          top_k: int | None = None) -> list[dict]:
    """Interpret ``waveform (B, samples)`` and write per clip and explained class a WAV, a residual WAV, a JSON
    and (``plots``) a PNG into ``out_dir``. Returns one record per written interpretation. ``top_k``: at most
    that many components per interpretation (default: the model's setting; 0 = no cap)."""
    from l2i.audio import save_audio
    from l2i.trained import plot_interpretation

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
                "relevance": [round(float(v), 6) + 0.0 for v in rel],  # + 0.0: no "-0.0"
                "interpretation_wav": f"{stem}.wav",
                "residual_wav": f"{stem}__residual.wav",
                "sample_rate": sr,
            }
            (out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
            if plots:
                plot_interpretation(out / f"{stem}.png", f"{name}: {cname} (p={record['classifier_probability']:.2f}, "
                      f"{len(record['chosen_components'])} components)", feats.magnitude[b], it.mask[b, j],
                      it.activations[b], rel, chosen, sr, net.frontend.config.hop_length)
                record["png"] = f"{stem}.png"
            records.append(record)
    return records


# -- loading ----------------------------------------------------------------------------------------------


#: the keys of a config's ``model.init_args`` that may differ from an interpreter checkpoint's: where its
#: artifacts are now, and the settings of interpretation (not of the model)
_FREE_KEYS = ("classifier_checkpoint", "dictionary_path", "threshold", "class_threshold", "num_classes", "task", "class_names",
              "interpret_options")
#: training settings: no effect on a trained model
_TRAINING_KEYS = ("loss_weights", "lr", "weight_decay")


def config_model_args(read, ckpt: str | Path, bundle: dict) -> dict:
    """The ``model.init_args`` of ``read`` (an :class:`~experiments.cli.Instantiated` fit config) that may be applied
    to the interpreter of ``bundle``: ``threshold`` / ``class_threshold`` / ``interpret_options`` (interpretation
    settings). Refused with one message: a config whose model is another class than the checkpoint's, or whose
    architecture values differ ("drop --config"). Only what the configs and overrides set is compared (not the
    class's defaults)."""
    from l2i.checkpoints import KIND_CLASSES, CheckpointKindError

    class_path = str((read.config.get("model") or {}).get("class_path") or "")
    expected = KIND_CLASSES[bundle["kind"]]
    if class_path and class_path.rpartition(".")[2] != expected:
        raise CheckpointKindError(f"--config's model is {class_path} but {ckpt} is a {expected} checkpoint: give that "
                                  f"model's config, or drop --config (the checkpoint holds its own settings)")
    init = read.init_args("model", given=True)
    stored = bundle["interpreter"]
    diff = []
    for key, value in init.items():
        if key in _FREE_KEYS or key in _TRAINING_KEYS or value is None or key not in stored:
            continue
        theirs = stored[key]
        if not (value == theirs or (isinstance(value, (list, tuple)) and list(value) == list(theirs or []))):
            diff.append(f"{key}: config {value!r}, checkpoint {theirs!r}")
    if diff:
        raise CheckpointKindError(f"your --config's model differs from the checkpoint's ({'; '.join(diff[:4])}"
                                  f"{' …' if len(diff) > 4 else ''}): drop --config — {ckpt} holds its own settings")
    return {k: init[k] for k in ("threshold", "class_threshold", "interpret_options") if init.get(k) is not None}


def _check_overrides(overrides: list[tuple[str, Any]]) -> None:
    bad = [k for k, _ in overrides if not k.startswith("model.init_args.")]
    if bad:
        raise ValueError(f"--{bad[0]}: interpret reads no data set; only --model.init_args.* overrides "
                         "(e.g. --model.init_args.threshold 0.3) apply")


def read_interpreter_config(ckpt: str | Path, configs: Sequence | None, overrides: list[tuple[str, Any]]):
    """The interpreter's fit config(s) and ``--model.init_args.*`` overrides as ``l2i fit`` reads them
    (:func:`experiments.cli.instantiate`, nothing built), or None when neither is given. Overrides without a config
    apply to the checkpoint's own class."""
    from experiments.cli import instantiate

    _check_overrides(overrides)
    if not configs and not overrides:
        return None
    if not configs:
        from l2i.checkpoints import KIND_CLASSES, checkpoint_kind, safe_load

        kind = checkpoint_kind(safe_load(ckpt, what="interpreter checkpoint"))
        configs = [{"model": {"class_path": f"lightning_modules.{KIND_CLASSES.get(kind, 'PostHocInterpreterModule')}"}}]
    return instantiate(configs, overrides, sections=())


def interpreter_for(ckpt: str | Path, read=None, classifier: str | Path | None = None,
                    dictionary: str | Path | None = None, device: str = "cpu"):
    """The :class:`~l2i.trained.TrainedInterpreter` of ``ckpt`` with the interpretation settings of ``read`` (see
    :func:`config_model_args`); an old checkpoint whose artifacts moved finds them as given, else where the
    config's ``classifier_checkpoint`` / ``dictionary_path`` say."""
    from l2i.bundle import read_interpreter
    from l2i.checkpoints import CheckpointError
    from l2i.trained import TrainedInterpreter

    init = read.init_args("model", given=True) if read is not None else {}
    try:
        bundle = read_interpreter(ckpt, classifier=classifier, dictionary=dictionary, verb="l2i interpret")
    except CheckpointError:
        if not (init.get("classifier_checkpoint") or init.get("dictionary_path")):
            raise
        bundle = read_interpreter(ckpt, classifier=classifier or init.get("classifier_checkpoint"),
                                  dictionary=dictionary or init.get("dictionary_path"), verb="l2i interpret")
    bundle["interpreter"].update(config_model_args(read, ckpt, bundle) if read is not None else {})
    return TrainedInterpreter(bundle).to(device).eval()


# -- the command -------------------------------------------------------------------------------------------

OUTPUT_FILES = """output files, in --out_dir, per input <stem> (a file's name; two inputs with the same name get their
folder's name too) and explained <class>:
  <stem>__input.wav            the input as the model heard it (mono, resampled to the model's rate)
  <stem>__<class>.wav          the interpretation: what the model's evidence for <class> sounds like
  <stem>__<class>__residual.wav  the rest of the input (interpretation + residual = input)
  <stem>__<class>.json         classifier and interpreter probabilities, relevance of every component, the chosen
                               ones, threshold, mask mode, the input's rate and channels
  <stem>__<class>.png          input and interpretation spectrograms, activations H, relevance bars (not with --no_plots)
with --window_s (a long recording, window by window):
  <stem>__input.wav, <stem>__<class>.wav (recording length: each window's interpretation at its place) and
  <stem>__timeline.json (per window: start, end, explained classes, probabilities, chosen components)"""


def unique_stems(paths: Sequence[str | Path]) -> list[str]:
    """Output names, one per input and all different: the file's stem, with as many of its folder names as
    tell it apart from another input of the same stem (``a/x.wav``, ``b/x.wav`` -> ``a_x``, ``b_x``); an
    input given twice gets ``_2`` …"""
    parts = [list(Path(p).resolve().with_suffix("").parts) for p in paths]
    stems = [p[-1] for p in parts]
    for depth in range(2, max((len(p) for p in parts), default=1) + 1):
        owners: dict[str, set] = {}
        for s, p in zip(stems, parts):
            owners.setdefault(s, set()).add(tuple(p))
        dup = {s for s, o in owners.items() if len(o) > 1}  # one name, several files
        if not dup:
            break
        stems = ["_".join(p[-depth:]).lstrip("/_") if s in dup else s for s, p in zip(stems, parts)]
    seen: dict[str, int] = {}
    out = []
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
        out.append(s if seen[s] == 1 else f"{s}_{seen[s]}")
    return out


def check_inputs(paths: Sequence[str]) -> None:
    """Every input an existing audio file (one line naming the first that is not)."""
    from l2i.audio import audio_info

    for p in map(Path, paths):
        if p.is_dir():
            raise IsADirectoryError(f"--input {p}: is a directory, not an audio file (give the files, e.g. {p}/*.wav)")
        if not p.exists():
            from l2i.checkpoints import did_you_mean

            raise FileNotFoundError(f"--input {p}: no such file{did_you_mean(p)}")
        audio_info(p)  # AudioFileError naming the file when it is not audio


def check_out_dir(out: Path, needed_bytes: int) -> None:
    """The output folder can be created and written, with ``needed_bytes`` free (checked before any work)."""
    import tempfile

    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(f"--out_dir {out}: exists and is not a folder") from None
    except OSError as exc:
        raise OSError(f"--out_dir {out}: cannot create the folder ({exc.strerror or exc})") from None
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".l2i-write-test-"):
            pass
    except OSError as exc:
        raise PermissionError(f"--out_dir {out}: cannot write there ({exc.strerror or exc})") from None
    free = shutil.disk_usage(out).free
    if free < needed_bytes:
        raise OSError(f"--out_dir {out}: {free / 1e6:.1f} MB free, the outputs need about {needed_bytes / 1e6:.1f} MB")


def _estimate_bytes(paths: Sequence[str], rate: int, classes: int, plots: bool) -> int:
    from l2i.audio import audio_info

    total = 0
    for p in paths:
        info = audio_info(p)
        n = int(info.frames / max(info.samplerate, 1) * rate) + 1
        total += n * 4 * (1 + 2 * classes) + classes * (4096 + (150_000 if plots else 0))
    return total


def _warn(message: str) -> None:
    import sys

    print(f"[l2i] warning: {message}", file=sys.stderr)


def main(argv: list[str]) -> int:
    """``l2i interpret --ckpt FILE --input a.wav [b.wav …] --out_dir DIR`` (see ``l2i interpret --help``)."""
    from experiments.cli import one_line_errors

    return one_line_errors("l2i interpret", lambda: _main(argv))


def _parser():
    import argparse

    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog="l2i interpret", description="Listenable interpretations of audio files by a trained "
                            "post-hoc interpreter or by-design model. Each file is interpreted on its own. Dotted overrides "
                            "such as --model.init_args.threshold 0.3 apply as for l2i fit.",
                            epilog=OUTPUT_FILES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="the interpreter's checkpoint (post-hoc or by-design) or its "
                        "self-contained file (l2i export)")
    parser.add_argument("--input", nargs="+", required=True, help="audio files to interpret (any rate, mono or multichannel)")
    parser.add_argument("--out_dir", required=True, help="output folder (created; see the files below)")
    parser.add_argument("--config", default=None, action="append", help="optional, repeatable (overlays): the "
                        "interpreter's fit config, for its threshold / class_threshold / interpret_options and where an old "
                        "checkpoint's classifier / dictionary are now; a config of another model is refused")
    parser.add_argument("--classifier", default=None, help="optional: the classifier checkpoint of an old interpreter "
                        "checkpoint, when the recorded path is not found")
    parser.add_argument("--dictionary", default=None, help="optional: the dictionary file of an old interpreter checkpoint")
    parser.add_argument("--threshold", type=float, default=None, help="relevance threshold τ (default: the model's)")
    parser.add_argument("--target", default=None,
                        help="comma-separated class names or indices to explain (default: the classifier's prediction)")
    parser.add_argument("--mask_mode", default=None, choices=["log1p", "share"],
                        help="how the chosen components' share becomes a mask on |X|: log1p (the chosen part of "
                        "log1p|X|) or share (their share of W H times |X|); default: the model's interpret_options, "
                        "else log1p")
    parser.add_argument("--window_s", type=float, default=None, help="interpret a long recording window by window "
                        "(seconds; a timeline) instead of as one clip")
    parser.add_argument("--hop_s", type=float, default=None, help="hop between windows (default: --window_s)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 …")
    parser.add_argument("--no_plots", action="store_true", help="skip the PNGs")
    parser.add_argument("--protocol", default=None, choices=["project", "authors"],
                        help="interpretation details of a preset (authors: the top 5 components above τ); "
                             "default: the model's own settings")
    parser.add_argument("--top_k", type=int, default=None, help="at most this many components (0 = no cap; "
                        "default: the model's own)")
    return parser


def _main(argv: list[str]) -> int:
    from experiments.cli import default_device, split_overrides

    argv = ["--out_dir" if a == "--out" else ("--out_dir=" + a[6:] if a.startswith("--out=") else a) for a in argv]
    argv, overrides = split_overrides(argv)
    args = _parser().parse_args(argv)
    _check_overrides(overrides)
    check_inputs(args.input)
    read = read_interpreter_config(args.ckpt, args.config, overrides)
    interpreter = interpreter_for(args.ckpt, read, args.classifier, args.dictionary, default_device(args.device))
    targets = [t.strip() for t in str(args.target).split(",") if t.strip()] if args.target else None
    for t in targets or []:
        interpreter.class_index(t)  # unknown names refused before any work
    out = Path(args.out_dir)
    n_classes = len(targets) if targets else (1 if interpreter.task == "multiclass" else len(interpreter.class_names))
    check_out_dir(out, _estimate_bytes(args.input, interpreter.sample_rate, n_classes, not args.no_plots))
    cfg = interpreter.frontend.config
    top_k = args.top_k
    if top_k is None and args.protocol is not None:
        from l2i.interpreter.protocol import get_protocol

        top_k = get_protocol(args.protocol).top_k or 0
    records: list[dict] = []
    for path, stem in zip(args.input, unique_stems(args.input)):
        if args.window_s:
            timeline = interpreter.explain_windows(path, window_s=args.window_s, hop_s=args.hop_s, target=targets,
                                                   threshold=args.threshold, mask_mode=args.mask_mode, name=stem,
                                                   top_k=top_k)
            rec = timeline.save(out, stem)
            for name, wav in rec["interpretation_wavs"].items():
                n = sum(name in w["classes"] for w in rec["windows"])
                print(f"{stem}: {name} in {n} of {len(rec['windows'])} windows -> {out / wav}")
            print(f"{stem}: timeline -> {out / (stem + '__timeline.json')}")
            records.append(rec)
            continue
        clip = interpreter.explain(path, target=targets, threshold=args.threshold, mask_mode=args.mask_mode, name=stem,
                                  top_k=top_k)
        seconds = interpreter.sample_rate and clip.waveform.shape[-1] / interpreter.sample_rate
        from l2i.audio import audio_info

        info = audio_info(path)
        if cfg.num_samples is not None and info.frames / info.samplerate > cfg.duration_s + 1e-3:
            _warn(f"{path}: {info.frames / info.samplerate:.2f} s, but the model takes {cfg.duration_s:g} s clips: "
                  f"only {seconds:g} s ({cfg.crop_mode if cfg.crop_mode != 'random' else 'center'}) were interpreted; "
                  f"--window_s {cfg.duration_s:g} interprets the whole recording window by window")
        if clip.padded_from is not None and cfg.num_samples is None:
            _warn(f"{path}: {clip.padded_from} samples, shorter than the model's minimum {interpreter.min_samples} "
                  f"({interpreter.min_samples / interpreter.sample_rate:.3f} s): padded ({cfg.pad_mode}) for the model, "
                  "outputs trimmed back")
        if not clip.agrees:
            c = int(clip.classifier_probabilities.argmax())
            i = int(clip.interpreter_probabilities.argmax())
            _warn(f"{path}: the interpreter's own prediction ({clip.class_names[i]}, p={float(clip.interpreter_probabilities[i]):.3f}) "
                  f"differs from the classifier's it explains ({clip.class_names[c]}, p={float(clip.classifier_probabilities[c]):.3f}): "
                  "its interpretation may not show the classifier's evidence")
        for r in clip.save(out, stem, plots=not args.no_plots):
            print(f"{stem}: {r['class']} (classifier p={r['classifier_probability']:.3f}, interpreter "
                  f"p={r['interpreter_probability']:.3f}), {len(r['chosen_components'])} components -> "
                  f"{out / r['interpretation_wav']}")
            records.append(r)
    from callbacks.summary import print_summary  # what the run wrote, where

    print_summary("interpret", {"checkpoint": args.ckpt, "interpretations": f"{len(records)} in {out}"})
    finite = all(math.isfinite(r.get("classifier_probability", 0.0)) for r in records)
    return 0 if finite else 1


def export_main(argv: list[str]) -> int:
    """``l2i export --ckpt interpreter.ckpt --out interpreter.l2i.pt``: one self-contained file."""
    from experiments.cli import one_line_errors

    def run() -> int:
        from jsonargparse import ArgumentParser

        from l2i.bundle import export_interpreter

        p = ArgumentParser(prog="l2i export", description="Write one self-contained file of a trained interpreter "
                           "(post-hoc or by-design): the classifier it explains, the NMF dictionary and its own weights "
                           "and settings, loadable with torch.load(weights_only=True). l2i interpret, l2i evaluate and "
                           "l2i.load_interpreter read it alone, from any folder.")
        p.add_argument("--ckpt", required=True, help="the interpreter's checkpoint")
        p.add_argument("--out", required=True, help="the file to write (e.g. interpreter.l2i.pt)")
        p.add_argument("--classifier", default=None, help="the classifier checkpoint, when the recorded path is not found")
        p.add_argument("--dictionary", default=None, help="the dictionary file, when the recorded path is not found")
        args = p.parse_args(argv)
        out = export_interpreter(args.ckpt, args.out, classifier=args.classifier, dictionary=args.dictionary)
        print(f"[l2i] export: {out} ({out.stat().st_size / 1e6:.2f} MB)")
        return 0

    return one_line_errors("l2i export", run)
