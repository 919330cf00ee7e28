"""The dictionary artifact (round trip, front-end checks, .npy import) and the ``l2i nmf`` job / pipeline
stage on a tiny synthetic set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from l2i.dictionary import DictionaryArtifact, DictionaryMismatchError
from l2i.frontend import FrontEndConfig


#: tiny matrices: torch on one thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread_module")


def small_fe(**kw) -> FrontEndConfig:
    return FrontEndConfig(**{"sample_rate": 8000, "n_fft": 256, "hop_length": 128, **kw})


def artifact(K=6, **meta) -> DictionaryArtifact:
    W = torch.rand(129, K, generator=torch.Generator().manual_seed(0))
    return DictionaryArtifact(W, small_fe(), {"beta": 2, "sparsity": 0.1, "objective": 12.5, **meta})


# -- the artifact ------------------------------------------------------------------------------------------
def test_round_trip_weights_only(tmp_path):
    a = artifact(labels=[f"c{i}" for i in range(6)], dataset="synthetic", split="train")
    path = a.save(tmp_path / "sub" / "dictionary.pt")
    raw = torch.load(path, weights_only=True)  # plain tensors / dicts only
    assert raw["format"] == "l2i.dictionary" and raw["dictionary"].shape == (129, 6)
    b = DictionaryArtifact.load(path, frontend=small_fe())
    assert torch.equal(a.W, b.W) and b.frontend == a.frontend and b.meta == a.meta
    assert b.n_components == 6 and b.n_freq == 129 and b.labels[2] == "c2"
    assert b.W.dtype == torch.float32
    assert torch.allclose(b.W.norm(dim=0), torch.ones(6), atol=1e-6)  # unit-norm columns
    assert (b.W >= 0).all()
    # a full FrontEndConfig dict and a spectral_params() dict are accepted as well
    DictionaryArtifact.load(path, frontend=small_fe().to_dict())
    DictionaryArtifact.load(path, frontend=small_fe().spectral_params())
    # parameters that do not change a frame's meaning (mel bands, duration) are not compared
    DictionaryArtifact.load(path, frontend=small_fe(n_mels=32, duration_s=3.0))


def test_mismatched_frontend_refused_naming_every_field(tmp_path):
    path = artifact().save(tmp_path / "d.pt")
    model = FrontEndConfig(sample_rate=16000, n_fft=256, hop_length=64, window="hamming")
    with pytest.raises(DictionaryMismatchError) as err:
        DictionaryArtifact.load(path, frontend=model)
    msg = str(err.value)
    assert str(path) in msg
    for piece in ("sample_rate: dictionary 8000 vs model 16000", "hop_length: dictionary 128 vs model 64",
                  "window: dictionary 'hann' vs model 'hamming'"):
        assert piece in msg
    assert "n_fft" not in msg  # equal fields are not listed
    assert set(artifact().mismatches(model)) == {"sample_rate", "hop_length", "window"}
    assert isinstance(err.value, ValueError)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        DictionaryArtifact.load(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"dictionary artifact .*corrupt\.pt: not a readable torch file"):
        DictionaryArtifact.load(bad)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError, match="other.pt: not a dictionary artifact"):
        DictionaryArtifact.load(other)
    broken = tmp_path / "broken.pt"
    d = artifact().to_dict()
    d["dictionary"] = -d["dictionary"]
    torch.save(d, broken)
    with pytest.raises(ValueError, match="broken.pt: .*negative"):
        DictionaryArtifact.load(broken)


def test_constructor_checks():
    with pytest.raises(DictionaryMismatchError, match="n_fft=256 gives 129"):
        DictionaryArtifact(torch.rand(257, 4), small_fe())
    with pytest.raises(ValueError, match="NaN"):
        DictionaryArtifact(torch.full((129, 2), float("nan")), small_fe())
    with pytest.raises(ValueError, match="labels"):
        DictionaryArtifact(torch.rand(129, 3), small_fe(), {"labels": ["a"]})
    with pytest.raises(ValueError, match=r"column\(s\) \[1\]"):
        DictionaryArtifact(torch.cat([torch.rand(129, 1), torch.zeros(129, 1)], 1), small_fe())


def test_from_npy(tmp_path):
    W = np.random.default_rng(0).random((129, 5)) * 3
    np.save(tmp_path / "w.npy", W)
    a = DictionaryArtifact.from_npy(tmp_path / "w.npy", small_fe(), dataset="esc50", source_note="authors")
    assert a.n_components == 5 and a.meta["dataset"] == "esc50" and a.meta["imported"]
    assert torch.allclose(a.W.norm(dim=0), torch.ones(5), atol=1e-6)
    cos = torch.nn.functional.cosine_similarity(a.W, torch.from_numpy(W).float(), dim=0)
    assert torch.allclose(cos, torch.ones(5), atol=1e-6)  # same directions
    np.save(tmp_path / "t.npy", W.T)
    with pytest.raises(DictionaryMismatchError, match="looks transposed"):
        DictionaryArtifact.from_npy(tmp_path / "t.npy", small_fe())
    np.save(tmp_path / "neg.npy", W - 1)
    with pytest.raises(ValueError, match="neg.npy: dictionary has negative"):
        DictionaryArtifact.from_npy(tmp_path / "neg.npy", small_fe())
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        DictionaryArtifact.from_npy(tmp_path / "nope.npy", small_fe())


# -- the job ------------------------------------------------------------------------------------------------
TINY = {
    "data": {"class_path": "datamodules.SyntheticDataModule",
             "init_args": {"num_train": 24, "num_val": 16, "num_test": 8, "sample_rate": 8000, "duration_s": 1.0, "batch_size": 8}},
    "frontend": {"sample_rate": 8000, "n_fft": 256, "hop_length": 128},
    "nmf": {"n_components": 8, "sparsity": 0.05, "epochs": 2, "batch_frames": 400, "transform_iters": 20},
    "eval_clips": 16,
    "progress": False,
    "wandb": False,
    "device": "cpu",
}


def test_learn_dictionary_cli(tmp_path):
    import yaml

    from experiments.nmf import main

    cfg = tmp_path / "nmf.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "out": str(tmp_path / "run" / "dictionary.pt")}))
    assert main(["--config", str(cfg)]) == 0
    art = DictionaryArtifact.load(tmp_path / "run" / "dictionary.pt", frontend=small_fe())
    assert art.W.shape == (129, 8)
    m = art.meta
    assert m["dataset"] == "synthetic" and m["split"] == "train" and m["clips"] == 24
    assert m["frames"] == 24 * 63 and m["n_components"] == 8 and m["beta"] == 2 and m["sparsity"] == 0.05
    assert np.isfinite(m["objective"]) and 0 < m["relative_error"] < 0.6
    assert 0 < m["class_purity"] <= 1
    for name in ("dictionary.png", "reconstructions.png"):
        assert (tmp_path / "run" / name).stat().st_size > 1000
    assert "n_components: 8" in (tmp_path / "run" / "dictionary.yaml").read_text()  # the resolved config
    # bad settings: a clear message and exit code 2, no traceback
    assert main(["--config", str(cfg), "--nmf.beta", "3"]) == 2


def test_dictionary_stage_uses_the_classifier_frontend(tmp_path):
    from experiments.stages.dictionary import dictionary_stage
    from experiments.pipeline import PipelineContext

    fe = FrontEndConfig(sample_rate=8000, n_fft=128, hop_length=64, n_mels=32)
    ckpt = tmp_path / "classifier.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"frontend": fe.to_dict(), "lr": 1e-3}}, ckpt)
    ctx = PipelineContext(out_dir=tmp_path / "demo", artifacts={"classifier": str(ckpt)})
    figures = dictionary_stage(ctx, dict(TINY))  # TINY's n_fft 256 is overridden by the checkpoint's 128
    path = ctx.artifacts["dictionary"]
    assert path == str(tmp_path / "demo" / "dictionary" / "dictionary.pt")
    art = DictionaryArtifact.load(path, frontend=fe)
    assert art.n_freq == 65 and art.frontend == fe.spectral_params()
    assert figures["n_components"] == 8 and figures["frames"] == 24 * 126 and figures["objective"] > 0
    assert figures["frontend_from"] == str(ckpt)
    assert "dictionary.objective" in ctx.descriptions and "dictionary.frames" in ctx.descriptions
    assert all(isinstance(v, (int, float, str)) for v in figures.values())


def test_wandb_failure_never_crashes(tmp_path, monkeypatch):
    import wandb

    from experiments.nmf import log_images_to_wandb

    img = tmp_path / "x.png"
    img.write_bytes(b"")
    monkeypatch.setattr(wandb, "run", None, raising=False)
    assert log_images_to_wandb([img]) is False  # no active run: nothing logged

    def boom(*a, **k):
        raise RuntimeError("wandb is down")

    monkeypatch.setattr(wandb, "run", object(), raising=False)
    monkeypatch.setattr(wandb, "Image", lambda path: path)
    monkeypatch.setattr(wandb, "log", boom)
    with pytest.warns(UserWarning, match="wandb is down"):
        assert log_images_to_wandb([img]) is False


def test_noise_block_from_background(tmp_path):
    """The synthetic items carry their background noise: a noise block learnt on it comes first."""
    from datamodules.synthetic import SyntheticDataModule
    from experiments.nmf import NMFSettings, learn_dictionary

    dm = SyntheticDataModule(num_train=16, num_val=8, sample_rate=8000, duration_s=1.0, batch_size=8)
    settings = NMFSettings(n_components=6, noise_components=2, epochs=1, batch_frames=400, transform_iters=20)
    art, fig = learn_dictionary(dm, small_fe(), settings, tmp_path / "d.pt", device="cpu", save_images=False, progress=False, eval_split=None)
    assert art.n_components == 8 and fig["noise_components"] == 2
    assert art.labels == ["noise"] * 2 + ["event"] * 6
    with pytest.raises(ValueError, match="no 'silence' waveform"):
        learn_dictionary(dm, small_fe(), NMFSettings(n_components=4, noise_components=2, noise_key="silence"),
                         tmp_path / "e.pt", device="cpu", save_images=False, progress=False, eval_split=None)


def test_per_class_blocks(tmp_path):
    from datamodules.synthetic import SyntheticDataModule
    from experiments.nmf import NMFSettings, learn_dictionary

    dm = SyntheticDataModule(num_classes=3, num_train=24, num_val=12, sample_rate=8000, duration_s=1.0, batch_size=8, distractor_prob=0.0)
    settings = NMFSettings(per_class_components=2, noise_components=1, epochs=1, batch_frames=300, transform_iters=20)
    art, fig = learn_dictionary(dm, small_fe(), settings, tmp_path / "d.pt", device="cpu", save_images=False, progress=False)
    assert art.n_components == 7 and art.meta["n_components"] == 7
    assert art.labels == ["noise", *["harmonic_vibrato"] * 2, *["rising_chirp"] * 2, *["falling_chirp"] * 2]
    assert np.isfinite(fig["objective"]) and fig["relative_error"] < 0.8
    # class blocks are more class-specific than one dictionary of the same size learnt on all clips
    # (measured 0.62 vs 0.50; 1/3 = no preference)
    plain = NMFSettings(n_components=6, noise_components=1, epochs=1, batch_frames=300, transform_iters=20)
    _, fig_plain = learn_dictionary(dm, small_fe(), plain, tmp_path / "p.pt", device="cpu", save_images=False, progress=False)
    assert fig["class_purity"] > fig_plain["class_purity"] + 0.05


@pytest.mark.parametrize("cache_mb", [0.0, 64.0])
def test_frame_stream_batches_and_cache(cache_mb):
    """Mini-batches of exactly batch_frames frames (the last one shorter); with cache_mb=0 nothing is
    kept and every pass streams the clips again (data larger than memory)."""
    from datamodules.synthetic import SyntheticDataModule
    from experiments.nmf import FrameStream, clip_loader
    from l2i.frontend import AudioFrontEnd

    dm = SyntheticDataModule(num_train=10, sample_rate=8000, duration_s=1.0, batch_size=4)
    fe = AudioFrontEnd(small_fe())
    stream = FrameStream(clip_loader(dm, "train", None), fe, torch.device("cpu"), batch_frames=100, cache_mb=cache_mb)
    first = list(stream)
    sizes = [b.shape[1] for b in first]
    assert sum(sizes) == 10 * 63 and sizes[:-1] == [100] * (len(sizes) - 1) and 0 < sizes[-1] <= 100
    assert all(b.shape[0] == 129 and (b >= 0).all() for b in first)
    assert stream.clips == 10 and stream.frames == 630
    second = list(stream)
    assert (stream.cache is None) == (cache_mb == 0)
    if cache_mb:
        assert all(a is b for a, b in zip(first, second))  # served from memory
    else:
        assert sum(b.shape[1] for b in second) == 630  # streamed again
    empty = FrameStream(clip_loader(dm, "train", None), fe, torch.device("cpu"), 100,
                        select=lambda batch: torch.zeros(len(batch["id"]), dtype=torch.bool))
    with pytest.raises(ValueError, match="no clips of the selected class"):
        list(empty)


def test_per_class_blocks_from_isolated_sources(tmp_path):
    """``per_class_source: sources``: every clip holds a distractor of another class; each block is learnt on
    the isolated events of its class, and explains those events better than any other class's block does."""
    from datamodules.synthetic import SyntheticDataModule
    from experiments.nmf import NMFSettings, _ClassSources, clip_loader, learn_dictionary
    from l2i.frontend import AudioFrontEnd
    from l2i.nmf import NMF

    dm = SyntheticDataModule(num_classes=3, num_train=24, num_val=12, sample_rate=8000, duration_s=1.0, batch_size=8,
                             distractor_prob=1.0)
    kw = dict(per_class_components=3, epochs=3, batch_frames=300, transform_iters=30)
    art, fig = learn_dictionary(dm, small_fe(), NMFSettings(per_class_source="sources", **kw), tmp_path / "s.pt",
                                device="cpu", save_images=False, progress=False)
    assert art.labels == [*["harmonic_vibrato"] * 3, *["rising_chirp"] * 3, *["falling_chirp"] * 3]
    fe, W = AudioFrontEnd(small_fe()), art.W
    margins = []
    for c in range(3):  # isolated events of class c (validation clips): relative error with each block alone
        V = torch.cat([fe.nmf_spectrogram(b["waveform"]) for b in _ClassSources(clip_loader(dm, "val", 12), c)])
        V = V[V.sum((1, 2)) > 0]
        errors = []
        for d in range(3):
            block = W[:, 3 * d: 3 * d + 3]
            H = NMF(3).transform(V, block)
            errors.append(float((torch.einsum("fk,bkt->bft", block, H) - V).norm() / V.norm()))
        print(f"class {c}: relative error with each block {[round(e, 3) for e in errors]}")
        assert min(range(3), key=errors.__getitem__) == c, errors
        margins.append(min(e for d, e in enumerate(errors) if d != c) - errors[c])
    # the two chirps share their frame spectra (a sweeping sine), so their margins are the smallest
    assert sum(margins) / 3 > 0.05, margins
    # the waveform of class c is the sum of its sources; clips without one are flagged
    batch = {"waveform": torch.zeros(2, 4), "sources": torch.arange(16.0).reshape(2, 2, 4),
             "source_labels": torch.tensor([[1, 0], [2, -1]])}
    out = next(iter(_ClassSources([batch], 1)))
    assert torch.equal(out["waveform"][0], batch["sources"][0, 0]) and out["has_class"].tolist() == [True, False]
    with pytest.raises(ValueError, match="needs batches with 'sources' and 'source_labels'"):
        next(iter(_ClassSources([{"waveform": torch.zeros(2, 4)}], 0)))
    with pytest.raises(ValueError, match="per_class_source must be"):
        NMFSettings(per_class_source="isolated").build()


