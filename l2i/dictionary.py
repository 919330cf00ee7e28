"""The NMF dictionary as a reusable artifact: W plus everything needed to use it again.

A dictionary ``W (F, K)`` only means something for the front-end it was learnt with (sample rate, STFT
size, hop, window, transform ``log1p|X|``), so the artifact carries those parameters and refuses to be
used with a model whose front-end differs. Pure torch, no Lightning.

File format (``torch.save`` of plain tensors / dicts / lists / numbers / strings, loadable with
``torch.load(weights_only=True)``)::

    {"format": "l2i.dictionary", "version": 1,
     "dictionary": Tensor (F, K) float32, "frontend": {...}, "meta": {...}}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from l2i.checkpoints import CheckpointError, safe_load
from l2i.frontend import SPECTRAL_KEYS, FrontEndConfig

__all__ = ["DictionaryMismatchError", "DictionaryArtifact", "frontend_params", "NOISE_LABEL"]

FORMAT = "l2i.dictionary"
VERSION = 1
_PARAM_KEYS = (*SPECTRAL_KEYS, "transform")


class DictionaryMismatchError(ValueError):
    """A dictionary does not fit the front-end (or data) it is used with."""


def frontend_params(frontend: FrontEndConfig | Mapping[str, Any]) -> dict:
    """The spectral parameters of a front-end (``FrontEndConfig.spectral_params()``), from a config, a
    full ``FrontEndConfig`` dict, or an already-reduced ``spectral_params()`` dict."""
    if isinstance(frontend, FrontEndConfig):
        return frontend.spectral_params()
    if isinstance(frontend, Mapping):
        d = dict(frontend)
        if "transform" in d:  # already spectral_params(); fill win_length like spectral_params does
            out = {k: d.get(k) for k in _PARAM_KEYS}
            if out.get("win_length") is None and out.get("n_fft") is not None:
                out["win_length"] = out["n_fft"]
            return out
        return FrontEndConfig.from_any(d).spectral_params()
    if hasattr(frontend, "spectral_params"):  # duck-typed config
        return dict(frontend.spectral_params())
    raise TypeError(f"front-end must be a FrontEndConfig or dict, got {type(frontend).__name__}")


def _plain(value: Any) -> Any:
    """Make meta values safe for ``torch.load(weights_only=True)``: plain containers and scalars only."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if hasattr(value, "item"):  # numpy scalars
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist"):  # numpy arrays
        return value.tolist()
    return str(value)


def _check_dictionary(W: Any, source: str) -> torch.Tensor:
    if not isinstance(W, torch.Tensor):
        try:
            W = torch.as_tensor(W)
        except Exception as exc:  # noqa: BLE001 - report what the value was
            raise ValueError(f"{source}: dictionary must be an (F, K) array, got {type(W).__name__}") from exc
    if W.dim() != 2:
        raise ValueError(f"{source}: dictionary must be 2-D (F, K), got shape {tuple(W.shape)}")
    if W.is_complex() or W.dtype == torch.bool:
        raise ValueError(f"{source}: dictionary must be real-valued, got dtype {W.dtype}")
    W = W.detach().to(device="cpu", dtype=torch.float32)
    if W.numel() == 0:
        raise ValueError(f"{source}: dictionary is empty, shape {tuple(W.shape)}")
    if not torch.isfinite(W).all():
        bad = int((~torch.isfinite(W)).sum())
        raise ValueError(f"{source}: dictionary has {bad} non-finite (NaN/inf) entries")
    if (W < 0).any():
        raise ValueError(f"{source}: dictionary has negative entries (min {float(W.min()):.4g}); NMF dictionaries are non-negative")
    return W


def _normalise(W: torch.Tensor, source: str) -> torch.Tensor:
    """Unit-L2-norm columns; a dictionary that already has them is returned unchanged (bit-exact round trips)."""
    norms = W.norm(dim=0)
    zero = (norms <= 1e-12).nonzero().flatten().tolist()
    if zero:
        raise ValueError(f"{source}: dictionary column(s) {zero[:10]}{'…' if len(zero) > 10 else ''} are all zero")
    if bool(((norms - 1).abs() <= 1e-5).all()):
        return W
    return W / norms


