"""WaveformCache: decode once, reuse, and re-decode exactly when a file, the rate or the length changes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from datamodules import decode
from datamodules.cache import WaveformCache
from fixtures_datasets import write_wav


@pytest.fixture
def clips(tmp_path):
    return [write_wav(tmp_path / "audio" / f"clip{i}.wav", 0.2, 32000, 300.0 + 100 * i, seed=i) for i in range(3)]


@pytest.fixture
def decode_log(monkeypatch):
    """Records every file the cache decodes (the cache looks ``decode.decode_clip`` up at call time)."""
    calls: list[str] = []
    real = decode.decode_clip

    def counting(path, *a, **k):
        calls.append(os.path.basename(path))
        return real(path, *a, **k)

    monkeypatch.setattr(decode, "decode_clip", counting)
    return calls


def build(cache_dir, paths, rate=8000, n=1600, dtype="float32"):
    return WaveformCache(cache_dir, rate, n, dtype=dtype).build([str(p) for p in paths], tag="train", progress=False)


def test_rows_equal_decoding_and_reuse(tmp_path, clips, decode_log):
    arr = build(tmp_path / "c", clips)
    assert decode_log == ["clip0.wav", "clip1.wav", "clip2.wav"]
    assert len(arr) == 3 and arr.ok.all() and arr.lengths.tolist() == [1600] * 3
    ref = [arr.read(i) for i in range(3)]
    assert all(r.abs().max() > 0.1 for r in ref)
    decode_log.clear()
    again = build(tmp_path / "c", clips)
    assert decode_log == []  # nothing changed: nothing decoded
    for i in range(3):
        assert torch.equal(again.read(i), ref[i])
    torch.testing.assert_close(again.read(1, 100, 200), ref[1][100:200])
    assert torch.equal(again.read_many([2, 0, 2]), torch.stack([ref[2], ref[0], ref[2]]))  # one batched read


def test_rows_match_the_decoder(tmp_path, clips):
    arr = build(tmp_path / "c", clips, n=2000)  # longer than the clip: zero padded, length kept
    want = decode.decode_clip(str(clips[2]), 8000, 2000)
    torch.testing.assert_close(arr.read(2), want)
    assert arr.lengths.tolist() == [1600] * 3 and arr.read(2)[1600:].abs().max() == 0
    half = build(tmp_path / "c", clips, n=2000, dtype="float16")
    torch.testing.assert_close(half.read(2), want, atol=1e-3, rtol=0)


def test_changed_file_is_redecoded(tmp_path, clips, decode_log):
    first = build(tmp_path / "c", clips)
    old = first.read(1).clone()
    write_wav(clips[1], 0.2, 32000, 1000.0, seed=9)  # new content, same name
    st = os.stat(clips[1])
    os.utime(clips[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    decode_log.clear()
    second = build(tmp_path / "c", clips)
    assert decode_log == ["clip1.wav"]  # only the changed file
    assert not torch.allclose(second.read(1), old)
    torch.testing.assert_close(second.read(0), first.read(0))
    # the old reader still sees a consistent (old) array: rows were replaced by a rename, not in place
    torch.testing.assert_close(first.read(1), old)


def test_rate_or_length_change_builds_a_new_array(tmp_path, clips, decode_log):
    a = build(tmp_path / "c", clips, rate=8000, n=1600)
    decode_log.clear()
    b = build(tmp_path / "c", clips, rate=16000, n=3200)
    assert len(decode_log) == 3 and b.array_path != a.array_path
    decode_log.clear()
    c = build(tmp_path / "c", clips, rate=8000, n=800)
    assert len(decode_log) == 3 and c.array_path not in (a.array_path, b.array_path)
    assert c.read(0).shape == (800,)
    decode_log.clear()
    build(tmp_path / "c", clips, rate=8000, n=1600)
    assert decode_log == []  # the first array is still valid


def test_a_tampered_manifest_forces_a_rebuild(tmp_path, clips, decode_log):
    a = build(tmp_path / "c", clips)
    manifest = a.array_path[:-4] + ".json"
    with open(manifest, "w") as fh:
        fh.write("{not json")
    decode_log.clear()
    build(tmp_path / "c", clips)
    assert len(decode_log) == 3


def test_failures_are_recorded_with_reasons(tmp_path, clips):
    clips[2].write_bytes(b"")
    arr = build(tmp_path / "c", clips)
    assert arr.ok.tolist() == [True, True, False]
    assert arr.failures() == [(str(clips[2].resolve()), "file is empty (0 bytes)")]
    sub = arr.subset([0, 1])
    assert len(sub) == 2 and sub.failures() == [] and torch.equal(sub.read(1), arr.read(1))


def test_bad_dtype():
    with pytest.raises(ValueError, match="float16 or float32"):
        WaveformCache("x", 8000, 10, dtype="int8")


def test_cached_datamodule_in_worker_processes(tmp_path):
    """The cache array pickles into DataLoader workers (memmap opened per process) and yields the same batch."""
    from datamodules.esc50 import ESC50DataModule
    from fixtures_datasets import make_esc50

    fx = make_esc50(tmp_path, classes=(0, 1), clips_per_class_per_fold=1)
    kw = dict(sample_rate=11025, duration_s=0.25, test_fold=1, val_fold=2)
    plain = ESC50DataModule(str(fx.root), loader={"batch_size": 4}, **kw)
    cached = ESC50DataModule(str(fx.root), loader={"batch_size": 4, "cache_dir": str(tmp_path / "cache"),
                                                   "cache_dtype": "float32", "num_workers": 1,
                                                   "persistent_workers": True}, **kw)
    cached.prepare_data()
    plain.setup("test")
    cached.setup("test")
    a, b = next(iter(plain.test_dataloader())), next(iter(cached.test_dataloader()))
    assert a["id"] == b["id"]
    torch.testing.assert_close(a["waveform"], b["waveform"])
    assert (tmp_path / "cache" / "esc50").is_dir()


def test_decode_clip_resamples_like_l2i_audio(clips):
    """The cached-kernel resampler gives l2i.audio's samples (same sinc filter), and the file rate is read."""
    from l2i.audio import load_audio

    for rate in (8000, 16000, 32000):
        want, _ = load_audio(str(clips[0]), rate)
        got = decode.decode_clip(str(clips[0]), rate)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_a_full_disk_fails_up_front_naming_the_folder_and_bytes_and_leaves_no_temporary(tmp_path, clips, monkeypatch):
    import shutil

    from datamodules.cache import CacheSpaceError

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr("datamodules.cache.shutil.disk_usage", lambda p: usage._replace(free=5000))
    with pytest.raises(CacheSpaceError, match=r"cache folder .*/c: the decode cache needs 23,296 bytes \(3 clips x "
                                              r"1600 samples x 4 bytes\) but only 5,000 are free"):
        build(tmp_path / "c", clips)
    assert list((tmp_path / "c").iterdir()) == []


