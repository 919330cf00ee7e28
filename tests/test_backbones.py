"""Backbones: CNN14 with the official PANNs names, SB-CNN, SmallCNN; pretrained loading; fine-tuning policy;
channels-last / compile / autocast.

The PANNs checkpoint is faked: the official key names and shapes are written out here (independently of
``l2i.backbones.cnn14``) with random values, in the official container ``{"model": state_dict}``.
"""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F

from l2i.backbones import (
    BACKBONES,
    CNN14,
    CNN14_FRONTEND,
    SBCNN,
    PretrainedLoadError,
    SmallCNN,
    build_backbone,
    capture_hidden,
    finetune_param_groups,
    load_pretrained,
    prepare_for_device,
    set_frozen_batchnorm_eval,
)
from l2i.backbones.pretrained import head_and_blocks
from l2i.frontend import AudioFrontEnd, FrontEndConfig

OFFICIAL_CHANNELS = (64, 128, 256, 512, 1024, 2048)
SMALL_CHANNELS = (8, 16, 32, 64, 128, 256)  # width-reduced CNN14: same names, 1/8 of the channels
EXTRACTOR_KEYS = {
    "spectrogram_extractor.stft.conv_real.weight",
    "spectrogram_extractor.stft.conv_imag.weight",
    "logmel_extractor.melW",
}