#: the label of a noise component in ``meta["labels"]`` (a block learnt on the background, ``nmf.noise_components``)
NOISE_LABEL = "noise"


@dataclass
class DictionaryArtifact:
    """An NMF dictionary with the front-end it was learnt with.

    Attributes:
        W: the dictionary, ``(F, K)`` float32, non-negative, unit-L2-norm columns.
        frontend: ``FrontEndConfig.spectral_params()`` of the front-end it was learnt with.
        meta: ``n_components``, ``beta``, ``sparsity``, ``objective``, ``dataset``, ``split``, ``labels``
            (one per column, optional), and anything else worth keeping (plain values only).
    """

    W: torch.Tensor
    frontend: dict
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.W = _normalise(_check_dictionary(self.W, "DictionaryArtifact"), "DictionaryArtifact")
        self.frontend = frontend_params(self.frontend)
        self.meta = _plain(dict(self.meta or {}))
        self.meta.setdefault("n_components", self.n_components)
        labels = self.meta.get("labels")
        if labels is not None and len(labels) != self.n_components:
            raise ValueError(f"DictionaryArtifact: meta['labels'] has {len(labels)} entries for {self.n_components} columns")
        n_freq_expected = self.frontend.get("n_fft")
        if n_freq_expected is not None and self.n_freq != int(n_freq_expected) // 2 + 1:
            raise DictionaryMismatchError(
                f"DictionaryArtifact: dictionary has {self.n_freq} frequency rows but front-end n_fft="
                f"{n_freq_expected} gives {int(n_freq_expected) // 2 + 1}"
            )

    # -- shape -----------------------------------------------------------------------------------------
    @property
    def n_components(self) -> int:
        """K, the number of columns (components)."""
        return int(self.W.shape[1])

    @property
    def n_freq(self) -> int:
        """F, the number of frequency rows (``n_fft // 2 + 1``)."""
        return int(self.W.shape[0])

    @property
    def dictionary(self) -> torch.Tensor:
        """Alias of ``W`` (the project's name for it), ``(F, K)``."""
        return self.W

    @property
    def labels(self) -> list | None:
        return self.meta.get("labels")

    # -- checks ----------------------------------------------------------------------------------------
    def mismatches(self, frontend: FrontEndConfig | Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """``{field: (artifact value, model value)}`` for every spectral parameter that differs."""
        theirs = frontend_params(frontend)
        out = {}
        for k in _PARAM_KEYS:
            a, b = self.frontend.get(k), theirs.get(k)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
                same = math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-9)
            else:
                same = a == b
            if not same:
                out[k] = (a, b)
        return out

    def check_frontend(self, frontend: FrontEndConfig | Mapping[str, Any], source: str | None = None) -> None:
        """Raise :class:`DictionaryMismatchError` naming every differing field (artifact vs model)."""
        diff = self.mismatches(frontend)
        if diff:
            where = f" ({source})" if source else ""
            lines = "; ".join(f"{k}: dictionary {a!r} vs model {b!r}" for k, (a, b) in diff.items())
            raise DictionaryMismatchError(
                f"dictionary{where} was learnt with a different front-end than the model uses — {lines}. "
                "Relearn the dictionary with the model's front-end (l2i nmf) or use the matching model."
            )

    # -- files -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "dictionary": self.W.contiguous().clone(),
            "frontend": dict(self.frontend),
            "meta": _plain(self.meta),
        }

    def save(self, path: str | Path) -> Path:
        """Write the artifact (parent folders are created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.to_dict(), tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(
        cls, path: str | Path, frontend: FrontEndConfig | Mapping[str, Any] | None = None
    ) -> "DictionaryArtifact":
        """Read an artifact (the safe loader, :func:`l2i.checkpoints.safe_load`); with ``frontend`` given, refuse a
        mismatch. Raises ``ValueError`` naming the file for anything that is not a readable artifact."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"dictionary artifact not found: {path}")

        try:
            obj = safe_load(path, what="dictionary artifact")
        except CheckpointError as exc:  # truncated, not a torch file, or refused pickled code: named, never run
            raise ValueError(str(exc)) from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(f"{path}: not a dictionary artifact (expected format {FORMAT!r}; found {keys})")
        missing = [k for k in ("dictionary", "frontend") if k not in obj]
        if missing:
            raise ValueError(f"{path}: dictionary artifact is missing field(s) {missing}")
        version = obj.get("version", 0)
        if version > VERSION:
            raise ValueError(f"{path}: dictionary artifact version {version} is newer than this code reads ({VERSION})")
        try:
            art = cls(W=obj["dictionary"], frontend=obj["frontend"], meta=obj.get("meta") or {})
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{path}: {exc}") from None
        if frontend is not None:
            art.check_frontend(frontend, source=str(path))
        return art

    @classmethod
    def from_npy(cls, path: str | Path, frontend: FrontEndConfig | Mapping[str, Any], **meta) -> "DictionaryArtifact":
        """Import an external ``F × K`` ``.npy`` dictionary (as the authors published theirs).

        Checks ``F == n_fft // 2 + 1`` of ``frontend`` and non-negativity; normalises the columns to unit
        L2 norm. ``meta`` is stored as given (e.g. ``dataset="esc50"``, ``source="authors"``).
        """
        import numpy as np

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"dictionary .npy not found: {path}")
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"{path}: not a readable .npy array ({type(exc).__name__}: {str(exc)[:200]})") from None
        params = frontend_params(frontend)
        n_freq = int(params["n_fft"]) // 2 + 1
        if arr.ndim != 2:
            raise ValueError(f"{path}: dictionary must be 2-D (F, K), got shape {arr.shape}")
        if arr.shape[0] != n_freq:
            hint = " (it looks transposed: K × F)" if arr.shape[1] == n_freq else ""
            raise DictionaryMismatchError(
                f"{path}: dictionary has {arr.shape[0]} rows but front-end n_fft={params['n_fft']} needs "
                f"F = {n_freq}{hint}"
            )
        W = _check_dictionary(torch.from_numpy(np.ascontiguousarray(arr)).float(), str(path))
        W = _normalise(W, str(path))
        info = {"source": str(path), "imported": True, **meta}
        return cls(W=W, frontend=params, meta=info)

    def __repr__(self) -> str:
        m = self.meta
        return (
            f"DictionaryArtifact(F={self.n_freq}, K={self.n_components}, sr={self.frontend.get('sample_rate')}, "
            f"n_fft={self.frontend.get('n_fft')}, hop={self.frontend.get('hop_length')}, beta={m.get('beta')}, "
            f"objective={m.get('objective')})"
        )


