"""InterpretationLogger: listen to the interpretations while an interpreter trains — in W&B and without it.

Every ``every_n_epochs`` validation epochs (and the last one), for a **fixed** set of clips (the first
``clips_per_class`` clips of every class of the validation set, chosen once, so the same clips are heard every
epoch), and once for the **final model** on the test set's fixed clips — at the end of ``trainer.fit`` when the
DataModule has a test split, and again at the end of ``trainer.test`` (which may have loaded the best
checkpoint) — the LightningModule's ``interpret(waveform, threshold=…)`` is called and, on rank zero only:

* a ``wandb.Table`` is logged under ``interpretations/<section>`` (``val-epoch<NNN>`` / ``test-final``) with the columns :data:`COLUMNS` — id, true
  label(s), classifier prediction, interpreter prediction, explained class, relevance bar chart, input / true
  source (where the data set knows it: the sum of the clip's sources of the explained class, else empty) /
  interpretation / residual audio (``wandb.Audio`` at the model's sample rate, clipped to [−1, 1], captions
  with the class and its relevance) and a spectrogram image (input | interpretation | activations);
* the same clips are written into the run folder, ``<run>/interpretations/<section>/`` (16-bit WAVs,
  PNGs, ``index.html``: a static gallery, one section per clip and one card per column, that fits a 1,280 px
  screen, with audio players, images and metrics — no server needed), and
  ``<run>/interpretations/index.html`` links every gallery. ``<run>`` is ``out_dir`` if given, else the W&B run
  folder (``…/wandb/offline-run-…``) when W&B works, else the trainer's ``log_dir`` / ``default_root_dir``.

W&B failures never stop training (a warning, then files only); see :mod:`callbacks.safe_logging`.
"""

from __future__ import annotations

import html
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from callbacks.gallery import STYLE, card, image, page, player
from callbacks.safe_logging import wandb_run
from callbacks.wandb_runs import staging_in

__all__ = ["InterpretationLogger", "COLUMNS", "select_clips", "write_gallery_index", "FINAL_TEST"]

#: the gallery section (and W&B table key ``interpretations/test-final``) of the final model on the test clips
FINAL_TEST = "test-final"

COLUMNS = [
    "id",
    "true_label",
    "classifier_prediction",
    "interpreter_prediction",
    "explained_class",
    "relevance",
    "input_audio",
    "source_audio",
    "interpretation_audio",
    "residual_audio",
    "spectrogram",
]

_STYLE = STYLE  # the galleries' shared look (callbacks.gallery)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))[:80] or "clip"


def _first_label(target: torch.Tensor) -> int:
    t = torch.as_tensor(target)
    if t.dim() == 0:
        return int(t)
    nz = torch.nonzero(t > 0.5).flatten()
    return int(nz[0]) if nz.numel() else -1


def select_clips(dataset, num_classes: int, clips_per_class: int = 1, max_clips: int = 16, max_scan: int | None = None) -> list[int]:
    """Indices of the first ``clips_per_class`` clips of every class (multilabel: by first label), in dataset
    order — deterministic, so the same clips are chosen every epoch and every run. At most ``max_clips``."""
    need = {c: clips_per_class for c in range(num_classes)}
    chosen: list[int] = []
    limit = len(dataset) if max_scan is None else min(len(dataset), max_scan)
    for i in range(limit):
        c = _first_label(dataset[i]["target"])
        if need.get(c, 0) > 0:
            need[c] -= 1
            chosen.append(i)
            if len(chosen) >= max_clips or not any(need.values()):
                break
    return sorted(chosen)


def _dataset_of(loaders) -> Any:
    if loaders is None:
        return None
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0] if loaders else None
    if isinstance(loaders, dict):
        loaders = next(iter(loaders.values()), None)
    return getattr(loaders, "dataset", None)


