"""Decode + resample once into an on-disk cache; read clips back from a memory-mapped array.

Layout under ``cache_dir`` (one pair of files per list of paths, e.g. one per split):

- ``{tag}-{rate}hz-{samples}-{dtype}-{digest}.npy``: ``(N, samples)`` float16/float32, row ``i`` = file ``i``
  decoded with :func:`datamodules.decode.decode_clip` at ``rate``, padded with zeros / cropped to ``samples``;
- the same name with ``.json``: the manifest - per row the file's ``[path, mtime_ns, size]``, the decoded
  length (before padding) and, for files that failed, the reason.

``digest`` hashes the ordered path list, so the file names already key on path + rate + length + dtype.
Each row is also keyed on its file's mtime and size: :meth:`WaveformCache.build` re-decodes exactly the rows
whose file changed (or that are new) and reuses the rest. Writes go to a temporary file and are renamed
into place (``os.replace``) so readers never see a half-written array.

Readers (:class:`CachedArray`) open the ``.npy`` lazily with ``mmap_mode="r"`` in each process, so the
object pickles cheaply into DataLoader workers and pages are shared through the OS page cache.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from datamodules import decode
from datamodules.buffers import batch_buffer, copy_into
from l2i.audio import AudioFileError

__all__ = ["WaveformCache", "CachedArray", "CacheSpaceError"]

CACHE_VERSION = 1


def _fingerprint(path: str) -> list:
    try:
        st = os.stat(path)
    except OSError:
        return [path, -1, -1]
    return [path, int(st.st_mtime_ns), int(st.st_size)]


class CacheSpaceError(OSError):
    """The cache folder has not enough free space for the array to build (the message names both)."""


_TMP = re.compile(r"\.tmp-(\d+)\.(npy|json)$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def _sweep_stale_temporaries(cache_dir: Path) -> None:
    """Remove ``*.tmp-<pid>.npy/.json`` left by builds that were killed (their process is gone); a build
    running in another process keeps its files."""
    for path in cache_dir.glob("*.tmp-*.*"):
        m = _TMP.search(path.name)
        if m and not _pid_alive(int(m.group(1))):
            try:
                path.unlink()
            except OSError:
                pass


def _allocate(path: Path, shape: tuple[int, int], dtype: str) -> np.ndarray:
    """A new ``.npy`` memmap of ``shape`` whose blocks are reserved on disk now (not a sparse file).

    Raises:
        CacheSpaceError: the folder has not enough free space; names the folder, the bytes needed and free.
    """
    itemsize = np.dtype(dtype).itemsize
    need = int(np.prod(shape)) * itemsize + 4096  # + the .npy header
    free = shutil.disk_usage(path.parent).free
    what = f"{shape[0]} clips x {shape[1]} samples x {itemsize} bytes"
    hint = "free some space, point cache_dir to a larger disk, or set cache_dir: null to decode on the fly"
    if free < need:
        raise CacheSpaceError(errno.ENOSPC, f"cache folder {path.parent}: the decode cache needs {need:,} bytes "
                                            f"({what}) but only {free:,} are free; {hint}")
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    if hasattr(os, "posix_fallocate"):
        try:
            with open(path, "r+b") as f:
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                del arr
                raise CacheSpaceError(errno.ENOSPC, f"cache folder {path.parent}: no space left for the decode cache "
                                                    f"({need:,} bytes, {what}); {hint}") from None
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
                raise
            # a file system without fallocate: the free-space check above is all we can do
    return arr


def _array_is_whole(path: Path, shape: tuple[int, int], dtype: str) -> bool:
    """Whether the ``.npy`` at ``path`` has the expected header and all of its bytes (not truncated)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in readers:
                return False
            header = readers[version](f)
            offset = f.tell()
        size = path.stat().st_size
    except (OSError, ValueError):
        return False
    stored_shape, _, stored_dtype = header
    if tuple(stored_shape) != tuple(shape) or np.dtype(stored_dtype) != np.dtype(dtype):
        return False
    return size >= offset + int(np.prod(shape)) * np.dtype(dtype).itemsize


def _identity(x):
    return x


class _DecodeRows(Dataset):
    """Decodes the rows to (re)build; used through a DataLoader so decoding runs in worker processes."""

    def __init__(self, paths: Sequence[str], rows: Sequence[int], sample_rate: int, num_samples: int):
        self.paths, self.rows, self.sample_rate, self.num_samples = list(paths), list(rows), sample_rate, num_samples

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = self.rows[i]
        path = self.paths[row]
        try:
            wav = decode.decode_clip(path, self.sample_rate, None, max_samples=self.num_samples)
        except AudioFileError as exc:
            return row, None, exc.reason
        length = min(int(wav.shape[-1]), self.num_samples)
        return row, wav[:length], length  # a tensor: from a worker through shared memory, not the pipe


