"""Shared helpers of the evaluation / callback tests (no tests here): a tiny trained classifier on 1 s synthetic
clips (trained once per session), a small NMF dictionary, and interpreters built from the Interpretation
helpers — an oracle that knows the true sources, its inverse, and (through ``components=``) random ones."""

from __future__ import annotations

import contextlib
import functools
import time

import lightning as L
import torch
from torch.utils.data import DataLoader

from datamodules.synthetic import SyntheticDataModule
from l2i.interpreter.interpretation import (
    Interpretation,
    component_share,
    magnitude_mask,
    select_classes,
    synthesize,
)
from l2i.nmf import NMF
from lightning_modules.classifier import ClassifierModule

SR = 8000
NUM_CLASSES = 4
FRONTEND = dict(sample_rate=SR, n_fft=256, hop_length=128, n_mels=32, top_db=80.0, duration_s=1.0)


@contextlib.contextmanager
def one_thread():
    """Torch on one thread (on a loaded 2-core machine this is ~6x faster than two fighting threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def datamodule(num_train=240, num_val=48, num_test=48, batch_size=16, mode="multiclass") -> SyntheticDataModule:
    return SyntheticDataModule(
        mode=mode, num_classes=NUM_CLASSES, num_train=num_train, num_val=num_val, num_test=num_test,
        sample_rate=SR, duration_s=1.0, distractor_prob=0.5, seed=0, batch_size=batch_size,
    )


@functools.lru_cache(maxsize=None)
def trained_classifier() -> ClassifierModule:
    """SmallCNN on 240 clips of 1 s (4 classes), 4 epochs; frozen, eval mode. Cached for the session."""
    torch.manual_seed(0)
    dm = datamodule()
    model = ClassifierModule(
        backbone="small_cnn", backbone_kwargs={"channels": [8, 16, 16, 32]}, frontend=FRONTEND,
        task="multiclass", num_classes=NUM_CLASSES, lr=3e-3,
    )
    trainer = L.Trainer(max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1)
    start = time.perf_counter()
    with one_thread():
        trainer.fit(model, datamodule=dm)
    model.train_seconds = time.perf_counter() - start
    model.eval()
    model.requires_grad_(False)
    return model


@functools.lru_cache(maxsize=None)
def dictionary(K: int = 24) -> torch.Tensor:
    """W (F, K) learnt by NMF on log1p|X| frames of 64 training clips."""
    model = trained_classifier()
    ds = datamodule().dataset("nmf", 64)
    wav = torch.stack([ds[i]["waveform"] for i in range(len(ds))])
    with one_thread():
        V = model.frontend(wav).nmf  # (B, F, T)
        V = V.permute(1, 0, 2).reshape(V.shape[1], -1)
        return NMF(n_components=K, max_iter=60, seed=0).fit(V).W.float()


class OracleInterpreter:
    """Knows the true sources of registered clips (nearest registered mixture, so noisy copies work too).

    Relevance of component k for class c = the fraction of its reconstruction ``w_k h_k`` that lies where the
    class-c source dominates the rest of the mixture (normalised by the max over k). ``mode='inverted'`` explains
    with the complement (mask 1 − oracle mask, the other components) and negated logits: the worst interpreter.
    """

    task = "multiclass"

    def __init__(self, classifier, W: torch.Tensor, mode: str = "oracle"):
        self.classifier, self.W, self.mode = classifier, W, mode
        self.frontend = classifier.frontend
        self.nmf = NMF(n_components=W.shape[1], max_iter=60, seed=0)
        self.mixtures: list[torch.Tensor] = []
        self.sources: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def register(self, batch: dict) -> None:
        self.mixtures.append(batch["waveform"].float())
        self.sources.append(batch["sources"].float())
        self.labels.append(batch["source_labels"])

    def _lookup(self, waveform: torch.Tensor):
        mix = torch.cat(self.mixtures)
        d = torch.cdist(waveform.float(), mix)
        idx = d.argmin(-1)
        return torch.cat(self.sources)[idx], torch.cat(self.labels)[idx]

    @torch.no_grad()
    def interpret(self, waveform, target=None, threshold=0.2, components=None) -> Interpretation:
        fe = self.frontend
        feats = fe(waveform)
        B, F, T = feats.magnitude.shape
        C = NUM_CLASSES
        K = self.W.shape[1]
        clf_logits = self.classifier(waveform)
        H = torch.stack([self.nmf.transform(feats.nmf[b], W=self.W) for b in range(B)])  # (B, K, T)
        sources, labels = self._lookup(waveform)
        N = waveform.shape[-1]
        rel = torch.zeros(B, C, K)
        for c in range(C):
            src = (sources * (labels == c)[..., None]).sum(1)[..., :N]
            S = fe.stft(src).abs()
            R = fe.stft(waveform - src).abs()
            ibm = (S > R).float()  # (B, F, T)
            part = torch.einsum("fk,bkt->bkft", self.W, H)
            frac = (part * ibm[:, None]).sum((-2, -1)) / part.sum((-2, -1)).clamp_min(1e-8)
            frac = frac * (S.pow(2).sum((-2, -1)) > 0)[:, None]
            rel[:, c] = frac
        peak = rel.amax(-1, keepdim=True)
        rel = torch.where(peak > 0, rel / peak.clamp_min(1e-12), torch.zeros_like(rel))
        chosen_all = rel > threshold if components is None else components.bool()
        classes = select_classes(clf_logits, "multiclass", target)
        idx = classes.clamp_min(0)[..., None].expand(*classes.shape, K)
        valid = classes >= 0
        chosen = torch.take_along_dim(chosen_all, idx, dim=1) & valid[..., None]
        logits = clf_logits
        if self.mode == "inverted":
            chosen = ~chosen & valid[..., None]
            logits = -clf_logits
        share = component_share(self.W, H, chosen)
        mask = magnitude_mask(share, feats.nmf, feats.magnitude, "share")
        audio, residual = synthesize(fe, mask, feats.magnitude, feats.phase, N)
        return Interpretation(
            classes=classes, relevance=rel, components=chosen_all, mask=mask, audio=audio, residual=residual,
            activations=H, logits=logits, classifier_logits=clf_logits, threshold=float(threshold), sample_rate=SR,
        )


def make_loader(n=48, batch_size=16, split="test"):
    ds = datamodule().dataset(split, n)
    return DataLoader(ds, batch_size=batch_size, shuffle=False)


class SimpleNMFInterpreter:
    """H = relu(Wᵀ V), Θ = mean pooling + a fixed random bias-free linear: any task, takes ``components=``."""

    def __init__(self, classifier, W: torch.Tensor, seed: int = 0):
        self.classifier, self.W = classifier, W
        self.task = classifier.task
        self.frontend = classifier.frontend
        g = torch.Generator().manual_seed(seed)
        self.theta = torch.rand(classifier.num_classes, W.shape[1], generator=g)

    @torch.no_grad()
    def interpret(self, waveform, target=None, threshold=0.2, components=None):
        from l2i.interpreter.interpretation import build_interpretation

        feats = self.frontend(waveform)
        H = torch.einsum("fk,bft->bkt", self.W, feats.nmf).clamp_min(0)
        pooled = H.mean(-1)
        clf_logits = self.classifier(waveform)
        logits = pooled @ self.theta.t()
        logits = logits - logits.mean(-1, keepdim=True)
        return build_interpretation(
            frontend=self.frontend, features=feats, dictionary=self.W, activations=H, pooled=pooled,
            class_weights=self.theta, logits=logits, classes=select_classes(clf_logits, self.task, target),
            classifier_logits=clf_logits, threshold=threshold, components=components,
        )