def class_evidence(dictionary: DictionaryArtifact, source: str) -> list[bool]:
    """``(K,)``: True for the components that are not the dictionary's noise block (``noise_evidence: false``)."""
    labels = dictionary.labels
    if not labels or NOISE_LABEL not in labels:
        raise ValueError(
            f"noise_evidence: false needs a dictionary with noise components, but {source} has none "
            "(learn it with nmf.noise_components > 0, or keep noise_evidence: true)"
        )
    return [label != NOISE_LABEL for label in labels]


def block_evidence(dictionary: DictionaryArtifact, class_names: list[str], source: str) -> list[list[bool]]:
    """``(C, K)``: row c is True on the dictionary columns labelled with class c's name (``block_evidence: true``:
    Θ tied to the class blocks; noise / shared columns carry no evidence for any class)."""
    labels = dictionary.labels
    names = [str(n) for n in class_names]
    if not labels or not set(labels) & set(names):
        raise ValueError(
            f"block_evidence: true needs a dictionary of class blocks whose labels are the class names {names}, but "
            f"{source} has labels {sorted(set(labels or []))[:8]} (learn it with nmf.per_class_components > 0)"
        )
    return [[label == name for label in labels] for name in names]


def theta_evidence(dictionary: "DictionaryArtifact", class_names, source: str, noise_evidence: bool = True,
                   block: bool = False):
    """Θ's ``evidence`` from the interpreter's two options (``block_evidence``, ``noise_evidence``) and the
    dictionary's column labels: ``(C, K)`` tied to the class blocks, ``(K,)`` without the noise block, or None
    (every component, the authors' method). Used by the Lightning modules and by the Lightning-free loader
    (:func:`l2i.trained.build_interpreter`), so a model is rebuilt with the evidence it was trained with."""
    if block:
        return block_evidence(dictionary, list(class_names), source)
    return None if noise_evidence else class_evidence(dictionary, source)
