"""The benchmark's listening table: every interpreter's interpretation of the same clips, to hear side by side.

One row per clip (the first ``clips`` clips of the benchmark's first batch), columns: the clip's id and true
label(s), the explained class, the **mixture**, the **true source** of that class where the data set knows
it (the sum of the clip's sources labelled with it), then for **every interpreter** of the benchmark its
interpretation (audio and spectrogram ``log(1 + |STFT|)`` of the interpretation) with the row's figures:

* ``si_sdr``: SI-SDR (dB) of the interpretation against the true source (clips with sources; else empty);
* ``prob_drop``: faithfulness, the drop of the explained class's probability under the explained model when
  the interpretation is removed (the residual audio), as in the benchmark's ``removal_prob_drop``.

The explained class is the true class where the clips have sources (so the interpretation can be compared
with its source; multilabel: the first true label), else the explained model's own choice (its first slot).

Written to ``<out>/benchmark/listening/``: 16-bit WAVs, PNGs, ``rows.json`` and ``index.html`` (a static
gallery, one section per clip and one card per interpreter, that fits a 1,280 px screen), and logged as the
W&B table ``listening`` of the benchmark's run (:func:`log_listening`).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["listening_table", "log_listening", "listening_columns"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))[:60] or "x"


def _label(names: Sequence[str], c: int) -> str:
    return names[c] if 0 <= c < len(names) else str(c)


def _spectrogram_png(path: Path, magnitude: torch.Tensor, title: str) -> str:
    """``log1p(magnitude)`` ``(F, T)`` as a small PNG; returns the file name."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.2, 1.7), dpi=80)
    ax.imshow(torch.log1p(magnitude).numpy(), origin="lower", aspect="auto", cmap="magma")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout(pad=0.3)
    fig.savefig(path)
    plt.close(fig)
    return path.name


@torch.no_grad()
def listening_table(folder: str | Path, entries: Sequence[tuple[str, Any, Any]], batch: dict, class_names: Sequence[str],
                    threshold: float | None = 0.2, clips: int = 8, device: str | torch.device = "cpu",
                    images: bool = True, title: str | None = None) -> dict:
    """Interpret ``batch``'s first ``clips`` clips with every interpreter and write the listening table.

    Args:
        folder: where the files go (made if missing).
        entries: ``(row name, interpreter, explained model)`` of every benchmark row; the explained model maps
            ``waveform (B, N)`` to logits ``(B, C)`` and has a ``frontend`` (its STFT draws the spectrograms).
        batch: a benchmark batch: ``waveform (B, N)``, ``target``, optional ``id``, ``sources (B, S, N)``,
            ``source_labels (B, S)``, ``source_targets (B, S, C)``.
        class_names: label names (index -> name).
        threshold: relevance threshold τ of every interpreter; ``None``: each interpreter's own (its ``interpret``
            default, e.g. a post-hoc model's ``hparams.threshold`` and ``interpret_options``), as the evaluator
            scores a trained model.
        clips: rows (at most the batch size).
        title: the page's title (default: "Listening table — every interpreter on the same clips").
    Returns:
        ``{"interpreters": [...], "has_sources": bool, "sample_rate": int, "rows": [...], "page": path}``;
        each row ``{"id", "true_label", "explained_class", "files": {column: file name},
        "figures": {interpreter: {"si_sdr": float | None, "prob_drop": float}}, "si_sdr_mixture": float | None}``.
    """
    if not entries:
        raise ValueError("listening table: no interpreter to listen to")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = min(int(clips), int(batch["waveform"].shape[0]))
    sub = {k: (v[:n] if torch.is_tensor(v) or isinstance(v, (list, tuple)) else v) for k, v in batch.items()}
    wave = sub["waveform"].to(device).float()
    target = sub["target"].to(device) if torch.is_tensor(sub["target"]) else torch.as_tensor(sub["target"]).to(device)
    multilabel = target.dim() > 1
    has_sources = "sources" in sub and "source_labels" in sub
    ids = [str(i) for i in sub.get("id", [f"clip{j:03d}" for j in range(n)])]
    frontend = getattr(entries[0][2], "frontend", None) or getattr(entries[0][1], "frontend", None)
    if frontend is None:
        raise ValueError(f"listening table: the explained model of {entries[0][0]!r} has no front-end to draw spectrograms")
    frontend = frontend.to(device)
    sr = int(frontend.config.sample_rate)

    def magnitude(x: torch.Tensor) -> torch.Tensor:
        return frontend.stft(x.to(device).float()).abs().cpu()

    rows: list[dict] = [{"id": ids[j], "files": {}, "figures": {}, "si_sdr_mixture": None} for j in range(n)]
    page = _PageWriter(folder, rows, class_names, sr, images, magnitude, device)
    page.mixtures(wave, target)
    explained = src = known = None
    for name, interp, model in entries:
        if hasattr(interp, "observe") and has_sources:  # the oracle reads the sources of the clips it explains
            interp.observe(sub)
        tau = {} if threshold is None else {"threshold": threshold}
        it = interp.interpret(wave, target=target if has_sources else None, **tau)
        if explained is None:
            explained = it.classes[:, :1].to(device)  # the first explained slot of every clip
            if has_sources:
                src, known = page.sources(sub, wave, explained)
        page.interpretations(name, it, model, wave, explained, src, known, multilabel)
    record = {"interpreters": [e[0] for e in entries], "has_sources": has_sources, "sample_rate": sr,
              "threshold": None if threshold is None else float(threshold), "rows": rows}
    (folder / "rows.json").write_text(json.dumps(record, indent=1))
    record["page"] = str(_write_page(folder, record, title or "Listening table — every interpreter on the same clips"))
    return record



