"""Batched reads: a loader that fetches a whole batch at once (``__getitems__``: one pass over the cache memmap,
or every file decoded straight into its batch row) yields exactly the items, order and samples of the
per-item path (``dataset[i]`` + collate), cached and uncached, in the main process and in workers; MTAT
chunks (random and enumerated) likewise. Plus the pieces: bounded decoding, decoding into a buffer, shared
batch buffers, thread-independent casts."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.buffers import batch_buffer, copy_into
from datamodules.esc50 import ESC50DataModule
from datamodules.decode import decode_clip
from datamodules.files import LoaderConfig, collate_batch
from datamodules.magnatagatune import MagnaTagATuneDataModule
from fixtures_datasets import make_esc50, make_mtat, write_mp3, write_wav
from l2i.audio import load_audio


class PerItem(Dataset):
    """The same dataset without ``__getitems__``: the DataLoader falls back to ``dataset[i]`` per item."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i]


def per_item_loader(dm, split, shuffle, num_workers=0):
    """``dm``'s loader for ``split`` (same sampler, generator, workers) reading item by item."""
    ref = dm._loader(split, shuffle=shuffle)
    return DataLoader(PerItem(ref.dataset), batch_size=ref.batch_size, sampler=ref.sampler, num_workers=num_workers,
                      collate_fn=ref.collate_fn, generator=torch.Generator().manual_seed(dm.seed))


def same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], torch.Tensor):
                assert x[key].dtype == y[key].dtype and torch.equal(x[key], y[key]), key
            else:
                assert x[key] == y[key], key


@pytest.fixture(scope="module")
def esc(tmp_path_factory):
    return make_esc50(tmp_path_factory.mktemp("esc"), classes=(0, 1, 2), clips_per_class_per_fold=2)


@pytest.mark.parametrize("cached", [False, True])
@pytest.mark.parametrize("num_workers, duration_s", [(0, 0.3), (1, 0.2)])
def test_batched_loader_equals_per_item_loader(esc, tmp_path, cached, num_workers, duration_s):
    # 0.25 s files at 44.1 kHz read at 16 kHz: resampled, and zero padded (0.3 s) or cropped (0.2 s)
    dm = ESC50DataModule(str(esc.root), sample_rate=16000, duration_s=duration_s, test_fold=1, val_fold=2,
                         loader=LoaderConfig(batch_size=5, num_workers=num_workers, cache_dtype="float16",
                                             cache_dir=str(tmp_path / "cache") if cached else None))
    dm.setup("fit")
    for split, shuffle in (("train", True), ("val", False)):
        batched = list(dm._loader(split, shuffle=shuffle))
        assert [len(b["id"]) for b in batched] == [5] * (len(dm.items[split]) // 5) + (
            [len(dm.items[split]) % 5] if len(dm.items[split]) % 5 else [])
        same_batches(batched, list(per_item_loader(dm, split, shuffle, num_workers)))
        assert batched[0]["waveform"].dtype == torch.float32 and batched[0]["waveform"].abs().max() > 0.1


def test_epoch_order_and_resume_skip_are_unchanged_by_batching(esc):
    dm = ESC50DataModule(str(esc.root), sample_rate=8000, duration_s=0.2, test_fold=1, val_fold=2,
                         loader=LoaderConfig(batch_size=4))
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(3)
    ids = sum((b["id"] for b in loader), [])
    order = loader.sampler.order().tolist()
    assert ids == [dm.items["train"][i].id for i in order]
    loader.sampler.skip(8)  # ExactResume skips whole batches of items
    assert sum((b["id"] for b in loader), []) == ids[8:]


def test_batch_buffers_are_shared_in_workers_and_cast_on_one_thread():
    class Probe(Dataset):
        def __len__(self):
            return 2

        def __getitems__(self, idx):
            out = batch_buffer((len(idx), 100000))
            copy_into(out[0], torch.ones(100000, dtype=torch.float16))
            return {"shared": out.is_shared(), "out": out}

    (main,) = list(DataLoader(Probe(), batch_size=2, collate_fn=lambda b: b))
    (worker,) = list(DataLoader(Probe(), batch_size=2, num_workers=1, collate_fn=lambda b: b))
    assert main["shared"] is False and worker["shared"] is True  # written once, sent by handle
    assert torch.equal(worker["out"][0], torch.ones(100000))
    src = torch.randn(100003).half()
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            assert torch.equal(copy_into(torch.empty(100003), src), src.float())
            same = torch.empty(100003, dtype=torch.float16)  # float16 batches: a plain copy
            assert copy_into(same, src) is same and torch.equal(same, src)
            row = torch.zeros(2, 100003, dtype=torch.float16)
            copy_into(row[1], src)  # into a batch row, in place
            assert torch.equal(row[1], src) and not bool(row[0].any())
    finally:
        torch.set_num_threads(threads)