class CachedArray:
    """Read access to one cache array. ``read(i)`` -> float32 ``(samples,)`` tensor; ``lengths[i]`` =
    decoded samples (before zero padding); ``ok[i]`` False for files that failed (reason in ``reasons``).

    ``subset(rows)`` gives a view over selected rows (same file, no copy)."""

    def __init__(self, array_path: str, paths: list[str], lengths: np.ndarray, ok: np.ndarray,
                 reasons: list[str | None], rows: np.ndarray | None = None):
        self.array_path = str(array_path)
        self.paths = paths
        self._lengths = np.asarray(lengths, dtype=np.int64)
        self._ok = np.asarray(ok, dtype=bool)
        self._reasons = reasons
        self.rows = np.arange(len(paths)) if rows is None else np.asarray(rows, dtype=np.int64)
        self._mm: np.ndarray | None = None
        self._t: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def lengths(self) -> np.ndarray:
        return self._lengths[self.rows]

    @property
    def ok(self) -> np.ndarray:
        return self._ok[self.rows]

    def failures(self) -> list[tuple[str, str]]:
        """``[(path, reason)]`` of the rows whose file could not be decoded."""
        return [(self.paths[r], self._reasons[r] or "decode failed") for r in self.rows if not self._ok[r]]

    def subset(self, rows: Sequence[int]) -> "CachedArray":
        return CachedArray(self.array_path, self.paths, self._lengths, self._ok, self._reasons, self.rows[np.asarray(rows, dtype=np.int64)])

    def _array(self) -> np.ndarray:
        if self._mm is None:
            self._mm = np.load(self.array_path, mmap_mode="r")
        return self._mm

    def _tensor(self) -> torch.Tensor:
        """The memmap as a (read-only) torch tensor: no copy, rows are views."""
        if self._t is None:
            with warnings.catch_warnings():  # torch warns about read-only arrays; this one is never written
                warnings.simplefilter("ignore", UserWarning)
                self._t = torch.from_numpy(self._array())
        return self._t

    def read(self, index: int, start: int = 0, stop: int | None = None,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Samples ``[start:stop]`` of row ``index`` as ``(stop - start,)`` of ``dtype``."""
        src = self._tensor()[self.rows[index]][start:stop]
        return copy_into(torch.empty(src.shape[0], dtype=dtype), src)

    def read_many(self, indices: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Whole rows ``indices`` as one ``(len(indices), samples)`` tensor (see :meth:`read_chunks`)."""
        return self.read_chunks(indices, None, self._array().shape[1], dtype)

    def read_chunks(self, indices: Sequence[int], starts: Sequence[int] | None, length: int,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Samples ``[starts[k], starts[k] + length)`` of row ``indices[k]`` for every ``k`` (``starts`` None:
        from 0), zero past the row's end, as one ``(len(indices), length)`` tensor of ``dtype`` (float32, or
        float16: the float16 cache's samples as stored, half the bytes to hand over and no conversion here).

        One pass over the memmap in file order, each sample converted once, straight into the batch (in a
        DataLoader worker a shared-memory buffer the main process maps as is: :mod:`datamodules.buffers`)."""
        rows = self.rows[np.asarray(indices, dtype=np.int64)]
        starts = np.zeros(len(rows), dtype=np.int64) if starts is None else np.asarray(starts, dtype=np.int64)
        src, width = self._tensor(), self._array().shape[1]
        out = batch_buffer((len(rows), int(length)), dtype)
        for k in np.argsort(rows, kind="stable").tolist():
            a = int(starts[k])
            b = min(a + int(length), width)
            n = max(0, b - a)
            if n:
                copy_into(out[k, :n], src[rows[k], a:b])
            if n < length:
                out[k, n:] = 0
        return out

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_mm"] = state["_t"] = None  # each worker maps the file itself
        return state


class WaveformCache:
    """A directory of cache arrays at one ``sample_rate`` / ``num_samples`` / ``dtype``.

    ``build(paths, tag)`` returns a :class:`CachedArray` with row ``i`` = ``paths[i]``, decoding only what
    is missing or stale (file mtime or size changed). A file that fails to decode leaves a zero row with
    ``ok=False`` and its reason; the caller applies its ``on_bad_file`` policy.
    """

    def __init__(self, cache_dir: str | os.PathLike, sample_rate: int, num_samples: int,
                 dtype: Literal["float16", "float32"] = "float16"):
        if dtype not in ("float16", "float32"):
            raise ValueError(f"cache dtype must be float16 or float32, got {dtype!r}")
        self.cache_dir = Path(cache_dir)
        self.sample_rate = int(sample_rate)
        self.num_samples = int(num_samples)
        self.dtype = dtype

    def key(self, paths: Sequence[str], tag: str) -> str:
        digest = hashlib.sha1("\n".join(paths).encode()).hexdigest()[:16]
        safe_tag = "".join(c if c.isalnum() or c in "-_" else "_" for c in tag) or "split"
        return f"{safe_tag}-{self.sample_rate}hz-{self.num_samples}-{self.dtype}-{digest}"

    def _load_manifest(self, manifest_path: Path, paths: list[str]) -> dict | None:
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            return None
        expected = {"version": CACHE_VERSION, "sample_rate": self.sample_rate,
                    "num_samples": self.num_samples, "dtype": self.dtype}
        if any(manifest.get(k) != v for k, v in expected.items()):
            return None
        if [e[0] for e in manifest.get("files", [])] != paths:
            return None
        return manifest

    def build(self, paths: Sequence[str], tag: str = "split", *, num_workers: int = 0,
              progress: bool = True) -> CachedArray:
        """Make the cache for ``paths`` current and return it (see class doc).

        Before writing, the free space of ``cache_dir`` is checked and the temporary array's blocks are
        reserved (``posix_fallocate``), so a full disk fails at once with :class:`CacheSpaceError` naming the
        folder and the bytes needed (a sparse memory map would die of SIGBUS when a page cannot be allocated).
        The temporary files are removed on every exit path; those left by killed builds (whose process is
        gone) are removed by the next build. An array shorter than its header says (truncated) is rebuilt."""
        paths = [str(Path(p).resolve()) for p in paths]
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        _sweep_stale_temporaries(self.cache_dir)
        key = self.key(paths, tag)
        array_path = self.cache_dir / f"{key}.npy"
        manifest_path = self.cache_dir / f"{key}.json"
        n = len(paths)
        current = [_fingerprint(p) for p in paths]

        manifest = self._load_manifest(manifest_path, paths) if array_path.exists() else None
        if manifest is not None and not _array_is_whole(array_path, (n, self.num_samples), self.dtype):
            warnings.warn(f"cache array {array_path} is truncated or unreadable; rebuilding it", RuntimeWarning, stacklevel=2)
            manifest = None
        fresh = manifest is None
        if fresh:
            lengths = np.zeros(n, dtype=np.int64)
            ok = np.zeros(n, dtype=bool)
            reasons: list[str | None] = [None] * n
            stale = list(range(n))
        else:
            lengths = np.asarray(manifest["lengths"], dtype=np.int64)
            ok = np.asarray(manifest["ok"], dtype=bool)
            reasons = list(manifest["reasons"])
            stale = [i for i in range(n) if manifest["files"][i] != current[i]]

        if stale:
            tmp_path = array_path.with_name(f"{key}.tmp-{os.getpid()}.npy")
            tmp_manifest = manifest_path.with_name(f"{key}.tmp-{os.getpid()}.json")
            try:
                arr = _allocate(tmp_path, (n, self.num_samples), self.dtype)
                if not fresh:
                    # copy-on-update: readers of the old array keep a consistent file until os.replace
                    old = np.load(array_path, mmap_mode="r")
                    arr[:] = old
                    del old
                loader = DataLoader(
                    _DecodeRows(paths, stale, self.sample_rate, self.num_samples),
                    batch_size=None, num_workers=num_workers, collate_fn=_identity,
                )
                desc = f"caching {tag} ({len(stale)}/{n} files @ {self.sample_rate} Hz)"
                for row, wav, extra in tqdm(loader, total=len(stale), desc=desc, disable=not progress, leave=False):
                    if wav is None:
                        arr[row] = 0
                        ok[row], lengths[row], reasons[row] = False, 0, str(extra)
                    else:
                        arr[row, :extra] = wav.numpy()
                        arr[row, extra:] = 0
                        ok[row], lengths[row], reasons[row] = True, int(extra), None
                arr.flush()
                del arr
                os.replace(tmp_path, array_path)
                manifest = {
                    "version": CACHE_VERSION, "sample_rate": self.sample_rate, "num_samples": self.num_samples,
                    "dtype": self.dtype, "files": current, "lengths": lengths.tolist(), "ok": ok.tolist(),
                    "reasons": reasons,
                }
                tmp_manifest.write_text(json.dumps(manifest))
                os.replace(tmp_manifest, manifest_path)
            finally:
                arr = None
                for leftover in (tmp_path, tmp_manifest):
                    leftover.unlink(missing_ok=True)
        return CachedArray(str(array_path), paths, lengths, ok, reasons)