def test_unsafe_or_truncated_artifacts_go_through_the_safe_loader_with_the_file_named(tmp_path):
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "l2i-dictionary", "dictionary": torch.rand(5, 2), "payload": Payload()}, evil)
    with pytest.raises(ValueError, match=r"dictionary artifact .*evil\.pt: refused .*posix\.system") as err:
        DictionaryArtifact.load(evil)
    assert "weights_only set to False" not in str(err.value)  # torch's hint is the wrong advice here
    good = tmp_path / "good.pt"
    torch.save({"format": "l2i-dictionary", "dictionary": torch.rand(50, 20)}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"dictionary artifact .*cut\.pt: not a readable torch file"):
        DictionaryArtifact.load(cut)


def test_nmf_command_names_bad_options_folders_and_state_files_up_front(tmp_path, capsys):
    """Each a one-line ``l2i nmf: error:`` with exit code 2, before any (long) fit, naming the option or file."""
    import yaml

    from experiments.nmf import main

    cfg = tmp_path / "nmf.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "out": str(tmp_path / "run" / "dictionary.pt")}))

    def error(*args: str) -> str:
        capsys.readouterr()
        assert main(["--config", str(cfg), *args]) == 2
        return capsys.readouterr().err

    assert "split 'train' has no clips (check data.init_args.num_train" in error("--data.init_args.num_train", "0")
    assert "num_clips: expected int, or null; got many" in error("--num_clips", "many")
    assert "unrecognized arguments: --nmf.bogus 1" in error("--nmf.bogus", "1")
    msg = error("--nmf.n_components", "5000")
    assert "nmf.n_components = 5000 is more than 4 x the 129 frequency bins" in msg
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert f"NMF output folder {blocker / 'run'} is not writable" in error("--out", str(blocker / "run" / "d.pt"))
    # a truncated streaming state (a full disk while it was written by hand, a bad copy): named, not OSError 22
    out = tmp_path / "tr" / "d.pt"
    out.parent.mkdir()
    torch.save({"W": torch.rand(129, 8), "epoch": torch.tensor(1)}, tmp_path / "whole.pt")
    (out.parent / "d.state.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:1500])
    msg = error("--out", str(out), "--resume", "true")
    assert f"NMF streaming state {out.parent / 'd.state.pt'}: not a readable torch file" in msg


def test_nmf_state_write_failure_names_the_file_and_keeps_no_temporary(tmp_path, monkeypatch):
    from experiments.nmf import NMFSettings, learn_dictionary
    from datamodules import SyntheticDataModule

    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        if str(f).endswith(".state.pt.tmp"):
            real_save(obj, f, *a, **k)
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1152 vs 1046")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full_disk)
    dm = SyntheticDataModule(num_classes=2, num_train=8, num_val=4, num_test=4, batch_size=4, duration_s=1.0)
    out = tmp_path / "d.pt"
    with pytest.raises(OSError, match=rf"NMF streaming state {out.with_suffix('.state.pt')}: could not be written after "
                                      r"epoch 1 \(RuntimeError: .*unexpected pos"):
        learn_dictionary(dm, small_fe(), NMFSettings(n_components=4, epochs=1), out, num_clips=8, eval_split=None,
                         save_images=False, progress=False, device="cpu", state_path=out.with_suffix(".state.pt"))
    assert not (tmp_path / "d.state.pt.tmp").exists()


def test_nmf_config_path_resolves_from_any_directory_like_the_other_verbs(tmp_path, monkeypatch, capsys):
    from experiments.nmf import main

    monkeypatch.chdir(tmp_path)  # outside the repository: the README's relative path must still be found
    # a refused setting stops it right after the config is read (exit code 2, the option named)
    assert main(["--config", "experiments/synthetic/nmf.yaml", "--nmf.n_components", "100000"]) == 2
    assert "nmf.n_components = 100000" in capsys.readouterr().err