class _PageWriter:
    """Writes a listening table's files (WAV, spectrogram PNG) and fills its ``rows`` (see :func:`listening_table`)."""

    def __init__(self, folder: Path, rows: list[dict], class_names: Sequence[str], sr: int, images: bool, magnitude, device):
        self.folder, self.rows, self.class_names, self.sr = folder, rows, class_names, sr
        self.images, self.magnitude, self.device = images, magnitude, device

    def _wav(self, name: str, audio: torch.Tensor) -> str:
        import soundfile as sf

        sf.write(self.folder / name, np.clip(audio.cpu().numpy(), -1, 1), self.sr, subtype="PCM_16")
        return name

    def mixtures(self, wave: torch.Tensor, target: torch.Tensor) -> None:
        """The mixtures (and their spectrograms) and each row's true label(s)."""
        for j, row in enumerate(self.rows):
            row["true_label"] = (", ".join(_label(self.class_names, int(c)) for c in torch.nonzero(target[j] > 0.5).flatten())
                                 if target.dim() > 1 else _label(self.class_names, int(target[j])))
            row["files"]["mixture"] = self._wav(f"{j:02d}_{_safe(row['id'])}_mixture.wav", wave[j])
        if self.images:
            mix_mag = self.magnitude(wave)
            for j, row in enumerate(self.rows):
                row["files"]["mixture_spectrogram"] = _spectrogram_png(self.folder / f"{j:02d}_mixture.png", mix_mag[j], "mixture")

    def sources(self, sub: dict, wave: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The true source of each row's explained class ``classes (B, 1)``: written, and the mixture's SI-SDR
        against it; returns ``(sources (B, N), known (B,))``."""
        from l2i.evaluation.ground_truth import class_sources, si_sdr

        st = sub.get("source_targets")
        src = class_sources(sub["sources"].to(self.device).float(), sub["source_labels"].to(self.device), classes,
                            None if st is None else st.to(self.device))[:, 0]
        N = min(src.shape[-1], wave.shape[-1])
        known = src.pow(2).sum(-1) > 0
        mix_sdr = si_sdr(wave[:, :N], src[:, :N])
        for j, row in enumerate(self.rows):
            if bool(known[j]):
                row["files"]["source"] = self._wav(f"{j:02d}_source.wav", src[j])
                row["si_sdr_mixture"] = float(mix_sdr[j])
                if self.images:
                    row["files"]["source_spectrogram"] = _spectrogram_png(
                        self.folder / f"{j:02d}_source.png", self.magnitude(src[j : j + 1])[0], "true source")
        return src, known

    def interpretations(self, name: str, it, model, wave: torch.Tensor, explained: torch.Tensor,
                        src: torch.Tensor | None, known: torch.Tensor | None, multilabel: bool) -> None:
        """One interpreter's column: its interpretation of every row (audio, spectrogram), the probability drop when
        it is removed and its SI-SDR against the true source."""
        from l2i.evaluation.common import classify_waveform, gather_classes, probabilities
        from l2i.evaluation.ground_truth import si_sdr

        classes = it.classes[:, :1].to(self.device)
        audio = it.audio[:, 0].to(self.device).float()
        task = "multilabel" if multilabel else "multiclass"
        original = classify_waveform(model, wave)
        removed = classify_waveform(model, it.residual[:, 0].to(self.device).float())
        drop = (gather_classes(probabilities(original, task), classes) - gather_classes(probabilities(removed, task), classes))[:, 0]
        sdr = None
        if src is not None:
            N = min(src.shape[-1], audio.shape[-1])
            sdr = si_sdr(audio[:, :N], src[:, :N])
        mags = self.magnitude(audio) if self.images else None
        for j, row in enumerate(self.rows):
            row.setdefault("explained_class", _label(self.class_names, int(explained[j, 0])))
            tag = f"{j:02d}_{_safe(name)}"
            row["files"][name] = self._wav(f"{tag}.wav", audio[j])
            if self.images:
                row["files"][f"{name}_spectrogram"] = _spectrogram_png(self.folder / f"{tag}.png", mags[j], name)
            row["figures"][name] = {
                "si_sdr": None if sdr is None or not bool(known[j]) else float(sdr[j]),
                "prob_drop": float(drop[j]),
                "explained_class": _label(self.class_names, int(it.classes[j, 0])),
            }

def _fmt_db(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f} dB"


def _write_page(folder: Path, record: dict, title: str) -> Path:
    from callbacks.gallery import card, image, page, player

    esc = html.escape
    sections = []
    for j, r in enumerate(record["rows"]):
        f = r["files"]
        cards = [card("mixture", "mixture", player(f"m{j}", f["mixture"])
                      + (image(f["mixture_spectrogram"], "mixture spectrogram") if "mixture_spectrogram" in f else ""))]
        if record["has_sources"]:
            body = (player(f"s{j}", f["source"]) + (image(f["source_spectrogram"], "source spectrogram")
                                                    if "source_spectrogram" in f else "")) if "source" in f else \
                "<div class='figs'>no source of this class in the clip</div>"
            cards.append(card("source", f"true source ({r['explained_class']})", body))
        for k, name in enumerate(record["interpreters"]):
            fig = r["figures"][name]
            figs = f"faithfulness (prob. drop) {fig['prob_drop']:.3f}"
            if record["has_sources"]:
                figs = f"SI-SDR {_fmt_db(fig['si_sdr'])} · " + figs
            if fig["explained_class"] != r["explained_class"]:
                figs += f" · explains {esc(fig['explained_class'])}"
            cards.append(card(name, name, player(f"i{j}-{k}", f[name])
                              + (image(f[f"{name}_spectrogram"], f"{name} spectrogram") if f"{name}_spectrogram" in f else "")
                              + f"<div class='figs'>{figs}</div>"))
        mix = f" · mixture SI-SDR {_fmt_db(r['si_sdr_mixture'])}" if record["has_sources"] else ""
        sections.append(f"<div class='clip'><h2>{esc(r['id'])}: explains {esc(r['explained_class'])}</h2>"
                        f"<div class='meta'>true label {esc(r['true_label'])}{mix}</div>"
                        f"<div class='cards'>{''.join(cards)}</div></div>")
    tau = ("each interpreter's own relevance threshold" if record["threshold"] is None
           else f"relevance threshold {record['threshold']:g}")
    intro = (f"<div class='meta'>Every interpreter's interpretation of the same clips ({tau}); SI-SDR against the true source where the data set knows it, faithfulness: "
             f"drop of the explained class's probability when the interpretation is removed.</div>")
    out = folder / "index.html"
    out.write_text(page(title, intro + "\n".join(sections)))
    return out


def listening_columns(record: dict) -> list[str]:
    """The W&B table's columns: id, labels, mixture (+ spectrogram), source (+ spectrogram, where known), then
    per interpreter its audio, spectrogram, SI-SDR (where sources are known) and probability drop."""
    cols = ["id", "true_label", "explained_class", "mixture", "mixture_spectrogram"]
    if record["has_sources"]:
        cols += ["source", "source_spectrogram", "si_sdr_mixture"]
    for name in record["interpreters"]:
        cols += [name, f"{name}_spectrogram"] + ([f"{name}_si_sdr"] if record["has_sources"] else []) + [f"{name}_prob_drop"]
    return cols


def log_listening(logger, record: dict, key: str = "listening") -> None:
    """Log the table to ``logger`` (a :class:`~callbacks.safe_logging.SafeWandbLogger`; its media are staged in
    the run's own folder) with ``wandb.Audio`` / ``wandb.Image`` cells read from the written files."""
    import wandb

    folder = Path(record["page"]).parent
    columns = listening_columns(record)

    def cell(col: str, r: dict):
        f = r["files"]
        if col in ("id", "true_label", "explained_class", "si_sdr_mixture"):
            return r.get(col)
        if col.endswith("_spectrogram"):
            return wandb.Image(str(folder / f[col])) if col in f else None
        if col.endswith("_si_sdr") or col.endswith("_prob_drop"):
            name, fig = col.rsplit("_si_sdr", 1)[0], "si_sdr"
            if col.endswith("_prob_drop"):
                name, fig = col[: -len("_prob_drop")], "prob_drop"
            return r["figures"][name][fig]
        if col in f:
            return wandb.Audio(str(folder / f[col]), caption=f"{col} · {r['id']}")
        return None

    logger.log_table(key=key, columns=columns, data=[[cell(c, r) for c in columns] for r in record["rows"]])