def write_gallery_index(root: Path) -> Path:
    """``root/index.html`` linking every section's gallery below ``root`` (``val-epoch<NNN>/index.html``, …), the
    final model's test section first."""
    pages = sorted((p.parent.name for p in root.glob("*/index.html")), key=lambda n: (n != FINAL_TEST, n))

    def describe(name: str) -> str:
        clips = len(list((root / name).glob("*_input.wav")))
        what = ("the trained model on fixed test clips" if name == FINAL_TEST
                else f"fixed validation clips after epoch {int(name.rsplit('epoch', 1)[-1])}" if "epoch" in name else name)
        return f"{what}, {clips} clip(s)"

    items = "\n".join(f'<li><a href="{html.escape(p)}/index.html">{html.escape(p)}</a>: {html.escape(describe(p))}</li>'
                      for p in pages)
    intro = ("<p>Each page plays, for a fixed set of clips, the input, the interpretation of the explained class (the "
             "chosen components' share of the input, inverted with the input's phase) and the residual (the rest), "
             "with the spectrograms and each component's relevance. Sections:</p>")
    out = root / "index.html"
    out.write_text(f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>interpretations</title>{_STYLE}</head>"
                   f"<body><h1>Interpretations</h1>{intro}<ul>{items}</ul></body></html>\n")
    return out