def test_cached_read_chunks_zero_pads_past_the_row(esc, tmp_path):
    from datamodules.cache import WaveformCache

    paths = sorted((esc.root / "audio").glob("*.wav"))[:3]
    arr = WaveformCache(tmp_path / "c", 8000, 1000, dtype="float32").build([str(p) for p in paths], progress=False)
    rows = [arr.read(i) for i in range(3)]
    got = arr.read_chunks([2, 0, 2], [900, 0, 10], 200)
    assert got.shape == (3, 200)
    assert torch.equal(got[0, :100], rows[2][900:]) and not got[0, 100:].any()
    assert torch.equal(got[1], rows[0][:200]) and torch.equal(got[2], rows[2][10:210])
    assert torch.equal(arr.read_many([1, 1]), torch.stack([rows[1], rows[1]]))


# -- decoding ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, file_rate", [("wav", 44100), ("wav", 16000), ("mp3", 16000), ("mp3", 44100)])
def test_bounded_decoding_and_decoding_into_a_row_equal_a_whole_decode(tmp_path, fmt, file_rate):
    path = tmp_path / f"a.{fmt}"
    (write_wav if fmt == "wav" else write_mp3)(path, 1.0, file_rate, 330.0, seed=1)
    whole, _ = load_audio(path, 16000)
    for n in (4000, len(whole) + 500):  # a crop, and longer than the file (zero padded)
        want = torch.zeros(n)
        want[:min(n, len(whole))] = whole[:n]
        got = decode_clip(str(path), 16000, n)
        row = torch.full((n,), 7.0)
        into = decode_clip(str(path), 16000, n, out=row)
        assert into.data_ptr() == row.data_ptr()
        # only the frames behind the first n samples are decoded (+ 0.1 s for the resampler): same samples
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
        assert torch.equal(into, got)
    short, _ = load_audio(path, 16000, max_samples=3000)
    assert short.shape == (3000,)


def test_decoding_into_a_buffer_multichannel_and_errors(tmp_path):
    path = tmp_path / "st.flac"
    x = np.stack([np.linspace(-0.5, 0.5, 800), np.linspace(0.5, -0.1, 800)], 1).astype(np.float32)
    sf.write(str(path), x, 8000)
    buf = np.full(1000, 3.0, np.float32)
    wav, rate = load_audio(path, out=buf)
    assert rate == 8000 and wav.shape == (800,) and np.shares_memory(wav.numpy(), buf)
    np.testing.assert_allclose(wav.numpy(), x.mean(1), atol=1e-4)  # 16-bit FLAC
    assert (buf[800:] == 3.0).all()  # load_audio leaves the rest alone; decode_clip zero pads
    with pytest.raises(ValueError, match="float32"):
        load_audio(path, out=np.zeros(10, np.float64))
    with pytest.raises(ValueError, match="contiguous float32 \\(10,\\)"):
        decode_clip(str(path), 8000, 10, out=torch.zeros(11))


# -- MagnaTagATune chunks ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mtat_fx(tmp_path_factory):
    return make_mtat(tmp_path_factory.mktemp("mtat"))


def _mtat(fx, cache, **kw):
    return MagnaTagATuneDataModule(str(fx.root), sample_rate=16000, chunk_s=0.5, clip_s=1.5, **LoaderConfig.group(
        dict(batch_size=2, cache_dir=str(cache) if cache else None, cache_dtype="float32", **kw)))


@pytest.mark.parametrize("cached", [False, True])
def test_mtat_batch_chunks_equal_per_item_chunks(mtat_fx, tmp_path, cached):
    dm = _mtat(mtat_fx, tmp_path / "cache" if cached else None)
    dm.setup("fit")
    dm.setup("test")
    for split in ("train", "val", "test"):
        ds = dm.datasets[split]
        idx = list(range(len(ds)))[::-1]
        torch.manual_seed(5)  # training chunks start at random: the same draws, in the same order
        batch = collate_batch(ds.__getitems__(idx))
        torch.manual_seed(5)
        items = collate_batch([ds[i] for i in idx])
        same_batches([batch], [items])
    # through loaders with a worker: the loader's seeded generator seeds the worker, so both paths draw the
    # same training starts
    dm1 = _mtat(mtat_fx, tmp_path / "cache" if cached else None, num_workers=1)
    dm1.setup("fit")
    for split, shuffle in (("train", True), ("val", False)):
        batched = list(dm1._loader(split, shuffle=shuffle))
        assert batched[0]["waveform"].shape == (2, 8000)
        same_batches(batched, list(per_item_loader(dm1, split, shuffle, num_workers=1)))


def test_mtat_cached_batches_equal_uncached_batches(mtat_fx, tmp_path):
    plain, cached = _mtat(mtat_fx, None), _mtat(mtat_fx, tmp_path / "cache")
    cached.prepare_data()
    for dm in (plain, cached):
        dm.setup("test")
    a, b = list(plain.test_dataloader()), list(cached.test_dataloader())
    assert [x["id"] for x in a] == [x["id"] for x in b]
    for x, y in zip(a, b):
        assert torch.equal(x["chunk_index"], y["chunk_index"]) and torch.equal(x["clip_index"], y["clip_index"])
        torch.testing.assert_close(x["waveform"], y["waveform"], atol=1e-4, rtol=0)