def official_cnn14_state(channels=OFFICIAL_CHANNELS, classes=527, n_mels=64, n_fft=1024, seed=0) -> dict:
    """The key names / shapes of PANNs ``Cnn14`` checkpoints (torchlibrosa extractors included), random values."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.05):
        return torch.randn(*shape, generator=g) * scale

    def bn(prefix, n):
        return {
            f"{prefix}.weight": 1 + rnd(n, scale=0.1),
            f"{prefix}.bias": rnd(n, scale=0.1),
            f"{prefix}.running_mean": rnd(n, scale=0.1),
            f"{prefix}.running_var": 0.5 + torch.rand(n, generator=g),
            f"{prefix}.num_batches_tracked": torch.tensor(12345),
        }

    sd = {
        "spectrogram_extractor.stft.conv_real.weight": rnd(n_fft // 2 + 1, 1, n_fft),
        "spectrogram_extractor.stft.conv_imag.weight": rnd(n_fft // 2 + 1, 1, n_fft),
        "logmel_extractor.melW": rnd(n_fft // 2 + 1, n_mels).abs(),
    }
    sd.update(bn("bn0", n_mels))
    c_in = 1
    for i, c in enumerate(channels, start=1):
        sd[f"conv_block{i}.conv1.weight"] = rnd(c, c_in, 3, 3, scale=(2.0 / (9 * c_in)) ** 0.5)
        sd[f"conv_block{i}.conv2.weight"] = rnd(c, c, 3, 3, scale=(2.0 / (9 * c)) ** 0.5)
        sd.update(bn(f"conv_block{i}.bn1", c))
        sd.update(bn(f"conv_block{i}.bn2", c))
        c_in = c
    sd["fc1.weight"] = rnd(channels[-1], channels[-1], scale=channels[-1] ** -0.5)
    sd["fc1.bias"] = rnd(channels[-1])
    sd["fc_audioset.weight"] = rnd(classes, channels[-1], scale=channels[-1] ** -0.5)
    sd["fc_audioset.bias"] = rnd(classes)
    return sd


def panns_reference_logits(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """The official ``Cnn14.forward`` (eval mode, after the log-mel extractor), written with F on a state dict.

    ``x``: ``(B, 1, T, 64)`` log-mel as torchlibrosa gives it; returns ``fc_audioset`` logits (before sigmoid).
    """

    def bn(t, p):
        stats = (sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"])
        return F.batch_norm(t, *stats, training=False, momentum=0.0, eps=1e-5)

    x = bn(x.transpose(1, 3), "bn0").transpose(1, 3)
    for i in range(1, 7):
        x = F.relu(bn(F.conv2d(x, sd[f"conv_block{i}.conv1.weight"], padding=1), f"conv_block{i}.bn1"))
        x = F.relu(bn(F.conv2d(x, sd[f"conv_block{i}.conv2.weight"], padding=1), f"conv_block{i}.bn2"))
        x = F.avg_pool2d(x, kernel_size=(2, 2) if i < 6 else (1, 1))
    x = torch.mean(x, dim=3)
    x = torch.max(x, dim=2)[0] + torch.mean(x, dim=2)
    x = F.relu(F.linear(x, sd["fc1.weight"], sd["fc1.bias"]))
    return F.linear(x, sd["fc_audioset.weight"], sd["fc_audioset.bias"])


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    """A full-size fake ``Cnn14_mAP=0.431.pth`` (about 330 MB), written once for the module."""
    sd = official_cnn14_state()
    path = tmp_path_factory.mktemp("panns") / "Cnn14_mAP=0.431.pth"
    torch.save({"model": sd}, path)
    return path, sd


@pytest.fixture()
def small_file(tmp_path):
    """A width-reduced CNN14 checkpoint in the official container (fast mismatch tests)."""
    sd = official_cnn14_state(SMALL_CHANNELS, seed=1)
    path = tmp_path / "cnn14_small.pth"
    torch.save({"model": sd}, path)
    return path, sd


def _x(b, m, t, seed=0):
    return torch.randn(b, m, t, generator=torch.Generator().manual_seed(seed)) * 10 - 40


# -- CNN14 pretrained loading -----------------------------------------------------------------------------------


def test_official_checkpoint_loads_every_parameter_by_name_and_shape(official_file):
    path, sd = official_file
    fresh = CNN14(n_mels=64, num_classes=10).eval()
    torch.manual_seed(3)
    model = build_backbone("cnn14", n_mels=64, num_classes=10, pretrained=str(path)).eval()
    report = model.load_report

    model_keys = set(model.state_dict())
    head_keys = {"fc_head.weight", "fc_head.bias"}
    # every model state key outside the new head has its official name; the only official keys left out are the
    # AudioSet head and the torchlibrosa extractor buffers
    assert model_keys - head_keys == set(sd) - EXTRACTOR_KEYS - {"fc_audioset.weight", "fc_audioset.bias"}
    assert set(report.loaded) == model_keys - head_keys
    assert report.num_loaded == len(model_keys) - 2
    assert set(report.skipped) == EXTRACTOR_KEYS | {"fc_audioset.weight", "fc_audioset.bias"}
    assert sorted(report.kept) == sorted(head_keys)
    state = model.state_dict()
    for key in model_keys - head_keys:
        assert state[key].shape == sd[key].shape, key
        assert torch.equal(state[key], sd[key]), key
    # the parameters really changed, and so do the outputs
    assert not torch.equal(fresh.conv_block1.conv1.weight, model.conv_block1.conv1.weight)
    x = _x(1, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(fresh(x), model(x))


def test_loaded_cnn14_matches_official_forward(official_file):
    """With the AudioSet head kept, our CNN14 on (B, mels, T) = the official forward on (B, 1, T, mels)."""
    path, sd = official_file
    model = CNN14(n_mels=64, num_classes=527).eval()
    report = load_pretrained(model, path, load_head=True)
    assert "fc_head.weight" in report.loaded and set(report.skipped) == EXTRACTOR_KEYS
    assert torch.equal(model.fc_head.weight, sd["fc_audioset.weight"])
    logmel = _x(2, 64, 96, seed=5)
    with torch.no_grad():
        ours = model(logmel)
        ref = panns_reference_logits(sd, logmel.transpose(1, 2).unsqueeze(1))
    assert ours.shape == (2, 527)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    # the layout matters: on a square input, the official forward with mel and time swapped disagrees with ours
    square = logmel[..., :64]
    with torch.no_grad():
        swapped = panns_reference_logits(sd, square.unsqueeze(1))
        assert not torch.allclose(model(square), swapped, rtol=1e-3, atol=1e-3)


def test_width_mismatch_names_the_shapes(official_file):
    path, _ = official_file
    half = CNN14(n_mels=64, num_classes=10, channels=(32, 64, 128, 256, 512, 1024))
    before = half.conv_block1.conv1.weight.clone()
    with pytest.raises(PretrainedLoadError) as err:
        load_pretrained(half, path)
    msg = str(err.value)
    assert str(path) in msg
    assert "conv_block1.conv1.weight: checkpoint (64,1,3,3) vs model (32,1,3,3)" in msg
    assert "fc1.weight: checkpoint (2048,2048) vs model (1024,1024)" in msg
    assert "missing keys" not in msg and "unexpected keys" not in msg
    assert torch.equal(half.conv_block1.conv1.weight, before)  # nothing loaded on failure


def test_small_checkpoint_loads_into_width_reduced_cnn14(small_file):
    path, sd = small_file
    model = build_backbone("cnn14", n_mels=64, num_classes=4, channels=SMALL_CHANNELS, pretrained=str(path))
    assert model.load_report.num_loaded == len(model.state_dict()) - 2
    assert torch.equal(model.conv_block6.bn2.running_var, sd["conv_block6.bn2.running_var"])
    assert int(model.bn0.num_batches_tracked) == 12345


@pytest.mark.parametrize("defect", ["wrong_shape", "missing", "unexpected"])
def test_mismatched_checkpoint_raises_with_names(tmp_path, defect):
    sd = official_cnn14_state(SMALL_CHANNELS, seed=2)
    if defect == "wrong_shape":
        sd["conv_block3.conv2.weight"] = torch.zeros(32, 16, 3, 3)
        expected = ["shape mismatches (1)", "conv_block3.conv2.weight: checkpoint (32,16,3,3) vs model (32,32,3,3)"]
    elif defect == "missing":
        del sd["conv_block4.bn1.running_var"]
        expected = ["missing keys (1)", "conv_block4.bn1.running_var"]
    else:
        sd["conv_block7.conv1.weight"] = torch.zeros(4, 4, 3, 3)
        expected = ["unexpected keys (1)", "conv_block7.conv1.weight"]
    path = tmp_path / f"{defect}.pth"
    torch.save({"model": sd}, path)
    model = CNN14(n_mels=64, num_classes=3, channels=SMALL_CHANNELS)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PretrainedLoadError) as err:
        load_pretrained(model, path)
    msg = str(err.value)
    assert str(path) in msg
    for text in expected:
        assert text in msg
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing loaded on failure
    # non-strict: the rest loads, the defect is reported
    report = load_pretrained(model, path, strict_backbone=False)
    assert report.num_loaded == len(after) - 2 - (defect != "unexpected")
    if defect == "wrong_shape":
        assert report.skipped["conv_block3.conv2.weight"].startswith("shape (32,16,3,3)")
    elif defect == "missing":
        assert "conv_block4.bn1.running_var" in report.kept
    else:
        assert report.skipped["conv_block7.conv1.weight"] == "not in the model"


def test_unreadable_files_give_clear_errors(tmp_path, small_file):
    good, _ = small_file
    model = CNN14(n_mels=64, num_classes=3, channels=SMALL_CHANNELS)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:5000])
    text = tmp_path / "notes.pth"
    text.write_text("this is not a checkpoint\n")
    code = tmp_path / "code.pth"
    code.write_bytes(pickle.dumps(print, protocol=2))  # a pickled global: weights_only must refuse it
    module = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), module)  # a pickled nn.Module class, not a state dict
    for bad in (truncated, text, code, module):
        with pytest.raises(PretrainedLoadError) as err:
            load_pretrained(model, bad)
        assert str(bad) in str(err.value) and "not a readable PyTorch checkpoint" in str(err.value)
    listing = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], listing)
    with pytest.raises(PretrainedLoadError, match="expected a state dict"):
        load_pretrained(model, listing)
    nested = tmp_path / "nested.pth"
    torch.save({"epoch": 3, "weights": {"a": torch.zeros(1)}}, nested)
    with pytest.raises(PretrainedLoadError, match="not a state dict"):
        load_pretrained(model, nested)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_pretrained(model, tmp_path / "nowhere.pth")


@pytest.mark.parametrize("name", ["small_cnn", "sbcnn"])
def test_bare_state_dict_roundtrip_and_new_head(tmp_path, name):
    src = build_backbone(name, n_mels=64, num_classes=5)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.01)
    path = tmp_path / f"{name}.pt"
    torch.save(src.state_dict(), path)  # bare state dict
    head = src.head_names[0]
    # new data set: the head is not loaded (other class count), everything else is
    dst = build_backbone(name, n_mels=64, num_classes=7, pretrained=str(path))
    assert set(dst.load_report.skipped) == {f"{head}.weight", f"{head}.bias"}
    for k, v in src.state_dict().items():
        if not k.startswith(head + "."):
            assert torch.equal(dst.state_dict()[k], v), k
    # same classes + load_head: identical network
    same = build_backbone(name, n_mels=64, num_classes=5, pretrained=str(path), load_head=True).eval()
    x = _x(2, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(same(x), src.eval()(x))
    with pytest.raises(PretrainedLoadError, match=rf"{head}.weight: checkpoint \(5,"):
        build_backbone(name, n_mels=64, num_classes=7, pretrained=str(path), load_head=True)


# -- forward shapes of every named layer ---------------------------------------------------------------------------

#: centred STFT frames = samples // hop + 1, for 5 / 10 / 30 s
EXPECTED_FRAMES = {
    (32000, 320): {5: 501, 10: 1001, 30: 3001},
    (16000, 256): {5: 313, 10: 626, 30: 1876},
    (44100, 512): {5: 431, 10: 862, 30: 2584},
}


def _frames(rate, hop, seconds):
    n = FrontEndConfig(sample_rate=rate, hop_length=hop, n_fft=2 * hop).num_frames(rate * seconds)
    assert n == EXPECTED_FRAMES[(rate, hop)][seconds] == rate * seconds // hop + 1
    return n


def _expected_maps(name, m, t):
    if name == "cnn14":
        c = OFFICIAL_CHANNELS
        maps = {f"conv_block{k}": (c[k - 1], t // 2**k, m // 2**k) for k in range(1, 6)}
        maps["conv_block6"] = (c[5], t // 32, m // 32)
        maps["fc1"] = maps["embedding"] = (c[5],)
        return maps
    if name == "small_cnn":
        return {f"block{k}": ((16, 32, 64, 128)[k - 1], m // 2**k, t // 2**k) for k in range(1, 5)}
    return {"block1": (24, m // 2, t // 4), "block2": (48, m // 4, t // 16), "block3": (48, m // 4, t // 16), "fc1": (64,)}


CASES = [("cnn14", 32000, 320, 64)] + [
    (n, r, h, m) for n in ("small_cnn", "sbcnn") for r, h, m in ((16000, 256, 64), (44100, 512, 128))
]


@pytest.mark.parametrize("name,rate,hop,n_mels", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_named_layer_shapes_for_5_10_30_s(name, rate, hop, n_mels):
    torch.manual_seed(0)
    model = build_backbone(name, n_mels=n_mels, num_classes=6).eval()
    if name == "cnn14":
        cfg = CNN14_FRONTEND
    else:
        cfg = FrontEndConfig(sample_rate=rate, n_fft=2 * hop, hop_length=hop, n_mels=n_mels)
    front = AudioFrontEnd(cfg)
    for seconds in (5, 10, 30):
        t = _frames(rate, hop, seconds)
        wave = torch.randn(1, rate * seconds) * 0.1
        logmel = front.log_mel(wave)
        assert logmel.shape == (1, n_mels, t)
        with torch.no_grad(), capture_hidden(model, model.layer_names) as maps:
            logits = model(logmel)
        assert logits.shape == (1, 6) and torch.isfinite(logits).all()
        expected = _expected_maps(name, n_mels, t)
        assert set(maps) == set(model.layer_names) == set(expected)
        for layer, shape in expected.items():
            assert tuple(maps[layer].shape) == (1, *shape), (name, seconds, layer)


def test_cnn14_frontend_matches_panns_settings():
    c = CNN14_FRONTEND
    assert (c.sample_rate, c.n_fft, c.hop_length, c.win_length) == (32000, 1024, 320, 1024)
    assert (c.n_mels, c.f_min, c.f_max) == (64, 50.0, 14000.0)
    assert c.top_db is None and c.window == "hann" and c.center
    assert AudioFrontEnd(c).mel_fbanks.shape == (513, 64)  # = logmel_extractor.melW shape


def test_too_short_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="needs >= 32 frames"):
        CNN14(num_classes=2, channels=SMALL_CHANNELS)(torch.zeros(1, 64, 20))
    with pytest.raises(ValueError, match=r"expects log-mel \(B, 64, frames\)"):
        CNN14(num_classes=2, channels=SMALL_CHANNELS)(torch.zeros(1, 128, 64))
    with pytest.raises(ValueError, match="needs >= 16 frames"):
        SBCNN(64, 2)(torch.zeros(1, 64, 10))


# -- fine-tuning policy ---------------------------------------------------------------------------------------------


def _models():
    torch.manual_seed(0)
    return {
        "small_cnn": build_backbone("small_cnn", n_mels=64, num_classes=3),
        "sbcnn": build_backbone("sbcnn", n_mels=64, num_classes=3),
        "cnn14": build_backbone("cnn14", n_mels=64, num_classes=3, channels=SMALL_CHANNELS),
    }


def test_every_registered_backbone_declares_head_and_blocks():
    assert set(BACKBONES) >= {"small_cnn", "sbcnn", "cnn14"}
    for name, model in _models().items():
        head, blocks = head_and_blocks(model)
        assert head == list(model.head_names) and blocks[-1] != head[0]
        n_params = sum(1 for _ in model.parameters())
        covered = sum(1 for n in head + blocks for _ in dict(model.named_modules())[n].parameters())
        assert covered == n_params, name


@pytest.mark.parametrize("policy", ["head", "last_blocks", "all"])
@pytest.mark.parametrize("name", ["small_cnn", "sbcnn", "cnn14"])
def test_finetune_policy_freezes_and_scales(name, policy):
    model = _models()[name]
    lr = 1e-3
    groups = finetune_param_groups(model, policy, lr=lr, pretrained_lr_scale=0.1, last_blocks=2)
    modules = dict(model.named_modules())
    head_ids = {id(p) for n in model.head_names for p in modules[n].parameters()}
    trainable_blocks = {"head": [], "last_blocks": list(model.block_names[-2:]), "all": list(model.block_names)}[policy]
    block_ids = {id(p) for n in trainable_blocks for p in modules[n].parameters()}
    by_name = {g["name"]: g for g in groups}
    assert {id(p) for p in by_name["head"]["params"]} == head_ids and by_name["head"]["lr"] == lr
    if policy == "head":
        assert set(by_name) == {"head"}
    else:
        assert {id(p) for p in by_name["pretrained"]["params"]} == block_ids
        assert by_name["pretrained"]["lr"] == pytest.approx(lr * 0.1)
    trainable = head_ids | block_ids
    for p in model.parameters():
        assert p.requires_grad == (id(p) in trainable)

    # one Adam step: gradients reach exactly the trainable parameters, and only they move
    opt = torch.optim.Adam(groups)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in groups]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    loss = F.cross_entropy(model(_x(2, 64, 64)), torch.tensor([0, 2]))
    loss.backward()
    opt.step()
    for n, p in model.named_parameters():
        if id(p) in trainable:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
            assert not torch.equal(p, before[n]), n
        else:
            assert p.grad is None, n
            assert torch.equal(p, before[n]), n


def test_finetune_policy_arguments_are_checked():
    model = _models()["sbcnn"]
    with pytest.raises(ValueError, match="policy must be"):
        finetune_param_groups(model, "most", lr=1e-3)
    with pytest.raises(ValueError, match=r"last_blocks must be in 1\.\.5"):
        finetune_param_groups(model, "last_blocks", lr=1e-3, last_blocks=6)
    # a later, wider policy unfreezes again
    finetune_param_groups(model, "head", lr=1e-3)
    finetune_param_groups(model, "all", lr=1e-3)
    assert all(p.requires_grad for p in model.parameters())


def test_frozen_batchnorm_keeps_running_stats():
    model = _models()["small_cnn"]
    finetune_param_groups(model, "last_blocks", lr=1e-3, last_blocks=1)  # only block4 (+ head) trains
    model.train()
    assert set_frozen_batchnorm_eval(model) == 7  # bn0, block1..3 x (bn1, bn2)
    frozen_mean = model.block1.bn1.running_mean.clone()
    live_mean = model.block4.bn1.running_mean.clone()
    model(_x(2, 64, 64))
    assert torch.equal(model.block1.bn1.running_mean, frozen_mean)
    assert not torch.equal(model.block4.bn1.running_mean, live_mean)


# -- device preparation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["small_cnn", "sbcnn", "cnn14"])
def test_channels_last_gives_the_same_outputs(name):
    model = _models()[name].eval()
    x = _x(2, 64, 96, seed=7)
    layer = model.layer_names[1]
    with torch.no_grad(), capture_hidden(model, [layer]) as ref_maps:
        ref = model(x)
    assert prepare_for_device(model, channels_last=True) is model
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), capture_hidden(model, [layer]) as maps:
        out = model(x)
    assert maps[layer].is_contiguous(memory_format=torch.channels_last)
    assert not ref_maps[layer].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(maps[layer], ref_maps[layer], rtol=1e-4, atol=1e-4)
    prepare_for_device(model, channels_last=False)  # undo
    assert conv.weight.is_contiguous()
    with torch.no_grad(), capture_hidden(model, [layer]) as maps:
        model(x)
    assert not maps[layer].is_contiguous(memory_format=torch.channels_last)


def test_compile_keeps_names_taps_and_outputs():
    # backend="eager" exercises the Dynamo graph capture (and hook handling) without generating C++ code,
    # which would take minutes on a shared 2-core CPU; the default backend for real runs is inductor.
    model = _models()["small_cnn"].eval()
    keys = list(model.state_dict())
    x = _x(2, 64, 64, seed=9)
    with torch.no_grad():
        ref = model(x)
    prepare_for_device(model, compile=True, compile_backend="eager")
    assert list(model.state_dict()) == keys
    with torch.no_grad(), capture_hidden(model, ["block2"]) as maps:
        out = model(x)
    torch.testing.assert_close(out, ref)
    assert maps["block2"].shape == (2, 32, 16, 16)


@pytest.mark.parametrize("name", ["small_cnn", "sbcnn", "cnn14"])
def test_bf16_autocast_forward(name):
    model = _models()[name].eval()
    x = _x(2, 64, 64, seed=11)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), ref, rtol=0.1, atol=0.1 * ref.abs().max().item())


def test_registered_names_build_the_classes():
    assert isinstance(build_backbone("small_cnn", n_mels=64, num_classes=2), SmallCNN)
    assert isinstance(build_backbone("sbcnn", n_mels=64, num_classes=2), SBCNN)
    assert isinstance(build_backbone("cnn14", n_mels=64, num_classes=2, channels=SMALL_CHANNELS), CNN14)
    with pytest.raises(ValueError, match="known backbones"):
        build_backbone("resnet", n_mels=64, num_classes=2)
