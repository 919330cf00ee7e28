"""A trained interpreter from its file, in pure torch: the Python front door and what ``l2i interpret`` runs.

::

    from l2i import load_interpreter

    interpreter = load_interpreter("runs/demo/posthoc/interpreter.ckpt")  # post-hoc or by-design, any folder
    clip = interpreter.explain("recording.wav")                           # the classifier's prediction, explained
    clip.save("interpretations/")                                         # WAVs + JSON (+ PNG with plots=True)

An interpreter consists of the classifier it explains (architecture and weights), the NMF dictionary W and its
own Ψ/Θ weights; :func:`l2i.bundle.read_interpreter` gathers them from one file. :meth:`TrainedInterpreter.explain`
takes one clip (a path, or a waveform with its ``sample_rate``), downmixes and resamples it, pads a clip
shorter than the model's minimum as the data sets do (then trims every output back), and returns a
:class:`ClipInterpretation` whose audio has the input's length. Each clip is interpreted on its own, so a
result never depends on the other clips of a call. :meth:`TrainedInterpreter.explain_windows` interprets a long
recording window by window (a timeline). :meth:`TrainedInterpreter.interpret` is the batched tensor verb of
:class:`~l2i.interpreter.interpretation.Interpretation`. No Lightning here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from l2i.interpreter.interpretation import Interpretation

__all__ = ["TrainedInterpreter", "ClipInterpretation", "Timeline", "load_interpreter", "build_interpreter"]


def _evidence(bundle: dict):
    """Θ's evidence of the bundle's interpreter (see :func:`l2i.dictionary.theta_evidence`)."""
    from l2i.dictionary import DictionaryArtifact, theta_evidence

    hp, d = bundle["interpreter"], bundle["dictionary"]
    if hp.get("noise_evidence", True) is not False and not hp.get("block_evidence"):
        return None
    art = DictionaryArtifact(W=d["dictionary"], frontend=d["frontend"], meta=d.get("meta") or {})
    return theta_evidence(art, bundle["classifier"].get("class_names") or hp.get("class_names") or [],
                          str(bundle.get("source", "dictionary")), hp.get("noise_evidence", True) is not False,
                          bool(hp.get("block_evidence")))


def build_interpreter(bundle: dict) -> nn.Module:
    """The pure-torch model (:class:`~l2i.interpreter.posthoc.PostHocInterpreter` or
    :class:`~l2i.interpreter.bydesign.ByDesignModel`) of a bundle from :func:`l2i.bundle.read_interpreter`,
    with its weights loaded (strictly: every tensor must fit)."""
    from l2i.backbones import build_backbone
    from l2i.checkpoints import CheckpointError
    from l2i.frontend import AudioFrontEnd, FrontEndConfig
    from l2i.interpreter.bydesign import ByDesignModel
    from l2i.interpreter.posthoc import PostHocInterpreter

    arch, hp, source = bundle["classifier"], bundle["interpreter"], bundle.get("source", "interpreter")
    frontend = AudioFrontEnd(FrontEndConfig.from_any(arch["frontend"]))
    backbone = build_backbone(arch["backbone"], n_mels=frontend.config.n_mels, num_classes=int(arch["num_classes"]),
                              pretrained=None, **(arch.get("backbone_kwargs") or {}))
    weights = bundle["state_dict"]
    W = weights.get("dictionary_buffer")
    if W is None:
        W = bundle["dictionary"]["dictionary"]
    common = dict(num_classes=int(arch["num_classes"]), task=arch["task"], layers=hp.get("layers"),
                  hidden=int(hp.get("hidden", 128)), psi_dropout=float(hp.get("psi_dropout", 0.0)),
                  pooling=hp.get("pooling", "attention"), attention_dim=int(hp.get("attention_dim", 256)),
                  finetune_dictionary=bool(hp.get("finetune_dictionary", False)), theta_bias=bool(hp.get("theta_bias")))
    if bundle["kind"] == "posthoc":
        from l2i.interpreter.protocol import interpreter_options

        options = interpreter_options(hp.get("protocol"), **{k: hp.get(k) for k in (
            "psi_variant", "skip_last_layers", "attention_dropout", "top_k", "share_eps")})
        model = PostHocInterpreter(frontend, backbone, W, evidence=_evidence(bundle), **common, **options)
    else:
        model = ByDesignModel(frontend, backbone, W, variant=hp.get("variant", "bottleneck"), evidence=_evidence(bundle),
                              **common)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{source}: the weights do not fit the model its settings describe "
                              f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    model.eval()
    model.requires_grad_(False)
    return model


@dataclass
class ClipInterpretation:
    """The interpretation of one clip, per explained class, on the CPU.

    Attributes:
        name: the clip's name (a file's stem), used for output file names.
        waveform: ``(N,)`` the interpreted input, mono at ``sample_rate`` (what the model heard).
        sample_rate: rate of every waveform here (the model's).
        input_sample_rate, input_channels: the original file's / array's rate and channels.
        class_names: all class names (C); classes: ``(C',)`` explained class indices.
        classifier_probabilities, interpreter_probabilities: ``(C,)`` the classifier's f(x) and the
            interpreter's Θ(H).
        audio, residual: ``(C', N)`` interpretation and what is left, the input's length N.
        relevance: ``(C', K)`` relevance of every component for each explained class; chosen: ``(C', K)`` bool.
        mask: ``(C', F, T)`` soft mask on ``|X|``; magnitude ``(F, T)`` and activations ``(K, T)`` (for plots).
        threshold, mask_mode: the settings used; start_s: where the clip starts in the recording (windows).
        kind: ``posthoc`` or ``bydesign``; task: ``multiclass`` or ``multilabel``; hop_length: STFT hop (plots).
        padded_from: the clip's length when it was padded to the model's minimum (else None).
    """

    name: str
    waveform: Tensor
    sample_rate: int
    input_sample_rate: int
    input_channels: int
    class_names: list[str]
    classes: Tensor
    classifier_probabilities: Tensor
    interpreter_probabilities: Tensor
    audio: Tensor
    residual: Tensor
    relevance: Tensor
    chosen: Tensor
    mask: Tensor
    magnitude: Tensor
    activations: Tensor
    threshold: float
    mask_mode: str
    kind: str
    hop_length: int
    start_s: float = 0.0
    padded_from: int | None = None
    task: str = "multiclass"

    @property
    def explained(self) -> list[str]:
        """Names of the explained classes, in the order of ``audio``."""
        return [self.class_names[int(c)] for c in self.classes]

    @property
    def agrees(self) -> bool:
        """Whether the interpreter's own top class is the classifier's (multiclass; multilabel: every explained
        class is above 0.5 for the interpreter too)."""
        if self.task == "multilabel":
            return bool(all(float(self.interpreter_probabilities[int(c)]) > 0.5 for c in self.classes))
        return int(self.interpreter_probabilities.argmax()) == int(self.classifier_probabilities.argmax())

    def records(self) -> list[dict]:
        """One JSON-ready record per explained class (without file names)."""
        out = []
        for j, c in enumerate(self.classes.tolist()):
            out.append({
                "input": self.name,
                "class": self.class_names[c],
                "class_index": c,
                "model": self.kind,
                "classifier_probability": round(float(self.classifier_probabilities[c]), 6),
                "interpreter_probability": round(float(self.interpreter_probabilities[c]), 6),
                "interpreter_agrees": self.agrees,
                "threshold": self.threshold,
                "mask_mode": self.mask_mode,
                "chosen_components": torch.nonzero(self.chosen[j]).flatten().tolist(),
                "relevance": [round(float(v), 6) + 0.0 for v in self.relevance[j]],  # + 0.0: no "-0.0"
                "sample_rate": self.sample_rate,
                "input_sample_rate": self.input_sample_rate,
                "input_channels": self.input_channels,
                "seconds": round(self.waveform.shape[-1] / self.sample_rate, 6),
                "start_s": round(self.start_s, 6),
                **({"padded_from_samples": self.padded_from} if self.padded_from is not None else {}),
            })
        return out

    def save(self, out_dir: str | os.PathLike, stem: str | None = None, *, plots: bool = False) -> list[dict]:
        """Write ``<stem>__input.wav`` (the resampled mono input) and, per explained class, ``<stem>__<class>.wav``
        (the interpretation), ``<stem>__<class>__residual.wav``, ``<stem>__<class>.json`` and (``plots``)
        ``<stem>__<class>.png`` into ``out_dir``. Returns the records with the file names added."""
        from l2i.audio import save_audio

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = safe_name(stem or self.name)
        save_audio(out / f"{stem}__input.wav", self.waveform, self.sample_rate)
        records = []
        for j, rec in enumerate(self.records()):
            base = f"{stem}__{safe_name(rec['class'])}"
            save_audio(out / f"{base}.wav", self.audio[j], self.sample_rate)
            save_audio(out / f"{base}__residual.wav", self.residual[j], self.sample_rate)
            rec.update(input_wav=f"{stem}__input.wav", interpretation_wav=f"{base}.wav", residual_wav=f"{base}__residual.wav")
            if plots:
                plot_interpretation(out / f"{base}.png", f"{self.name}: {rec['class']} (p={rec['classifier_probability']:.2f}, "
                                    f"{len(rec['chosen_components'])} components)", self.magnitude, self.mask[j],
                                    self.activations, self.relevance[j], self.chosen[j], self.sample_rate, self.hop_length)
                rec["png"] = f"{base}.png"
            (out / f"{base}.json").write_text(json.dumps(rec, indent=2) + "\n")
            records.append(rec)
        return records


@dataclass
class Timeline:
    """Interpretations of a long recording along its timeline, one :class:`ClipInterpretation` per window.

    ``audio(class_name)`` is a recording-length waveform holding each window's interpretation of that class
    (silence where the class was not explained); ``save`` writes those, the input and a JSON timeline."""

    name: str
    waveform: Tensor
    sample_rate: int
    window_s: float
    hop_s: float
    windows: list[ClipInterpretation] = field(default_factory=list)

    def class_names_explained(self) -> list[str]:
        seen: list[str] = []
        for w in self.windows:
            seen += [c for c in w.explained if c not in seen]
        return seen

    def audio(self, class_name: str) -> Tensor:
        """``(N,)``: the windows' interpretations of ``class_name`` overlap-added at their place (averaged where
        windows overlap)."""
        total = torch.zeros(self.waveform.shape[-1])
        weight = torch.zeros(self.waveform.shape[-1])
        for w in self.windows:
            start = int(round(w.start_s * self.sample_rate))
            n = w.waveform.shape[-1]
            weight[start:start + n] += 1
            if class_name in w.explained:
                total[start:start + n] += w.audio[w.explained.index(class_name)]
        return total / weight.clamp_min(1)

    def records(self) -> list[dict]:
        return [{"start_s": round(w.start_s, 6), "end_s": round(w.start_s + w.waveform.shape[-1] / w.sample_rate, 6),
                 "classes": w.explained, "interpreter_agrees": w.agrees,
                 "classifier_probability": [round(float(w.classifier_probabilities[int(c)]), 6) for c in w.classes],
                 "interpreter_probability": [round(float(w.interpreter_probabilities[int(c)]), 6) for c in w.classes],
                 "chosen_components": [torch.nonzero(ch).flatten().tolist() for ch in w.chosen]} for w in self.windows]

    def save(self, out_dir: str | os.PathLike, stem: str | None = None) -> dict:
        """Write ``<stem>__input.wav``, per explained class ``<stem>__<class>.wav`` (recording length) and
        ``<stem>__timeline.json``; returns the timeline record."""
        from l2i.audio import save_audio

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = safe_name(stem or self.name)
        save_audio(out / f"{stem}__input.wav", self.waveform, self.sample_rate)
        files = {}
        for name in self.class_names_explained():
            files[name] = f"{stem}__{safe_name(name)}.wav"
            save_audio(out / files[name], self.audio(name), self.sample_rate)
        first = self.windows[0] if self.windows else None
        record = {"input": self.name, "window_s": self.window_s, "hop_s": self.hop_s, "sample_rate": self.sample_rate,
                  "input_sample_rate": first.input_sample_rate if first else None,
                  "input_channels": first.input_channels if first else None,
                  "seconds": round(self.waveform.shape[-1] / self.sample_rate, 6), "input_wav": f"{stem}__input.wav",
                  "interpretation_wavs": files, "windows": self.records()}
        (out / f"{stem}__timeline.json").write_text(json.dumps(record, indent=2) + "\n")
        return record


def safe_name(name: str) -> str:
    """A file-name-safe version of ``name`` (letters, digits, ``-_.``; the rest ``_``)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


def plot_interpretation(path, title: str, magnitude, mask, activations, relevance, chosen, sample_rate: int, hop: int) -> None:
    """Input and interpretation spectrograms (dB, s × kHz), the activations H and the relevance bars."""
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


def _as_clip(audio: Any, sample_rate: int | None, target_rate: int) -> tuple[Tensor, int, int, str]:
    """``(mono waveform (N,) at target_rate, input rate, input channels, name)`` from a path or an array.

    An array is one clip: ``(N,)``, ``(channels, N)`` or ``(N, channels)`` (as ``soundfile`` reads it; the
    shorter axis is taken as channels); its ``sample_rate`` must be given (no silent guess)."""
    from l2i.audio import audio_info, load_audio, resample

    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        if path.is_dir():
            raise IsADirectoryError(f"{path}: is a directory, not an audio file (give the files, e.g. {path}/*.wav)")
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such audio file")
        info = audio_info(path)
        wav, _ = load_audio(path, target_rate)
        return wav.reshape(-1).float(), int(info.samplerate), int(info.channels), path.stem
    if sample_rate is None:
        raise ValueError("explain(waveform): give sample_rate= (the waveform's rate in Hz); it is resampled to the "
                         f"model's {target_rate} Hz")
    x = torch.as_tensor(audio).float()
    if x.dim() == 2:
        if x.shape[0] > x.shape[1]:
            x = x.T  # (N, channels) -> (channels, N)
        channels = int(x.shape[0])
        x = x.mean(0)
    elif x.dim() == 1:
        channels = 1
    else:
        raise ValueError(f"explain: one clip is (N,), (channels, N) or (N, channels), got shape {tuple(x.shape)}; "
                         "use interpret() for batches")
    if int(sample_rate) != target_rate:
        x = resample(x[None], int(sample_rate), target_rate)[0]
    return x, int(sample_rate), channels, "waveform"


class TrainedInterpreter(nn.Module):
    """A trained post-hoc interpreter or by-design model, ready to explain audio (see the module docstring).

    Attributes: ``model`` (the pure-torch model), ``kind`` (``posthoc`` | ``bydesign``), ``class_names``,
    ``task``, ``threshold`` (relevance τ), ``class_threshold`` (multilabel decision), ``interpret_options`` (the
    model's stored interpretation options, the defaults of :meth:`interpret`), ``frontend``,
    ``classifier`` (the :class:`~l2i.classifier.Classifier` it explains: post-hoc, the frozen classifier; by-design,
    the model's own prediction, Θ(H) in bottleneck mode), ``source`` (the file it came from), ``settings`` (the
    interpreter's hyper-parameters), ``dictionary`` (the artifact's dict: W, front-end, labels).
    """

    def __init__(self, bundle: dict):
        super().__init__()
        self.model = build_interpreter(bundle)
        self.kind = bundle["kind"]
        arch, hp = bundle["classifier"], bundle["interpreter"]
        self.class_names = list(arch.get("class_names") or [str(i) for i in range(int(arch["num_classes"]))])
        self.task = arch["task"]
        self.threshold = float(hp.get("threshold", 0.2))
        self.class_threshold = float(hp.get("class_threshold", 0.5))
        self.source = bundle.get("source")
        from l2i.interpreter.posthoc import check_interpret_options

        self.interpret_options: dict[str, Any] = check_interpret_options(
            hp.get("interpret_options"), f"{self.source or 'interpreter'}: interpret_options", bool(hp.get("block_evidence")))
        self.settings = dict(hp)
        self.dictionary = bundle["dictionary"]
        from l2i.classifier import FrozenClassifier, LogmelPredictor

        predictor = self.model.backbone if self.kind == "posthoc" else LogmelPredictor(self.model)
        self.classifier = FrozenClassifier(self.model.frontend, predictor, self.task, len(self.class_names), self.class_names)

    # -- the model's geometry ----------------------------------------------------------------------------
    @property
    def frontend(self):
        return self.model.frontend

    @property
    def sample_rate(self) -> int:
        return int(self.frontend.config.sample_rate)

    @property
    def min_samples(self) -> int:
        """The shortest clip the model takes: its backbone's minimum frames, and a centred STFT's reflection
        padding (``n_fft // 2`` samples each side); shorter clips are padded as the data sets pad."""
        cfg = self.frontend.config
        frames = self._min_frames()
        by_frames = (frames - 1) * cfg.hop_length + (1 if cfg.center else (cfg.win_length or cfg.n_fft))
        return max(by_frames, cfg.n_fft // 2 + 1 if cfg.center else cfg.n_fft, 1)

    def _min_frames(self) -> int:
        """The fewest frames the backbone takes (its ``min_frames``, else found by trying 1, 2, 4 … frames:
        each pooling halves the time axis)."""
        if getattr(self, "_min_frames_cache", None) is None:
            declared = getattr(self.model.backbone, "min_frames", None)
            found = int(declared) if declared else None
            device = next(self.model.parameters()).device
            t = 1
            while found is None and t <= 4096:
                try:
                    with torch.no_grad():
                        self.model.backbone(torch.zeros(1, self.frontend.config.n_mels, t, device=device))
                    found = t
                except (RuntimeError, ValueError):
                    t *= 2
            self._min_frames_cache = found or 1
        return self._min_frames_cache

    def class_index(self, name: str | int) -> int:
        """A class index from a name or index (``ValueError`` naming the classes otherwise)."""
        if isinstance(name, int) or str(name).strip().isdigit():
            i = int(name)
            if 0 <= i < len(self.class_names):
                return i
        elif str(name).strip() in self.class_names:
            return self.class_names.index(str(name).strip())
        raise ValueError(f"unknown class {name!r}; classes: {self.class_names}")

    # -- the batched verb --------------------------------------------------------------------------------
    @torch.no_grad()
    def interpret(self, waveform: Tensor, target=None, threshold: float | None = None, *, sample_rate: int | None = None,
                  class_threshold: float | None = None, mask_mode: str | None = None, relevance_weighted: bool | None = None,
                  components: Tensor | None = None, top_k: int | None = None, **options) -> Interpretation:
        """``waveform (B, N)`` -> :class:`~l2i.interpreter.interpretation.Interpretation` (the tensor verb; the
        clips of a batch must have one length). ``threshold`` defaults to the model's τ; ``top_k`` caps the
        chosen components (default the model's own, 0 = no cap). Further ``options`` (``refine_iters``,
        ``refine_gate``, ``refine_init``, ``refine_beta``, ``block_components``, ``mask_power``) and every argument
        left ``None`` come from the model's stored ``interpret_options``, else the method's defaults (``mask_mode``
        ``log1p``)."""
        from l2i.interpreter.posthoc import merge_interpret_options

        kw = dict(class_threshold=class_threshold, mask_mode=mask_mode, relevance_weighted=relevance_weighted,
                  components=components, top_k=top_k, **options)
        kw = merge_interpret_options(self.interpret_options, kw)
        kw = {k: v for k, v in kw.items() if v is not None}
        kw.setdefault("class_threshold", self.class_threshold)
        return self.model.interpret(waveform, target, self.threshold if threshold is None else float(threshold),
                                    sample_rate=sample_rate, **kw)

    def effective_mask_mode(self, mask_mode: str | None = None) -> str:
        """The mask mode an :meth:`interpret` call with ``mask_mode`` uses."""
        return mask_mode or self.interpret_options.get("mask_mode") or "log1p"

    # -- one clip --------------------------------------------------------------------------------------
    @torch.no_grad()
    def explain(self, audio: Any, sample_rate: int | None = None, *, target: Sequence[str | int] | str | int | None = None,
                threshold: float | None = None, mask_mode: str | None = None, name: str | None = None,
                top_k: int | None = None) -> ClipInterpretation:
        """Interpret one clip: a file path, or a waveform ``(N,)`` / ``(channels, N)`` / ``(N, channels)`` with its
        ``sample_rate``. ``target``: class names or indices to explain (default: the classifier's prediction).

        A model trained on fixed-length clips gets the clip padded or cropped to that length (its
        ``pad_mode`` / ``crop_mode``, as the data sets do); a clip shorter than :attr:`min_samples` is padded
        the same way. The outputs are trimmed back: ``audio``, ``residual`` and ``waveform`` have the length of
        the interpreted input (a cropped clip: the kept part)."""
        from l2i.frontend import fix_length

        wav, in_rate, channels, default_name = _as_clip(audio, sample_rate, self.sample_rate)
        n = int(wav.shape[-1])
        if n == 0:
            raise ValueError(f"{name or default_name}: the audio is empty (0 samples)")
        cfg = self.frontend.config
        fixed = cfg.num_samples
        if fixed is not None and n > fixed:
            crop = "center" if cfg.crop_mode == "random" else cfg.crop_mode
            start = 0 if crop == "start" else (n - fixed) // 2
            wav, n = wav[start:start + fixed], fixed
        length = max(n, fixed or 0, self.min_samples)
        padded = fix_length(wav, length, cfg.pad_mode, "start") if length != n else wav
        device = next(self.model.parameters()).device
        tgt = None
        if target is not None:
            items = [target] if isinstance(target, (str, int)) else list(target)
            tgt = torch.tensor([[self.class_index(t) for t in items]], device=device)
        it = self.interpret(padded[None].to(device), tgt, threshold, mask_mode=mask_mode, top_k=top_k)
        valid = it.classes[0] >= 0
        classes = it.classes[0][valid].cpu()
        probs = (lambda z: z.softmax(-1) if self.task == "multiclass" else z.sigmoid())
        feats = self.frontend(padded[None].to(device))
        frames = cfg.num_frames(n) if cfg.center else max(1, 1 + (n - (cfg.win_length or cfg.n_fft)) // cfg.hop_length)
        frames = min(frames, it.mask.shape[-1])
        return ClipInterpretation(
            name=name or default_name, waveform=wav.cpu(), sample_rate=self.sample_rate, input_sample_rate=in_rate,
            input_channels=channels, class_names=self.class_names, classes=classes,
            classifier_probabilities=probs(it.classifier_logits[0]).cpu(), interpreter_probabilities=probs(it.logits[0]).cpu(),
            audio=it.audio[0][valid][:, :n].cpu(), residual=it.residual[0][valid][:, :n].cpu(),
            relevance=it.relevance[0][classes].cpu(), chosen=it.components[0][classes].cpu(),
            mask=it.mask[0][valid][..., :frames].cpu(), magnitude=feats.magnitude[0][..., :frames].cpu(),
            activations=it.activations[0][..., :frames].cpu(), threshold=float(it.threshold),
            mask_mode=self.effective_mask_mode(mask_mode),
            kind=self.kind, hop_length=cfg.hop_length, padded_from=n if length != n else None, task=self.task,
        )

    @torch.no_grad()
    def explain_windows(self, audio: Any, sample_rate: int | None = None, *, window_s: float | None = None,
                        hop_s: float | None = None, name: str | None = None, **kwargs) -> Timeline:
        """Interpret a long recording window by window (``window_s``, default the model's clip length; ``hop_s``
        default ``window_s``): each window explains its own prediction. Returns a :class:`Timeline`."""
        wav, in_rate, channels, default_name = _as_clip(audio, sample_rate, self.sample_rate)
        cfg = self.frontend.config
        window_s = float(window_s or cfg.duration_s or 0)
        if window_s <= 0:
            raise ValueError("explain_windows: give window_s (the model has no fixed clip length)")
        hop_s = float(hop_s or window_s)
        if hop_s <= 0:
            raise ValueError(f"explain_windows: hop_s must be > 0, got {hop_s}")
        win, hop, n = int(round(window_s * self.sample_rate)), int(round(hop_s * self.sample_rate)), int(wav.shape[-1])
        if n == 0:
            raise ValueError(f"{name or default_name}: the audio is empty (0 samples)")
        starts = list(range(0, max(n - win, 0) + 1, hop))
        if starts[-1] + win < n:
            starts.append(starts[-1] + hop)  # the tail: a last, shorter window
        timeline = Timeline(name or default_name, wav.cpu(), self.sample_rate, window_s, hop_s)
        for s in starts:
            clip = self.explain(wav[s:s + win], self.sample_rate, name=timeline.name, **kwargs)
            clip.start_s, clip.input_sample_rate, clip.input_channels = s / self.sample_rate, in_rate, channels
            timeline.windows.append(clip)
        return timeline


def load_interpreter(path: str | os.PathLike, *, classifier: str | os.PathLike | None = None,
                     dictionary: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> TrainedInterpreter:
    """A trained interpreter (post-hoc or by-design) from its checkpoint or self-contained file, from any
    working directory (see :func:`l2i.bundle.read_interpreter`; ``classifier`` / ``dictionary`` give the
    artifact files of an old checkpoint that names files no longer where they were). ``device``: ``auto`` is
    CUDA when available."""
    from l2i.bundle import read_interpreter

    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    bundle = read_interpreter(path, classifier=classifier, dictionary=dictionary)
    return TrainedInterpreter(bundle).to(device).eval()