def test_ddp_sampler_injection_shards_items_as_before(esc):
    """Lightning replaces the sampler under DDP (a DistributedSamplerWrapper around the EpochSampler, rebuilt
    DataLoader): batched fetching reads each rank's shard, item for item, in the wrapper's order."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
    from lightning.pytorch.utilities.data import _update_dataloader

    dm = ESC50DataModule(str(esc.root), sample_rate=8000, duration_s=0.2, test_fold=1, val_fold=2,
                         loader=LoaderConfig(batch_size=4))
    dm.setup("fit")
    seen = []
    for rank in (0, 1):
        loader = dm.train_dataloader()
        sampler = DistributedSamplerWrapper(loader.sampler, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(2)
        shard = list(sampler)
        ddp = _update_dataloader(loader, sampler)
        ids = sum((b["id"] for b in ddp), [])
        assert ids == [dm.items["train"][i].id for i in shard]
        seen += ids
    assert sorted(seen) == sorted(it.id for it in dm.items["train"])  # 18 clips: 9 per rank, none twice


@pytest.mark.parametrize("num_workers", [0, 1])
def test_float16_batches_hand_over_the_cache_as_stored_and_become_float32_on_the_device(esc, tmp_path, num_workers):
    kw = dict(sample_rate=16000, duration_s=0.3, test_fold=1, val_fold=2)
    loader = dict(batch_size=5, num_workers=num_workers, cache_dir=str(tmp_path / "cache"), cache_dtype="float16")
    plain = ESC50DataModule(str(esc.root), loader=LoaderConfig(**loader), **kw)
    half = ESC50DataModule(str(esc.root), loader=LoaderConfig(batch_dtype="float16", **loader), **kw)
    for dm in (plain, half):
        dm.setup("fit")
    a, b = list(plain._loader("val", shuffle=False)), list(half._loader("val", shuffle=False))
    assert [x["id"] for x in a] == [y["id"] for y in b]
    for x, y in zip(a, b):
        assert y["waveform"].dtype == torch.float16 and x["waveform"].dtype == torch.float32
        assert torch.equal(y["waveform"].float(), x["waveform"])  # the float16 cache's samples, exactly
        moved = half.on_after_batch_transfer(y, 0)  # what Lightning calls once the batch is on the device
        assert moved["waveform"].dtype == torch.float32 and torch.equal(moved["waveform"], x["waveform"])
        assert y["waveform"].dtype == torch.float16 and torch.equal(moved["target"], y["target"])
    # per-item reads agree with the batched ones
    same_batches(b, list(per_item_loader(half, "val", False, num_workers)))
    assert plain.on_after_batch_transfer(a[0], 0) is a[0]  # float32 batches pass untouched


def test_float16_batches_need_a_cache_and_serve_mtat_chunks(mtat_fx, tmp_path):
    with pytest.raises(ValueError, match="batch_dtype float16 needs cache_dir"):
        ESC50DataModule(str(tmp_path), sample_rate=16000, duration_s=0.3, loader={"batch_size": 5, "batch_dtype": "float16"})
    with pytest.raises(ValueError, match="batch_dtype must be float32 or float16"):
        ESC50DataModule(str(tmp_path), sample_rate=16000, duration_s=0.3,
                        loader={"batch_size": 5, "batch_dtype": "bfloat16", "cache_dir": str(tmp_path / "c")})
    plain = _mtat(mtat_fx, tmp_path / "cache")
    half = MagnaTagATuneDataModule(str(mtat_fx.root), sample_rate=16000, chunk_s=0.5, clip_s=1.5,
                                   loader=LoaderConfig(batch_size=2, cache_dir=str(tmp_path / "cache16"),
                                                       cache_dtype="float16", batch_dtype="float16"))
    for dm in (plain, half):
        dm.setup("test")
    for x, y in zip(plain.test_dataloader(), half.test_dataloader()):
        assert y["waveform"].dtype == torch.float16 and torch.equal(x["chunk_index"], y["chunk_index"])
        torch.testing.assert_close(y["waveform"].float(), x["waveform"], atol=2e-3, rtol=0)  # float16 rounding


def test_float16_batches_reach_the_lightning_module_as_float32(esc, tmp_path):
    import lightning as L

    from lightning_modules.classifier import ClassifierModule

    seen = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(batch["waveform"].dtype)

    dm = ESC50DataModule(str(esc.root), sample_rate=8000, duration_s=0.25, test_fold=1, val_fold=2,
                         loader=LoaderConfig(batch_size=4, cache_dir=str(tmp_path / "cache"), batch_dtype="float16"))
    clf = ClassifierModule(backbone_kwargs={"channels": [4, 4, 4, 4]}, num_classes=dm.num_classes,
                           frontend=dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16))
    L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
              callbacks=[Record()]).fit(clf, datamodule=dm)
    assert seen == [torch.float32, torch.float32]