class InterpretationLogger(Callback):
    """Listenable interpretations of a fixed clip set, to W&B (table) and to a static HTML gallery.

    Args:
        every_n_epochs: log every N validation epochs (and at the last epoch).
        clips_per_class: clips of each class in the fixed set.
        max_clips: upper bound on the fixed set.
        threshold: relevance threshold passed to ``interpret`` (default: the module's own default).
        out_dir: folder of the galleries (default: the run folder, see the module docstring).
        log_to_wandb: log the ``wandb.Table`` when a W&B run is usable.
        on_test: log the final model on the test clips (section ``test-final``): at the end of ``trainer.fit``
            when the DataModule has a test split, and at the end of ``trainer.test`` (the tested weights, e.g.
            the best checkpoint, replace the section).
        images: draw the spectrogram / relevance PNGs (matplotlib).
        max_scan: clips looked at when choosing the fixed set (default: the whole split).
    """

    def __init__(
        self,
        every_n_epochs: int = 5,
        clips_per_class: int = 1,
        max_clips: int = 16,
        threshold: float | None = None,
        out_dir: str | None = None,
        log_to_wandb: bool = True,
        on_test: bool = True,
        images: bool = True,
        max_scan: int | None = None,
    ):
        super().__init__()
        if every_n_epochs < 1 or clips_per_class < 1 or max_clips < 1:
            raise ValueError("InterpretationLogger: every_n_epochs, clips_per_class and max_clips must be >= 1")
        self.every_n_epochs, self.clips_per_class, self.max_clips = int(every_n_epochs), int(clips_per_class), int(max_clips)
        self.threshold, self.out_dir, self.log_to_wandb = threshold, out_dir, bool(log_to_wandb)
        self.on_test, self.images, self.max_scan = bool(on_test), bool(images), max_scan
        self._clips: dict[str, dict] = {}
        self.galleries: list[Path] = []

    # -- the fixed clip set ----------------------------------------------------------------------------
    def _fixed_clips(self, trainer, pl_module, stage: str) -> dict | None:
        if stage in self._clips:
            return self._clips[stage]
        dataset = _dataset_of(trainer.val_dataloaders if stage == "val" else trainer.test_dataloaders)
        if dataset is None and stage == "test":  # at the end of fit: the DataModule's test split, if it has one
            dataset = self._test_dataset(trainer)
            if dataset is None:
                return None
        if dataset is None:
            warnings.warn(f"InterpretationLogger: no {stage} dataset to choose clips from", RuntimeWarning, stacklevel=2)
            return None
        num_classes = int(getattr(pl_module, "num_classes", 0) or len(self._class_names(trainer, pl_module)) or 1)
        idx = select_clips(dataset, num_classes, self.clips_per_class, self.max_clips, self.max_scan)
        items = [dataset[i] for i in idx]
        if not items:
            return None
        n = min(int(torch.as_tensor(it["waveform"]).shape[-1]) for it in items)
        clips = {
            "waveform": torch.stack([torch.as_tensor(it["waveform"]).float()[..., :n] for it in items]),
            "target": [torch.as_tensor(it["target"]) for it in items],
            "id": [str(it.get("id", f"{stage}-{i:05d}")) for it, i in zip(items, idx)],
        }
        if all("sources" in it and "source_labels" in it for it in items):  # the data set knows the sources
            clips["sources"] = [torch.as_tensor(it["sources"]).float()[..., :n] for it in items]
            clips["source_labels"] = [torch.as_tensor(it["source_labels"]) for it in items]
            if all("source_targets" in it for it in items):
                clips["source_targets"] = [torch.as_tensor(it["source_targets"]) for it in items]
        self._clips[stage] = clips
        return clips

    @staticmethod
    def _test_dataset(trainer) -> Any:
        """The test dataset of the trainer's DataModule, or ``None`` when it has no test split (a DataModule
        without one, or a split that is not configured: nothing to show, said once as a warning)."""
        dm = getattr(trainer, "datamodule", None)
        if dm is None:
            return None
        stages = getattr(dm, "stages", None)
        if stages is not None and "test" not in stages:
            return None
        try:
            dm.setup("test")
            return _dataset_of(dm.test_dataloader())
        except Exception as err:  # noqa: BLE001 - the gallery never stops a finished fit
            warnings.warn(f"InterpretationLogger: no test clips for the final model's gallery "
                          f"({type(err).__name__}: {err})", RuntimeWarning, stacklevel=2)
            return None

    @staticmethod
    def _class_names(trainer, pl_module) -> list[str]:
        found = []
        for obj in (pl_module, getattr(trainer, "datamodule", None)):
            names = getattr(obj, "class_names", None)
            if names:
                found.append(list(names))
        for names in found:  # prefer real names over the default "0", "1", … of a module built without them
            if names != [str(i) for i in range(len(names))]:
                return names
        return found[0] if found else []

    # -- hooks -------------------------------------------------------------------------------------------
    # at *_end (after every epoch-end hook) so the page and table see this epoch's metrics
    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        epoch = int(trainer.current_epoch)
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        if (epoch + 1) % self.every_n_epochs != 0 and not last:
            return
        self.log_interpretations(trainer, pl_module, "val")

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.on_test and not trainer.interrupted:
            self.log_interpretations(trainer, pl_module, "test")

    def on_test_end(self, trainer, pl_module) -> None:
        if self.on_test:
            self.log_interpretations(trainer, pl_module, "test")

    # -- the work ----------------------------------------------------------------------------------------
    def run_dir(self, trainer) -> Path:
        if self.out_dir:
            return Path(self.out_dir)
        run = wandb_run(trainer) if self.log_to_wandb else None
        if run is not None and getattr(run, "dir", None):
            return Path(run.dir).parent  # …/wandb/<offline-run-…>/ (files/ is W&B's own)
        return Path(trainer.log_dir or trainer.default_root_dir)

    @torch.no_grad()
    def log_interpretations(self, trainer, pl_module, stage: str) -> Path | None:
        """Interpret the fixed clips of ``stage`` (``val``: section ``val-epoch<NNN>``; ``test``: the final model,
        section ``test-final``) and write / log them; returns the gallery page (rank zero) or None."""
        if not trainer.is_global_zero:
            return None
        clips = self._fixed_clips(trainer, pl_module, stage)
        if clips is None:
            return None
        was_training = pl_module.training
        pl_module.eval()
        try:
            wave = clips["waveform"].to(pl_module.device)
            kwargs = {} if self.threshold is None else {"threshold": self.threshold}
            interp = pl_module.interpret(wave, **kwargs)
        finally:
            pl_module.train(was_training)
        interp = interp.detach().to("cpu")
        names = self._class_names(trainer, pl_module)
        epoch = int(trainer.current_epoch)
        section = FINAL_TEST if stage == "test" else f"{stage}-epoch{epoch:03d}"
        folder = self.run_dir(trainer) / "interpretations" / section
        folder.mkdir(parents=True, exist_ok=True)
        frontend = getattr(pl_module, "frontend", None)
        rows = self._write_files(folder, clips, interp, names, frontend, wave.cpu())
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
        title = (f"the final model (after {epoch} epoch(s)) on the test clips" if stage == "test"
                 else f"{stage}, epoch {epoch}")
        page = self._write_page(folder, rows, title, metrics)
        write_gallery_index(folder.parent)
        self.galleries.append(page)
        if self.log_to_wandb:
            self._log_wandb(trainer, section, rows, interp.sample_rate)
        return page

    def _label(self, names: list[str], c: int) -> str:
        return names[c] if 0 <= c < len(names) else str(c)

    def _prediction(self, logits: torch.Tensor | None, names: list[str], multilabel: bool) -> str:
        if logits is None:
            return ""
        if multilabel:
            p = logits.float().sigmoid()
            on = [f"{self._label(names, int(c))} ({float(p[c]):.2f})" for c in torch.nonzero(p > 0.5).flatten()]
            return ", ".join(on) or "(none)"
        p = logits.float().softmax(-1)
        c = int(p.argmax())
        return f"{self._label(names, c)} ({float(p[c]):.2f})"

    def _write_files(self, folder: Path, clips: dict, interp, names: list[str], frontend, wave: torch.Tensor) -> list[dict]:
        import soundfile as sf

        sr = int(interp.sample_rate or getattr(getattr(frontend, "config", None), "sample_rate", 16000))
        multilabel = clips["target"][0].dim() > 0
        # STFT only (the window follows the input's device; the clips are on the CPU here)
        magnitude = frontend.stft(wave).abs() if frontend is not None and hasattr(frontend, "stft") else None
        rows = []
        for i, cid in enumerate(clips["id"]):
            base = _safe(cid)
            target = clips["target"][i]
            true = (", ".join(self._label(names, int(c)) for c in torch.nonzero(target > 0.5).flatten())
                    if multilabel else self._label(names, int(target)))
            inp = folder / f"{base}_input.wav"
            sf.write(inp, np.clip(wave[i].numpy(), -1, 1), sr, subtype="PCM_16")
            for j in range(interp.classes.shape[1]):
                c = int(interp.classes[i, j])
                if c < 0:
                    continue
                cname = self._label(names, c)
                tag = f"{base}_{_safe(cname)}"
                rel = interp.relevance[i, c]
                chosen = interp.components[i, c]
                files = {"input_audio": inp.name}
                source = self._source(clips, i, c)
                if source is not None:
                    path = folder / f"{tag}_source.wav"
                    sf.write(path, np.clip(source.numpy(), -1, 1), sr, subtype="PCM_16")
                    files["source_audio"] = path.name
                for key, audio in (("interpretation_audio", interp.audio[i, j]), ("residual_audio", interp.residual[i, j])):
                    path = folder / f"{tag}_{key.split('_')[0]}.wav"
                    sf.write(path, np.clip(audio.numpy(), -1, 1), sr, subtype="PCM_16")
                    files[key] = path.name
                if self.images:
                    files["spectrogram"] = self._spectrogram_png(folder / f"{tag}_spectrogram.png", magnitude, interp, i, j, cname,
                                                                 sr, getattr(getattr(frontend, "config", None), "hop_length", None))
                    files["relevance"] = self._relevance_png(folder / f"{tag}_relevance.png", rel, chosen, cname)
                top = torch.argsort(rel, descending=True)[:3]
                rows.append({
                    "id": cid,
                    "true_label": true,
                    "classifier_prediction": self._prediction(interp.classifier_logits[i] if interp.classifier_logits is not None else interp.logits[i], names, multilabel),
                    "interpreter_prediction": self._prediction(interp.logits[i], names, multilabel),
                    "explained_class": cname,
                    "chosen": int(chosen.sum()),
                    "top_components": ", ".join(f"k{int(k)}={float(rel[k]):.2f}" for k in top),
                    "files": files,
                    "sample_rate": sr,
                    "input": wave[i].numpy(),
                    "source": None if source is None else source.numpy(),
                    "interpretation": interp.audio[i, j].numpy(),
                    "residual": interp.residual[i, j].numpy(),
                })
        return rows

    @staticmethod
    def _source(clips: dict, i: int, c: int) -> torch.Tensor | None:
        """The true source of class ``c`` in clip ``i`` (the sum of its sources labelled ``c``), or ``None`` where
        the data set has no sources or the clip none of that class."""
        if "sources" not in clips:
            return None
        from l2i.evaluation.ground_truth import class_sources

        targets = clips.get("source_targets")
        src = class_sources(clips["sources"][i][None], clips["source_labels"][i][None], torch.tensor([[c]]),
                            None if targets is None else targets[i][None])[0, 0]
        return src if float(src.pow(2).sum()) > 0 else None

    @staticmethod
    def _spectrogram_png(path: Path, magnitude, interp, i: int, j: int, cname: str, sample_rate: int | None = None,
                         hop_length: int | None = None) -> str:
        """Input, interpretation and activations side by side; time in seconds and frequency in kHz when the
        rate and hop are known (as the example PNGs), else frames and bins."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        panels = []
        if magnitude is not None:
            mag = magnitude[i]
            panels.append(("input log(1+|X|)", torch.log1p(mag)))
            m = interp.mask[i, j]
            if m.shape == mag.shape:
                panels.append((f"interpretation ({cname})", torch.log1p(m * mag)))
        else:
            panels.append((f"mask ({cname})", interp.mask[i, j]))
        panels.append(("activations H", interp.activations[i]))
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3), dpi=80)
        for ax, (title, img) in zip(np.atleast_1d(axes), panels):
            frames = img.shape[-1]
            seconds = frames * hop_length / sample_rate if sample_rate and hop_length else None
            spectral = title != "activations H"
            top = (sample_rate / 2000.0) if (seconds is not None and spectral) else img.shape[0]
            extent = None if seconds is None else (0.0, seconds, 0.0, top)
            ax.imshow(img.numpy(), origin="lower", aspect="auto", cmap="magma", extent=extent)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("time (s)" if seconds is not None else "frame")
            ax.set_ylabel("frequency (kHz)" if (seconds is not None and spectral) else ("component k" if not spectral else "bin"))
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path.name

    @staticmethod
    def _relevance_png(path: Path, rel: torch.Tensor, chosen: torch.Tensor, cname: str) -> str:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4, 2.2), dpi=80)
        k = np.arange(rel.numel())
        colors = np.where(chosen.numpy(), "tab:red", "tab:gray")
        ax.bar(k, rel.numpy(), color=colors)
        ax.set_title(f"relevance for {cname} (red: chosen)", fontsize=9)
        ax.set_xlabel("component k")
        ax.set_ylim(0, 1.05)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path.name

    @staticmethod
    def _write_page(folder: Path, rows: list[dict], title: str, metrics: dict[str, float]) -> Path:
        """One section per clip and explained class: what the models said, then one card per column (input,
        true source where known, interpretation with its spectrogram, residual, relevance)."""
        esc = html.escape
        sections = []
        for r_i, r in enumerate(rows):
            f = r["files"]
            cards = [card("input", "input", player(f"a{r_i}-input_audio", f["input_audio"]))]
            if "source_audio" in f:
                cards.append(card("source", f"true source ({r['explained_class']})", player(f"a{r_i}-source_audio", f["source_audio"])))
            cards.append(card("interpretation", f"interpretation ({r['explained_class']})",
                              player(f"a{r_i}-interpretation_audio", f["interpretation_audio"])
                              + (image(f["spectrogram"], "spectrogram") if "spectrogram" in f else ""), wide="spectrogram" in f))
            cards.append(card("residual", "residual (input minus interpretation)", player(f"a{r_i}-residual_audio", f["residual_audio"])))
            cards.append(card("relevance", f"relevance: {r['chosen']} chosen",
                              f"<div class='figs'>{esc(r['top_components'])}</div>"
                              + (image(f["relevance"], "relevance") if "relevance" in f else "")))
            sections.append(
                f"<div class='clip'><h2>{esc(r['id'])}: explains {esc(r['explained_class'])}</h2>"
                f"<div class='meta'>true label {esc(r['true_label'])} · classifier {esc(r['classifier_prediction'])}"
                f" · interpreter {esc(r['interpreter_prediction'])}</div><div class='cards'>{''.join(cards)}</div></div>")
        body = "\n".join(sections)
        if metrics:
            body += ("<h2>Metrics</h2><details open><summary>the trainer's latest metrics</summary>"
                     "<table><tr><th>metric</th><th>value</th></tr>"
                     + "".join(f"<tr><td>{esc(k)}</td><td>{v:.4g}</td></tr>" for k, v in sorted(metrics.items()))
                     + "</table></details>")
        out = folder / "index.html"
        out.write_text(page(f"Interpretations — {title}", body))
        (folder / "rows.json").write_text(json.dumps([{k: v for k, v in r.items() if k not in ("input", "source", "interpretation", "residual")} for r in rows], indent=1))
        return out

    def _log_wandb(self, trainer, section: str, rows: list[dict], sample_rate: int | None) -> None:
        run = wandb_run(trainer)
        if run is None:
            return
        try:
            import wandb

            table = wandb.Table(columns=COLUMNS)
            for r in rows:
                sr = int(r["sample_rate"])
                cap = f"{r['explained_class']} · {r['top_components']}"
                folder_files = r["files"]
                table.add_data(
                    r["id"], r["true_label"], r["classifier_prediction"], r["interpreter_prediction"], r["explained_class"],
                    wandb.Image(str(self._gallery_file(trainer, section, folder_files.get("relevance")))) if "relevance" in folder_files else None,
                    wandb.Audio(np.clip(r["input"], -1, 1), sample_rate=sr, caption=f"input · true {r['true_label']}"),
                    None if r["source"] is None else wandb.Audio(np.clip(r["source"], -1, 1), sample_rate=sr,
                                                                 caption=f"true source · {r['explained_class']}"),
                    wandb.Audio(np.clip(r["interpretation"], -1, 1), sample_rate=sr, caption=f"interpretation · {cap}"),
                    wandb.Audio(np.clip(r["residual"], -1, 1), sample_rate=sr, caption=f"residual · {cap}"),
                    wandb.Image(str(self._gallery_file(trainer, section, folder_files.get("spectrogram")))) if "spectrogram" in folder_files else None,
                )
            with staging_in(run):  # the table's WAVs and PNGs are staged in the run's own folder
                run.log({f"interpretations/{section}": table, "trainer/global_step": trainer.global_step})
        except Exception as err:  # W&B must never stop training
            from callbacks.safe_logging import SafeWandbLogger

            for logger in trainer.loggers:
                if isinstance(logger, SafeWandbLogger):
                    logger._fail("log the interpretation table", err)
                    return
            warnings.warn(f"InterpretationLogger: W&B table not logged ({type(err).__name__}: {err})", RuntimeWarning, stacklevel=2)

    def _gallery_file(self, trainer, section: str, name: str | None) -> Path:
        return self.galleries[-1].parent / name if name else Path()
