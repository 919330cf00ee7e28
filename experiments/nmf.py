"""Stage 1: learn the NMF dictionary of a data set — ``l2i nmf --config experiments/<dataset>/nmf.yaml``.

Clips stream from a DataModule split through the front-end (``V = log1p|X|``, on the device) into frame
mini-batches of ``nmf.batch_frames`` frames, and :meth:`l2i.nmf.NMF.fit_stream` learns ``W (F, K)`` from
them (online NMF: the data set is never held in memory unless it fits in ``cache_mb``). Output, in the
folder of ``out``:

* ``dictionary.pt`` — the :class:`~l2i.dictionary.DictionaryArtifact` (W, front-end, settings, objective);
* ``dictionary.png`` — the dictionary's columns as an image (frequency × component);
* ``reconstructions.png`` — a few clips: V, W H and the relative error;
* ``dictionary.yaml`` — the resolved config.

The same work is the pipeline stage ``dictionary`` (:func:`experiments.stages.dictionary.dictionary_stage`), which takes the front-end
from the classifier checkpoint so dictionary and classifier always match.

**Its config.** An ``l2i nmf`` config is not a LightningCLI config: it has no model and no trainer (nothing is
fitted by a Trainer), but a DataModule (``data``), a front-end, :class:`NMFSettings` and the job's options. So it
is not read by :func:`experiments.cli.instantiate`; its files are read as every other config file is, by
:func:`experiments.cli.read_config` (the path found from any folder, the ``data:`` / ``frontend:`` files it names
read in), and their text goes to its schema (:func:`build_parser`: the DataModule's and ``NMFSettings``'
signatures), which composes several ``--config`` in order and types the ``--key VALUE`` overrides as ``l2i fit``
types its own (:func:`read_nmf_config`). The pipeline stage reads its settings the same way (``read_config``,
then the schema).
"""

from __future__ import annotations

import contextlib
import errno
import math
import shutil
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from l2i.dictionary import NOISE_LABEL, DictionaryArtifact
from l2i.evaluation.ground_truth import class_sources
from l2i.frontend import AudioFrontEnd, FrontEndConfig
from l2i.nmf import NMF, NMFResult, concat_dictionaries, fit_weak_labels, nmf_objective
from l2i.storage import check_writable

__all__ = ["NMFSettings", "learn_dictionary", "main", "build_parser", "read_nmf_config", "PER_CLASS_SOURCES"]

#: what the class blocks of ``per_class_components`` learn from (see :class:`NMFSettings`)
PER_CLASS_SOURCES = ("mixture", "sources", "single_label", "weak_labels")


@dataclass
class NMFSettings:
    """The NMF part of the config (see :class:`l2i.nmf.NMF`).

    Args:
        n_components: K, columns of the dictionary.
        beta: 2 (Euclidean, the authors' choice) or 1 (KL).
        sparsity: λ of the L1 penalty on the activations (per frame and component: objective
            ``0.5 ||V - W H||² + λ Σ H``).
        solver: ``auto`` (HALS for β = 2, MU for β = 1), ``hals`` or ``mu``.
        epochs: passes over the clips.
        batch_frames: frames per NMF mini-batch (the unit of the online update).
        forget_factor: weight left to the statistics after one pass (online NMF), in (0, 1].
        inner_iters: HALS sweeps per update.
        transform_iters: cap of the activation solve per mini-batch.
        seed: initialisation seed.
        dtype: ``float32`` or ``float64``.
        noise_components: size of a block of components learnt first on noise-only material (the batch
            key ``noise_key``, e.g. the synthetic set's ``background``) and then kept fixed while
            ``n_components`` more are learnt on the clips (the SONYC-UST setup); 0 = none. The dictionary
            then has ``noise_components + n_components`` columns, noise first, labelled in ``meta``.
        noise_key: batch key of the noise-only waveforms, or ``unlabelled``: the clips with no class present
            (their background, e.g. SONYC-UST's clips without any tag: the authors' noise components).
        per_class_components: when > 0, learn that many components per class, each block on the clips
            of its class only (multiclass target, or class present for multilabel), and concatenate them
            (after the noise block); ``n_components`` is then unused and ``meta["labels"]`` names the class
            of every column.
        per_class_source: what each class block learns from: ``mixture`` (the clips of the class, as they
            are: works on any labelled data) or ``sources`` (the isolated events of the class, batch keys
            ``sources (B, S, N)`` + ``source_labels (B, S)``: data sets with known sources such as the
            synthetic default; the blocks then do not model the other classes' events that share the clips),
            ``single_label`` (the clips whose only label is the class: the authors' SONYC-UST dictionary, learnt
            from labels alone; a class without such clips falls back to the clips that contain it, with a
            warning) or ``weak_labels`` (one NMF of all clips whose activations of class c's block are held at
            zero on clips without c, :func:`l2i.nmf.fit_weak_labels`; labels alone, multilabel clips welcome).
            A class without any clip gets no block: a warning names it and ``meta["classes_without_block"]``
            lists it.
        shared_components: ``weak_labels`` only: columns every clip may use (what all classes share: room,
            onsets, the common part of the spectra), labelled ``shared``, before the class blocks.
        weak_label_iters: multiplicative-update passes of the ``weak_labels`` fit (all clips' frames in memory).
    """

    n_components: int = 64
    beta: int = 2
    sparsity: float = 0.0
    solver: str = "auto"
    epochs: int = 3
    batch_frames: int = 8192
    forget_factor: float = 0.7
    inner_iters: int = 3
    transform_iters: int = 50
    seed: int = 0
    dtype: str = "float32"
    noise_components: int = 0
    noise_key: str = "background"
    per_class_components: int = 0
    per_class_source: str = "mixture"
    shared_components: int = 0
    weak_label_iters: int = 150

    def build(self, device: torch.device | None = None, progress: bool = False, n_components: int | None = None) -> NMF:
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"nmf.dtype must be float32 or float64, got {self.dtype!r}")
        if self.batch_frames < 1 or self.epochs < 1:
            raise ValueError(f"nmf.batch_frames and nmf.epochs must be >= 1, got {self.batch_frames}, {self.epochs}")
        if self.per_class_source not in PER_CLASS_SOURCES:
            raise ValueError(f"nmf.per_class_source must be one of {list(PER_CLASS_SOURCES)}, got {self.per_class_source!r}")
        if self.noise_components < 0 or self.per_class_components < 0 or self.shared_components < 0:
            raise ValueError(f"nmf.noise_components, nmf.per_class_components and nmf.shared_components must be >= 0, "
                             f"got {self.noise_components}, {self.per_class_components}, {self.shared_components}")
        if self.shared_components and (self.per_class_source != "weak_labels" or not self.per_class_components):
            raise ValueError("nmf.shared_components needs per_class_components > 0 and per_class_source: weak_labels")
        return NMF(
            self.n_components if n_components is None else n_components,
            beta=self.beta,
            sparsity=self.sparsity,
            solver=self.solver,
            inner_iters=self.inner_iters,
            transform_iters=self.transform_iters,
            seed=self.seed,
            dtype=getattr(torch, self.dtype),
            device=device,
            progress=progress,
        )