def test_a_full_disk_found_by_the_block_reservation_leaves_no_temporary(tmp_path, clips, monkeypatch):
    """The free-space figure can be stale (another writer): reserving the blocks fails cleanly (no SIGBUS)."""
    import errno

    from datamodules.cache import CacheSpaceError

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("datamodules.cache.os.posix_fallocate", no_space)
    with pytest.raises(CacheSpaceError, match=r"cache folder .*/c: no space left for the decode cache \(23,296 bytes"):
        build(tmp_path / "c", clips)
    assert list((tmp_path / "c").iterdir()) == []


def test_temporaries_are_removed_when_the_build_fails_and_stale_ones_of_killed_builds_are_swept(tmp_path, clips, monkeypatch):
    cache_dir = tmp_path / "c"
    cache_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = cache_dir / f"train-8000hz-1600-float32-0123456789abcdef.tmp-{dead.pid}.npy"
    stale.write_bytes(b"\0" * 1000)
    alive = cache_dir / f"train-8000hz-1600-float32-0123456789abcdef.tmp-{os.getppid()}.npy"  # a running build's
    alive.write_bytes(b"\0" * 10)

    def broken(*a, **k):
        raise KeyboardInterrupt  # the user presses Ctrl-C during decoding

    monkeypatch.setattr(decode, "decode_clip", broken)
    with pytest.raises(KeyboardInterrupt):
        build(cache_dir, clips)
    assert sorted(p.name for p in cache_dir.iterdir()) == [alive.name]


def test_a_truncated_cache_array_is_rebuilt(tmp_path, clips, decode_log):
    first = build(tmp_path / "c", clips)
    expected = first.read_many([0, 1, 2]).clone()
    array_path = first.array_path
    with open(array_path, "r+b") as f:
        f.truncate(os.path.getsize(array_path) - 3000)
    decode_log.clear()
    with pytest.warns(RuntimeWarning, match=r"cache array .*\.npy is truncated or unreadable; rebuilding it"):
        again = build(tmp_path / "c", clips)
    assert len(decode_log) == 3
    assert torch.equal(again.read_many([0, 1, 2]), expected)