# ---------------------------------------------------------------------------------------------------------
# clips -> frames
# ---------------------------------------------------------------------------------------------------------
def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available; use device: auto or cpu")
    return dev


def clip_loader(datamodule: Any, split: str, num_clips: int | None, batch_size: int | None = None, seed: int = 0,
                shard: tuple[int, int] | None = None):
    """Batches of clips of a DataModule split. ``dataset(split, size)`` when the module has it (the
    synthetic set, including its ``nmf`` split), else its ``<split>_dataloader()``.

    ``shard = (rank, world_size)``: this process's share of the clips (distributed dictionary learning):
    a ``DistributedSampler`` over the dataset, or every ``world_size``-th batch of the DataModule's loader
    truncated to the same count on every rank (so all ranks reduce the same number of mini-batches)."""
    from torch.utils.data import DataLoader, DistributedSampler

    bs = int(batch_size or getattr(datamodule, "batch_size", 32) or 32)
    if hasattr(datamodule, "dataset") and callable(datamodule.dataset):
        ds = datamodule.dataset(split, num_clips) if num_clips else datamodule.dataset(split)
        if len(ds) == 0:
            raise ValueError(f"split {split!r} has no clips (check data.init_args.num_{split} / --num_clips / --split)")
        shuffle = split in ("train", "nmf")
        if shard is not None:
            sampler = DistributedSampler(ds, num_replicas=shard[1], rank=shard[0], shuffle=shuffle, seed=seed)
            return DataLoader(ds, batch_size=bs, sampler=sampler)
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(ds, batch_size=bs, shuffle=shuffle, generator=gen)
    name = {"train": "train_dataloader", "val": "val_dataloader", "test": "test_dataloader"}.get(split)
    if name is None:
        raise ValueError(f"split must be train, val or test for {type(datamodule).__name__}, got {split!r}")
    if hasattr(datamodule, "prepare_data"):
        datamodule.prepare_data()
    if hasattr(datamodule, "setup"):
        datamodule.setup("fit" if split in ("train", "val") else "test")
    loader = getattr(datamodule, name)()
    if shard is None:
        return loader
    rank, world = shard
    usable = (len(loader) // world) * world

    class _Shard:
        def __iter__(self):
            for i, batch in enumerate(loader):
                if i >= usable:
                    break
                if i % world == rank:
                    yield batch

    return _Shard()


def distributed_shard() -> tuple[int, int] | None:
    """``(rank, world_size)`` when launched by torchrun / SLURM with more than one process (the process group
    is initialised here: NCCL on GPUs, gloo on CPUs), else None."""
    import os

    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _batch_spectra(batch: Any, frontend: AudioFrontEnd, device: torch.device, key: str = "waveform") -> torch.Tensor:
    """A batch of clips -> V = log1p|X| ``(B, F, T)`` on ``device`` (``key``: which waveform of the batch)."""
    if isinstance(batch, dict):
        if key not in batch:
            raise ValueError(f"batches have no {key!r} waveform (keys: {sorted(batch)})")
        wav = batch[key]
    else:
        wav = batch[0]
    sr = batch.get("sample_rate") if isinstance(batch, dict) else None
    if isinstance(sr, torch.Tensor):
        sr = int(sr.flatten()[0])
    elif isinstance(sr, (list, tuple)):
        sr = int(sr[0])
    with torch.no_grad():
        wav = frontend.prepare(wav.to(device), sr)
        return frontend.nmf_spectrogram(wav)


class NoClipsError(ValueError):
    """A :class:`FrameStream` whose selection kept no clip (e.g. a class with no clip in the split)."""


class FrameStream:
    """Re-iterable stream of NMF mini-batches ``(F, n)`` (``n ≈ batch_frames``) from clips.

    The first pass is cached in memory while it stays under ``cache_mb`` (later passes then skip audio
    generation and the STFT); past that, every pass streams the clips again.
    """

    def __init__(self, loader, frontend: AudioFrontEnd, device: torch.device, batch_frames: int, max_clips: int | None = None, cache_mb: float = 1024.0, key: str = "waveform", select=None):
        self.loader, self.frontend, self.device, self.key = loader, frontend, device, key
        self.select = select  # batch -> bool mask (B,) of the clips to keep (None: all)
        self.batch_frames, self.max_clips, self.cache_mb = int(batch_frames), max_clips, float(cache_mb)
        self.cache: list[torch.Tensor] | None = None
        self.clips = 0
        self.frames = 0
        self.examples: torch.Tensor | None = None  # (B, F, T) of the first batch, for the figures

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.cache is not None:
            yield from self.cache
            return
        caching, cached, nbytes = self.cache_mb > 0, [], 0
        clips = frames = scanned = 0
        buf: list[torch.Tensor] = []
        held = 0
        for batch in self.loader:
            V = _batch_spectra(batch, self.frontend, self.device, self.key)  # (B, F, T)
            if self.max_clips is not None:
                V = V[: max(self.max_clips - scanned, 0)]
            if V.shape[0] == 0:
                break
            scanned += V.shape[0]
            if self.select is not None:
                V = V[self.select(batch)[: V.shape[0]].to(V.device)]
                if V.shape[0] == 0:
                    continue
            if self.examples is None:
                self.examples = V[:4].detach().cpu()
            clips += V.shape[0]
            buf.append(V.permute(1, 0, 2).reshape(V.shape[1], -1))
            held += buf[-1].shape[1]
            while held >= self.batch_frames:
                allf = torch.cat(buf, dim=1)
                out, rest = allf[:, : self.batch_frames].contiguous(), allf[:, self.batch_frames :].contiguous()
                buf, held = ([rest] if rest.shape[1] else []), rest.shape[1]
                frames += out.shape[1]
                if caching:
                    nbytes += out.numel() * out.element_size()
                    caching = nbytes <= self.cache_mb * 2**20
                    if caching:
                        cached.append(out)
                    else:
                        cached = []
                yield out
            if self.max_clips is not None and scanned >= self.max_clips:
                break
        if held:
            out = torch.cat(buf, dim=1)
            frames += out.shape[1]
            if caching:
                nbytes += out.numel() * out.element_size()
                caching = nbytes <= self.cache_mb * 2**20
                if caching:
                    cached.append(out)
                else:
                    cached = []
            yield out
        if clips == 0:
            what = "" if self.select is None else " of the selected class"
            raise NoClipsError(f"the data split yielded no clips{what} (check data settings / num_clips)")
        self.clips, self.frames = clips, frames
        if caching:
            self.cache = cached


# ---------------------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------------------
def _class_mask(c: int, single_label: bool = False):
    """batch -> bool mask of the clips of class ``c`` (multiclass index or multi-hot target); with
    ``single_label`` only the clips whose one label is ``c``."""

    def select(batch) -> torch.Tensor:
        target = batch.get("target") if isinstance(batch, dict) else None
        if target is None:
            raise ValueError("per_class_components needs batches with a 'target'")
        if target.dim() != 2:
            return target == c
        keep = target[:, c] > 0
        return keep & ((target > 0).sum(-1) == 1) if single_label else keep

    return select


def _unlabelled(batch) -> torch.Tensor:
    """batch -> bool mask of the clips with no class present (multi-hot target all zero)."""
    target = batch.get("target") if isinstance(batch, dict) else None
    if target is None or target.dim() != 2:
        raise ValueError("nmf.noise_key 'unlabelled' needs multilabel batches with a multi-hot 'target'")
    return (target > 0).sum(-1) == 0


class _ClassSources:
    """Re-iterable view of a loader whose batches carry, as ``waveform``, the sum of the isolated sources of
    class ``c`` (``sources (B, S, N)``, ``source_labels (B, S)``), and a ``has_class`` mask of the clips that
    hold one."""

    def __init__(self, loader, c: int):
        self.loader, self.c = loader, int(c)

    def __iter__(self):
        for batch in self.loader:
            if not isinstance(batch, dict) or "sources" not in batch or "source_labels" not in batch:
                got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
                raise ValueError("nmf.per_class_source 'sources' needs batches with 'sources' and 'source_labels' "
                                 f"(data with known sources, e.g. the synthetic set); got {got}")
            labels = batch["source_labels"]
            classes = torch.full((labels.shape[0], 1), self.c, dtype=torch.long, device=labels.device)
            yield {**batch, "waveform": class_sources(batch["sources"], labels, classes)[:, 0],
                   "has_class": (labels == self.c).any(1)}


def _class_names(datamodule) -> list[str]:
    num_classes = getattr(datamodule, "num_classes", None)
    if not num_classes:
        raise ValueError(f"per_class_components needs a DataModule with num_classes ({type(datamodule).__name__} has none)")
    return list(getattr(datamodule, "class_names", None) or [str(c) for c in range(int(num_classes))])


def _fit_per_class(datamodule, settings: NMFSettings, fe: AudioFrontEnd, dev, split, num_clips, cache_mb, progress):
    """One streaming fit of ``per_class_components`` per class -> ``({class name: W_c (F, K_c)}, labels, notes)``.

    ``notes``: ``classes_without_block`` (no clip of the class in the split: no block, warned) and, for
    ``single_label``, ``single_label_fallback`` (no single-label clip: the block learnt on the clips that
    contain the class, warned)."""
    names = _class_names(datamodule)
    blocks: dict[str, torch.Tensor] = {}
    missing, fallback = [], []
    for c, name in enumerate(names):
        tries = [True, False] if settings.per_class_source == "single_label" else [False]
        for single in tries:
            loader = clip_loader(datamodule, split, num_clips, seed=settings.seed)
            select = _class_mask(c, single_label=single)
            if settings.per_class_source == "sources":
                loader, select = _ClassSources(loader, c), (lambda batch: batch["has_class"])
            st = FrameStream(loader, fe, dev, settings.batch_frames, max_clips=num_clips, cache_mb=cache_mb / len(names),
                             select=select)
            model = settings.build(dev, progress=progress, n_components=settings.per_class_components)
            try:
                blocks[name] = model.fit_stream(lambda st=st: st, epochs=settings.epochs, forget_factor=settings.forget_factor).dictionary
            except NoClipsError:
                continue
            if single is False and settings.per_class_source == "single_label":
                fallback.append(name)
                warnings.warn(f"nmf: class {name!r} has no single-label clip in split {split!r} (first {num_clips} clips); "
                              "its block learns from the clips that contain it", stacklevel=2)
            break
        else:
            missing.append(name)
            warnings.warn(f"nmf: class {name!r} has no clip in split {split!r} (first {num_clips} clips): no block for it "
                          "(its interpretation will have no class components)", stacklevel=2)
    if not blocks:
        raise ValueError(f"nmf: no class has a clip in split {split!r} (first {num_clips} clips): nothing to learn class blocks from")
    labels = [n for n in blocks for _ in range(settings.per_class_components)]
    notes = {"classes_without_block": missing}
    if settings.per_class_source == "single_label":
        notes["single_label_fallback"] = fallback
    return blocks, labels, notes


def _fit_weak_labels(datamodule, settings: NMFSettings, fe: AudioFrontEnd, dev, split, num_clips, W_noise):
    """The ``weak_labels`` fit on the clips' frames held in memory -> ``(W, labels, notes)``."""
    names = _class_names(datamodule)
    spectra, targets, seen = [], [], 0
    for batch in clip_loader(datamodule, split, num_clips, seed=settings.seed):
        if not isinstance(batch, dict) or "target" not in batch:
            raise ValueError("nmf.per_class_source 'weak_labels' needs batches with a 'target'")
        V = _batch_spectra(batch, fe, dev)
        keep = V.shape[0] if num_clips is None else min(V.shape[0], int(num_clips) - seen)
        target = batch["target"][:keep]
        if target.dim() == 1:
            target = torch.nn.functional.one_hot(target.long(), len(names))
        spectra.append(V[:keep])
        targets.append(target.float().to(dev))
        seen += keep
        if num_clips is not None and seen >= int(num_clips):
            break
    if not spectra:
        raise NoClipsError(f"the data split {split!r} yielded no clips (check data settings / num_clips)")
    V, Y = torch.cat(spectra), torch.cat(targets)
    present = (Y > 0.5).any(0)
    missing = [n for n, p in zip(names, present.tolist()) if not p]
    for name in missing:
        warnings.warn(f"nmf: class {name!r} has no clip in split {split!r} (first {num_clips} clips): no block for it "
                      "(its interpretation will have no class components)", stacklevel=2)
    if not bool(present.any()):
        raise ValueError(f"nmf: no clip of split {split!r} has a label: nothing to learn class blocks from")
    kept = [n for n, p in zip(names, present.tolist()) if p]
    res = fit_weak_labels(
        V.to(getattr(torch, settings.dtype)), Y[:, present], kept, settings.per_class_components, settings.shared_components,
        W_fixed=W_noise, fixed_label=NOISE_LABEL, beta=settings.beta, sparsity=settings.sparsity, solver="mu",
        max_iter=settings.weak_label_iters, tol=1e-5, seed=settings.seed, dtype=getattr(torch, settings.dtype), device=dev,
    )
    K0 = 0 if W_noise is None else W_noise.shape[1]
    return res.dictionary[:, K0:], res.labels[K0:], {"classes_without_block": missing}, (V.shape[0], V.shape[0] * V.shape[-1])


def _evaluate(nmf: NMF, W: torch.Tensor, batches) -> dict:
    """Exact objective of the data with W fixed (activations re-estimated), relative error, H's zeros."""
    obj = err2 = norm2 = 0.0
    zeros = total = frames = 0
    for Vb in batches:
        Vb = Vb.to(W.device, W.dtype)
        H = nmf.transform(Vb, W)
        obj += nmf_objective(Vb, W, H, nmf.beta, nmf.sparsity, nmf.eps)
        err2 += float(((Vb - W @ H).double() ** 2).sum())
        norm2 += float((Vb.double() ** 2).sum())
        zeros += int((H == 0).sum())
        total += H.numel()
        frames += Vb.shape[1]
    return {
        "objective": obj,
        "objective_per_frame": obj / max(frames, 1),
        "relative_error": math.sqrt(err2 / max(norm2, 1e-30)),
        "activation_zeros": zeros / max(total, 1),
        "eval_frames": frames,
    }


def class_purity(nmf: NMF, W: torch.Tensor, loader, frontend: AudioFrontEnd, device: torch.device, num_classes: int, max_clips: int = 200) -> float | None:
    """How class-specific the components are: for each component k, the share of its activation mass
    ``Σ_t H_kt`` that falls in clips of its most frequent class, averaged over components weighted by
    mass. 1 = every component fires for one class only; 1/C = no preference. Multiclass targets only."""
    mass = torch.zeros(W.shape[1], num_classes, dtype=torch.float64)
    seen = 0
    for batch in loader:
        target = batch.get("target") if isinstance(batch, dict) else None
        if target is None or target.dim() != 1:
            return None
        V = _batch_spectra(batch, frontend, device)
        H = nmf.transform(V.to(W.dtype), W)  # (B, K, T)
        m = H.sum(dim=-1).double().cpu()  # (B, K)
        mass.index_add_(1, target.cpu().long(), m.t())
        seen += V.shape[0]
        if seen >= max_clips:
            break
    total = mass.sum()
    if seen == 0 or total <= 0:
        return None
    return float(mass.max(dim=1).values.sum() / total)


def _save_figures(W: torch.Tensor, examples: torch.Tensor | None, nmf: NMF, frontend: FrontEndConfig, folder: Path, title: str,
                  labels: list[str] | None = None) -> list[Path]:
    """``dictionary.png`` (frequency × component; with ``labels``, each block of columns — a class's, the noise
    block, the shared one — named above the image and separated by a line) and ``reconstructions.png``
    (V, W H per example)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    paths = []
    nyq = frontend.sample_rate / 2000.0
    Wc = W.detach().float().cpu()
    fig, ax = plt.subplots(figsize=(min(14, 3 + 0.08 * Wc.shape[1]), 4.5))
    im = ax.imshow(Wc.numpy(), origin="lower", aspect="auto", cmap="magma", extent=(-0.5, Wc.shape[1] - 0.5, 0, nyq))
    ax.set_xlabel("component k")
    ax.set_ylabel("frequency (kHz)")
    ax.set_title(f"dictionary W ({Wc.shape[0]} × {Wc.shape[1]}), {title}")
    if labels and len(labels) == Wc.shape[1] and len(set(labels)) > 1:
        start = 0
        for k in range(1, len(labels) + 1):
            if k == len(labels) or labels[k] != labels[start]:
                if k < len(labels):
                    ax.axvline(k - 0.5, color="white", linewidth=0.8)
                ax.text((start + k - 1) / 2, 1.01, str(labels[start]), transform=ax.get_xaxis_transform(),
                        ha="center", va="bottom", fontsize=7, rotation=90 if k - start < 4 else 0)
                start = k
        ax.set_title(ax.get_title(), pad=30)
    fig.colorbar(im, ax=ax, label="weight (unit-norm columns)")
    fig.tight_layout()
    paths.append(folder / "dictionary.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    if examples is not None and examples.shape[0]:
        V = examples.to(W.device, W.dtype)
        H = nmf.transform(V, W)
        R = torch.einsum("fk,bkt->bft", W, H).float().cpu()
        V = V.float().cpu()
        n = V.shape[0]
        fig, axes = plt.subplots(n, 2, figsize=(9, 2.2 * n), squeeze=False)
        vmax = float(V.max())
        for i in range(n):
            err = float((V[i] - R[i]).norm() / V[i].norm().clamp_min(1e-12))
            for j, (img, name) in enumerate(((V[i], "V = log1p|X|"), (R[i], f"W H (rel. error {err:.3f})"))):
                ax = axes[i][j]
                ax.imshow(img.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=vmax, extent=(0, img.shape[1], 0, nyq))
                ax.set_title(f"clip {i}: {name}", fontsize=9)
                ax.set_ylabel("kHz")
        for ax in axes[-1]:
            ax.set_xlabel("frame")
        fig.tight_layout()
        paths.append(folder / "reconstructions.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


def log_images_to_wandb(paths: list[Path], prefix: str = "dictionary") -> bool:
    """Log images to the active W&B run, if any. Never raises: returns whether it logged."""
    try:
        import wandb

        if wandb.run is None:
            return False
        wandb.log({f"{prefix}/{p.stem}": wandb.Image(str(p)) for p in paths})
        return True
    except Exception as exc:  # noqa: BLE001 - W&B is a convenience, never a reason to fail the job
        warnings.warn(f"W&B logging of {[p.name for p in paths]} failed: {type(exc).__name__}: {exc}", stacklevel=2)
        return False


def _fit_stream_resumable(model, stream, settings, W_noise, state_path, resume: bool, shard, rank0: bool) -> NMFResult:
    """``fit_stream`` one epoch at a time, the state saved after each (atomically), resumed when asked."""
    from l2i.checkpoints import safe_load

    state_path = Path(state_path) if state_path else None
    done = 0
    if resume and state_path is not None and state_path.is_file():
        model.load_state_dict(safe_load(state_path, what="NMF streaming state"))
        done = int(model.state_dict()["epoch"])
        print(f"[l2i nmf] resuming from {state_path} after epoch {done} of {settings.epochs}", flush=True)
    reduce_fn = _all_reduce_sum if shard is not None else None
    res = None
    for _ in range(done, settings.epochs):
        fixed = W_noise if model._stream is None else None
        res = model.fit_stream(lambda: stream, epochs=1, forget_factor=settings.forget_factor, W_fixed=fixed,
                               reduce_fn=reduce_fn)
        if state_path is not None and rank0:
            state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = state_path.with_suffix(state_path.suffix + ".tmp")
            try:
                torch.save(model.state_dict(), tmp)
                tmp.replace(state_path)  # a kill while writing never leaves a broken state
            except (OSError, RuntimeError) as exc:  # torch reports a full disk as "unexpected pos …"
                tmp.unlink(missing_ok=True)
                free = shutil.disk_usage(state_path.parent).free
                raise OSError(errno.ENOSPC if free < (1 << 20) else getattr(exc, "errno", None) or errno.EIO,
                              f"NMF streaming state {state_path}: could not be written after epoch {model.state_dict()['epoch']} "
                              f"({'disk full: ' if free < (1 << 20) else ''}{type(exc).__name__}: {str(exc).strip()[:160]}); "
                              "the previous state, if any, is kept") from None
    state = model.state_dict()
    W = state["W"].to(model.device or "cpu") if res is None else res.dictionary
    return NMFResult(W, None, float(state["history"][-1]) if state["history"] else float("nan"), list(state["history"]),
                     n_iter=int(state["epoch"]))


#: more components than this many times the frequency bins is refused (the fit would run for hours to learn a
#: dictionary with mostly redundant columns); more than the bins is allowed with a warning.
MAX_COMPONENTS_PER_BIN = 4


def _check_components(settings: NMFSettings, n_freq: int) -> None:
    for name in ("n_components", "per_class_components", "noise_components"):
        k = int(getattr(settings, name, 0) or 0)
        if k > MAX_COMPONENTS_PER_BIN * n_freq:
            raise ValueError(f"nmf.{name} = {k} is more than {MAX_COMPONENTS_PER_BIN} x the {n_freq} frequency bins of "
                             f"the spectrogram (n_fft {2 * (n_freq - 1)}); the fit would take hours for a redundant "
                             f"dictionary. Use at most {MAX_COMPONENTS_PER_BIN * n_freq} (typically 16-200)")
        if k > n_freq:
            warnings.warn(f"nmf.{name} = {k} is more than the {n_freq} frequency bins: an overcomplete dictionary, "
                          "slow to learn; is this intended?", UserWarning, stacklevel=3)


def learn_dictionary(
    datamodule: Any,
    frontend: FrontEndConfig | dict,
    nmf: NMFSettings | dict,
    out: str | Path,
    *,
    split: str = "train",
    num_clips: int | None = None,
    device: str | None = "auto",
    cache_mb: float = 1024.0,
    eval_split: str | None = "val",
    eval_clips: int = 200,
    save_images: bool = True,
    progress: bool = True,
    dataset: str | None = None,
    extra_meta: dict | None = None,
    threads: int | None = None,
    state_path: str | Path | None = None,
    resume: bool = False,
    shard: tuple[int, int] | None = None,
) -> tuple[DictionaryArtifact, dict]:
    """Learn ``W (F, K)`` on a split, save the artifact (and figures) at ``out``; return it and figures.

    Figures (flat): ``objective`` (exact, training frames, W fixed and activations re-estimated, when the
    frames were cached; else the last epoch's streaming estimate), ``objective_per_frame``,
    ``relative_error`` ``||V - WH|| / ||V||``, ``activation_zeros``, ``class_purity`` (on ``eval_split``),
    ``n_components``, ``n_freq``, ``frames``, ``clips``, ``epochs``, ``fit_seconds``.

    ``threads`` sets torch's CPU threads for the job (restored afterwards); 1 is fastest for these
    many small products on a busy shared CPU (README's measured notes).

    ``state_path``: the streaming state (W, sufficient statistics, counters) is written there after every
    epoch; with ``resume`` an existing state is loaded and only the remaining epochs run (a killed job loses
    at most one epoch). ``shard = (rank, world_size)``: distributed learning — each process streams its share
    of the clips and the statistics are summed across processes before every W update (``all_reduce``),
    so every process holds the same dictionary; only rank 0 writes files. Both need the plain streaming fit
    (no ``per_class_components``).
    """
    with _torch_threads(threads):
        fe_cfg = FrontEndConfig.from_any(frontend)
        settings = nmf if isinstance(nmf, NMFSettings) else NMFSettings(**(nmf or {}))
        dev = resolve_device(device)
        n_freq = fe_cfg.n_fft // 2 + 1
        _check_components(settings, n_freq)
        rank0 = shard is None or shard[0] == 0
        if rank0:  # a read-only or full folder found now, not after the first epoch
            k_total = settings.noise_components + max(settings.n_components, settings.per_class_components)
            check_writable(Path(out).parent, need_bytes=n_freq * k_total * 4 * 8 + (1 << 20),
                           what="NMF output folder", hint="choose another --out")
        fe = AudioFrontEnd(fe_cfg).to(dev)
        model = settings.build(dev, progress=progress)
        if (state_path or shard) and settings.per_class_components > 0:
            raise ValueError("resume (state_path) and distributed learning need the plain streaming fit; "
                             "nmf.per_class_components must be 0")
        loader = clip_loader(datamodule, split, num_clips, seed=settings.seed, shard=shard)
        per_process = max(1, int(num_clips) // shard[1]) if (shard is not None and num_clips) else num_clips
        stream = FrameStream(loader, fe, dev, settings.batch_frames, max_clips=per_process, cache_mb=cache_mb)
        start = time.perf_counter()
        W_noise = _noise_block(datamodule, settings, fe, dev, split, num_clips, cache_mb, progress)
        labels, block_notes = None, {}
        if settings.per_class_components > 0:
            W, labels, block_notes = _class_blocks(datamodule, settings, fe, dev, split, num_clips, cache_mb, progress,
                                                   W_noise)
            res = NMFResult(W, None, float("nan"), [], n_iter=settings.epochs)
        else:
            res = _fit_stream_resumable(model, stream, settings, W_noise, state_path, resume, shard, rank0)
            W = res.dictionary
        fit_seconds = time.perf_counter() - start
        figures = _dictionary_figures(datamodule, settings, model, W, res, stream, fe, dev, eval_split, eval_clips)
        figures["fit_seconds"] = round(fit_seconds, 2)
        name = dataset or getattr(datamodule, "name", None) or type(datamodule).__name__
        meta = _dictionary_meta(settings, model, W, res, figures, stream, W_noise, labels,
                                {"dataset": str(name), "split": split, "device": str(dev)}, {**block_notes, **(extra_meta or {})})
        art = DictionaryArtifact(W=W.detach().float().cpu(), frontend=fe_cfg.spectral_params(), meta=meta)
        if rank0:  # distributed: every rank holds the same W; only rank 0 writes the one artifact
            _write_dictionary(art, Path(out), figures, save_images, W, stream, model, fe_cfg, f"{name}/{split}")
        return art, figures


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU threads set to ``threads`` inside the block (left alone when None or <= 0), then restored."""
    if threads is None or int(threads) <= 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _noise_block(datamodule, settings: NMFSettings, fe, dev, split: str, num_clips, cache_mb: float,
                 progress: bool) -> torch.Tensor | None:
    """The noise block ``W_noise (F, noise_components)``, streamed from the noise material (or None)."""
    if not settings.noise_components:
        return None
    noise_model = settings.build(dev, progress=progress, n_components=settings.noise_components)
    unlabelled = settings.noise_key == "unlabelled"
    noise_stream = FrameStream(
        clip_loader(datamodule, split, num_clips, seed=settings.seed), fe, dev, settings.batch_frames,
        max_clips=num_clips, cache_mb=cache_mb, key="waveform" if unlabelled else settings.noise_key,
        select=_unlabelled if unlabelled else None,
    )
    return noise_model.fit_stream(lambda: noise_stream, epochs=settings.epochs,
                                  forget_factor=settings.forget_factor).dictionary


def _class_blocks(datamodule, settings: NMFSettings, fe, dev, split: str, num_clips, cache_mb: float, progress: bool,
                  W_noise: torch.Tensor | None) -> tuple[torch.Tensor, list[str], dict[str, Any]]:
    """The per-class dictionary (``nmf.per_class_components`` columns per class, after the noise block if
    any): ``(W (F, K), the class label of each class column, notes for the artifact's meta)``."""
    if settings.per_class_source == "weak_labels":
        W_cls, labels, block_notes, _ = _fit_weak_labels(datamodule, settings, fe, dev, split, num_clips, W_noise)
        W_cls = W_cls.to(dev, getattr(torch, settings.dtype))
    else:
        blocks, labels, block_notes = _fit_per_class(datamodule, settings, fe, dev, split, num_clips, cache_mb, progress)
        W_cls = concat_dictionaries(blocks).dictionary.to(dev, getattr(torch, settings.dtype))
    W = W_cls if W_noise is None else torch.cat([W_noise, W_cls], dim=1)
    return W, labels, block_notes


def _dictionary_figures(datamodule, settings: NMFSettings, model: NMF, W: torch.Tensor, res: NMFResult, stream,
                        fe, dev, eval_split: str | None, eval_clips: int) -> dict[str, Any]:
    """:func:`learn_dictionary`'s figures but ``fit_seconds``: the objective (exact when the frames were cached or
    the dictionary was learnt by blocks, else the last epoch's streaming estimate), the class purity, the sizes."""
    figures: dict[str, Any] = {}
    if settings.per_class_components > 0:  # no streaming estimate of the objective: one evaluation pass
        figures.update(_evaluate(model, W, stream if stream.cache is None else stream.cache))
    elif stream.cache is not None:
        figures.update(_evaluate(model, W, stream.cache))
    else:
        figures.update(objective=res.objective, objective_per_frame=res.objective / max(stream.frames, 1))
    num_classes = getattr(datamodule, "num_classes", None)
    if eval_split and num_classes and getattr(datamodule, "task", "multiclass") == "multiclass":
        try:
            ev_loader = clip_loader(datamodule, eval_split, eval_clips, seed=settings.seed)
            purity = class_purity(model, W, ev_loader, fe, dev, int(num_classes), eval_clips)
        except Exception as exc:  # noqa: BLE001 - a diagnostic, not the product
            warnings.warn(f"class purity on split {eval_split!r} skipped: {type(exc).__name__}: {exc}", stacklevel=3)
        else:
            if purity is not None:
                figures["class_purity"] = purity
    figures.update(
        n_components=int(W.shape[1]),
        noise_components=int(settings.noise_components),
        n_freq=int(W.shape[0]),
        frames=int(stream.frames),
        clips=int(stream.clips),
        epochs=int(res.n_iter),
    )
    return figures


def _dictionary_meta(settings: NMFSettings, model: NMF, W: torch.Tensor, res: NMFResult, figures: dict[str, Any],
                     stream, W_noise: torch.Tensor | None, labels: list[str] | None, where: dict[str, str],
                     extra: dict[str, Any]) -> dict[str, Any]:
    """The artifact's ``meta``: the settings, the objective and its history, where it was learnt (``where``:
    dataset, split, device), the diagnostic figures, ``extra`` (block notes, the caller's), and the label of
    every column when the dictionary has a noise block or class blocks."""
    meta = {
        **asdict(settings),
        "solver": model.solver,
        "objective": float(figures["objective"]),
        "objective_per_frame": float(figures["objective_per_frame"]),
        "objective_definition": "0.5*||V - W H||_F^2 + sparsity*sum(H)" if model.beta == 2 else "KL(V|WH) + sparsity*sum(H)",
        "history": [float(h) for h in res.history],
        "dataset": where["dataset"],
        "split": where["split"],
        "clips": int(stream.clips),
        "frames": int(stream.frames),
        "device": where["device"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **{k: v for k, v in figures.items() if k in ("relative_error", "activation_zeros", "class_purity")},
        **extra,
    }
    meta["n_components"] = int(W.shape[1])  # all columns (noise block and per-class blocks included)
    if W_noise is not None or labels is not None:
        noise = [NOISE_LABEL] * (0 if W_noise is None else W_noise.shape[1])
        meta["labels"] = noise + (labels if labels is not None else ["event"] * settings.n_components)
    return meta


def _write_dictionary(art: DictionaryArtifact, out: Path, figures: dict[str, Any], save_images: bool, W, stream,
                      model: NMF, fe_cfg: FrontEndConfig, title: str) -> None:
    """Save the artifact at ``out`` and, when asked, its figures beside it (logged to W&B when a run is open);
    records ``dictionary`` (and ``images_logged``) in ``figures``."""
    art.save(out)
    figures["dictionary"] = str(out)
    if save_images:
        try:
            paths = _save_figures(W, stream.examples, model, fe_cfg, out.parent, f"{title}, K={W.shape[1]}",
                                  labels=art.meta.get("labels"))
            figures["images_logged"] = log_images_to_wandb(paths)
        except Exception as exc:  # noqa: BLE001 - pictures are a convenience; the artifact is written
            warnings.warn(f"dictionary figures failed: {type(exc).__name__}: {exc}", stacklevel=3)


# ---------------------------------------------------------------------------------------------------------
# the command and the pipeline stage
# ---------------------------------------------------------------------------------------------------------
def build_parser():
    """The schema of an ``l2i nmf`` config (jsonargparse: every key typed by its class's signature). Its files are
    read by :func:`read_nmf_config`, which hands their text to ``--config``. Its ``--help`` is the command's."""
    import lightning as L
    from jsonargparse import ActionConfigFile, ArgumentParser, lazy_instance

    from datamodules.synthetic import SyntheticDataModule

    p = ArgumentParser(prog="l2i nmf", description="Learn an NMF dictionary W (F x K) for a data set (stage 1).",
                       exit_on_error=False)
    # the files are read by experiments.cli.read_config (read_nmf_config); the schema receives their text
    p.add_argument("--config", action=ActionConfigFile, help="YAML config (repeatable, composed in order; e.g. "
                   "experiments/synthetic/nmf.yaml)")
    p.add_subclass_arguments(L.LightningDataModule, "data", default=lazy_instance(SyntheticDataModule), help="DataModule (class_path/init_args)")
    p.add_class_arguments(FrontEndConfig, "frontend", help="front-end; must match the classifier that will use W")
    p.add_argument("--classifier", type=Optional[str], default=None,
                   help="the classifier whose front-end the dictionary uses: its checkpoint (.ckpt) or its fit config "
                        "(.yaml); replaces --frontend")
    p.add_class_arguments(NMFSettings, "nmf", help="NMF settings")
    p.add_argument("--split", type=str, default="train", help="split the dictionary is learnt on (synthetic: also 'nmf')")
    p.add_argument("--num_clips", type=Optional[int], default=None, help="cap on clips (default: the whole split)")
    p.add_argument("--device", type=str, default="auto", help="auto, cpu, cuda, cuda:1 …")
    p.add_argument("--out", type=str, default="runs/nmf/dictionary.pt", help="artifact path; figures go beside it")
    p.add_argument("--out_dir", type=Optional[str], default=None,
                   help="output folder (the flag every verb has): writes <out_dir>/dictionary.pt, overriding --out")
    p.add_argument("--cache_mb", type=float, default=1024.0, help="keep the frames in memory up to this size (0: always stream)")
    p.add_argument("--eval_split", type=Optional[str], default="val", help="split for the class-purity diagnostic (null: skip)")
    p.add_argument("--eval_clips", type=int, default=200, help="clips of eval_split for the class-purity diagnostic")
    p.add_argument("--dataset", type=Optional[str], default=None, help="data set name stored in the artifact (default: the DataModule's)")
    p.add_argument("--threads", type=Optional[int], default=None, help="torch CPU threads for the job (null: leave as is)")
    p.add_argument("--images", type=bool, default=True, help="write dictionary.png and reconstructions.png")
    p.add_argument("--progress", type=bool, default=True, help="progress bar")
    p.add_argument("--wandb", type=bool, default=True, help="log the images to a W&B run (offline unless WANDB_MODE says otherwise)")
    p.add_argument("--wandb_project", type=str, default="listen-to-interpret", help="W&B project of that run")
    p.add_argument("--resume", type=bool, default=False,
                   help="continue from <out>.state.pt (the streaming state written after every epoch)")
    return p


def _run(cfg, parser, wandb_run: bool) -> tuple[DictionaryArtifact, dict]:
    cfg = classifier_frontend(cfg)
    init = parser.instantiate(cfg) if hasattr(parser, "instantiate") else parser.instantiate_classes(cfg)
    out = Path(cfg.out_dir) / "dictionary.pt" if cfg.get("out_dir") else Path(cfg.out)
    shard = distributed_shard()  # torchrun / SLURM with several processes: one dictionary, statistics summed
    if shard is not None and shard[0] != 0:
        wandb_run = False
    run_context = contextlib.nullcontext()
    if wandb_run and cfg.wandb:
        from callbacks.wandb_runs import stage_run

        # offline unless WANDB_MODE says otherwise, in <out folder>/wandb; job_type "nmf", or the pipeline stage's
        # (the demo's "dictionary") with its group
        run_context = stage_run(out.parent, out.parent.name, "nmf", _plain_cfg(cfg, parser), cfg.wandb_project)
    with run_context as run:
        plain = not getattr(init.nmf, "per_class_components", 0)
        art, figures = learn_dictionary(
            init.data, init.frontend, init.nmf, out, split=cfg.split, num_clips=cfg.num_clips, device=cfg.device,
            cache_mb=cfg.cache_mb, eval_split=cfg.eval_split, eval_clips=cfg.eval_clips, save_images=cfg.images,
            progress=cfg.progress, dataset=cfg.dataset, threads=cfg.threads,
            state_path=out.with_suffix(".state.pt") if plain else None, resume=cfg.resume, shard=shard,
        )
        if shard is None or shard[0] == 0:
            out.parent.mkdir(parents=True, exist_ok=True)
            (out.parent / f"{out.stem}.yaml").write_text(parser.dump(cfg))
        if run is not None:
            try:
                run.summary.update({k: v for k, v in figures.items() if isinstance(v, (int, float))})
            except Exception:  # noqa: BLE001
                pass
    return art, figures


def _plain_cfg(cfg, parser) -> dict:
    import yaml

    try:
        return yaml.safe_load(parser.dump(cfg))
    except Exception:  # noqa: BLE001
        return {}


def read_nmf_config(argv: list[str]):
    """``(cfg, parser)`` of ``l2i nmf``'s arguments. Every ``--config FILE`` is read by
    :func:`experiments.cli.read_config` (found from any folder, the ``data:`` / ``frontend:`` files it names read in)
    and handed to the schema (:func:`build_parser`) as text, as :func:`experiments.cli.instantiate` hands its files
    to the parser of ``l2i fit``; the files compose in order and the ``--key VALUE`` / dotted overrides that follow
    are typed by the schema, as ``l2i fit`` types them (``--print_config``, ``--help`` as for every verb).
    ``ValueError`` naming the key for an unknown key or a wrong type."""
    from argparse import ArgumentError

    import yaml

    from experiments.cli import one_line, read_config

    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            args[i + 1] = yaml.safe_dump(read_config(args[i + 1]), sort_keys=False)
        elif arg.startswith("--config="):
            args[i] = "--config=" + yaml.safe_dump(read_config(arg.split("=", 1)[1]), sort_keys=False)
    parser = build_parser()
    try:
        return parser.parse_args(args), parser
    except ArgumentError as err:
        message = one_line(err)
        if "\n" in message:  # a bare type error: jsonargparse's listing, said in one line
            import re

            keys = re.findall(r'Parser key "([^"]+)"', message)
            wanted = [w for w in re.findall(r"Expected a <class '(\w+)'>", message) if w != "NoneType"]
            given = re.search(r"Given value: (.*)", message)
            message = (f"{'.'.join(keys) or 'a value'}: expected {' or '.join(wanted) or 'another type'}"
                       f"{', or null' if 'NoneType' in message else ''}; got {given.group(1) if given else 'something else'}")
        raise ValueError(message) from err


def main(argv: list[str] | None = None) -> int:
    """``l2i nmf --config experiments/synthetic/nmf.yaml [--nmf.n_components 100] [--out_dir DIR | --out FILE]``."""
    from l2i.checkpoints import CheckpointError

    try:
        cfg, parser = read_nmf_config(list(sys.argv[1:] if argv is None else argv))
        art, figures = _run(cfg, parser, wandb_run=True)
    except (ValueError, FileNotFoundError, TypeError, OSError, CheckpointError) as exc:
        print(f"l2i nmf: error: {exc}", file=sys.stderr)
        return 2
    print(f"[l2i nmf] {art!r}")
    for k, v in figures.items():
        print(f"  {k}: {v:.6g}" if isinstance(v, float) else f"  {k}: {v}")
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # distributed: rank 0 wrote the artifact and says what it wrote
    from callbacks.summary import latest_wandb_run, print_summary  # what the run wrote, where

    out = Path(cfg.out)
    print_summary("nmf", {"dictionary": out, "config": out.with_suffix(".yaml"),
                          "figures": [out.parent / "dictionary.png", out.parent / "reconstructions.png"]},
                  wandb_run_dir=latest_wandb_run(out.parent) if cfg.wandb else None)
    return 0


def classifier_frontend(cfg):
    """``cfg`` with its ``frontend`` taken from ``cfg.classifier`` (a checkpoint or a fit config) when given, and
    the data's sample rate checked against the front-end's (a mismatch names both keys)."""
    from experiments.cli_lightning import check_sample_rates

    source = cfg.get("classifier")
    if source:
        fe = frontend_from_checkpoint(source) if str(source).endswith(".ckpt") else frontend_from_config(source)
        for key, value in fe.items():
            cfg[f"frontend.{key}"] = value
    check_sample_rates(cfg, "frontend.sample_rate")
    return cfg


def frontend_from_config(path: str | Path) -> dict:
    """The ``FrontEndConfig`` dict of a classifier fit config (``model.init_args.frontend``, given inline or as
    the path of a front-end file)."""
    from experiments.cli import read_config

    fe = ((read_config(path).get("model") or {}).get("init_args") or {}).get("frontend")
    if not isinstance(fe, dict):
        raise ValueError(f"{path}: no model.init_args.frontend (not a classifier fit config?)")
    return FrontEndConfig.from_any(fe).to_dict()


def frontend_from_checkpoint(path: str | Path) -> dict:
    """The ``FrontEndConfig`` dict a classifier checkpoint was trained with (``hyper_parameters["frontend"]``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"classifier checkpoint not found: {path}")
    from l2i.checkpoints import safe_load

    ckpt = safe_load(path, what="classifier checkpoint")  # weights_only: a file carrying code is refused
    fe = (ckpt.get("hyper_parameters") or {}).get("frontend") if isinstance(ckpt, dict) else None
    if fe is None:
        raise ValueError(f"{path}: checkpoint has no hyper_parameters['frontend'] (not a ClassifierModule checkpoint?)")
    return FrontEndConfig.from_any(dict(fe) if not isinstance(fe, FrontEndConfig) else fe).to_dict()
