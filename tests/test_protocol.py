"""The ``authors`` protocol, detail by detail: schedule, top-5 capping, decoder, Θ's dropout, Ψ, the presets.

Pure torch and tiny models: every test runs in about a second.
"""

from __future__ import annotations

import pytest
import torch

from l2i.frontend import AudioFrontEnd
from l2i.interpreter.interpretation import build_interpretation, choose_components
from l2i.interpreter.posthoc import AUTHORS_ESC50_SCHEDULE, LossSchedule, PostHocInterpreter
from l2i.interpreter.protocol import AUTHORS_PROTOCOL_SCHEDULE, PROTOCOLS, get_protocol
from l2i.interpreter.psi import AuthorsPsi
from l2i.interpreter.theta import Theta

FE = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32, duration_s=1.0)


def _classifier(num_classes: int = 4):
    from lightning_modules.classifier import ClassifierModule

    clf = ClassifierModule(backbone="small_cnn", backbone_kwargs={"channels": [4, 8, 8, 8]}, frontend=FE,
                           num_classes=num_classes, task="multiclass")
    return clf.eval().requires_grad_(False)


def _dictionary(F: int = 129, K: int = 12) -> torch.Tensor:
    W = torch.rand(F, K, generator=torch.Generator().manual_seed(0)) + 0.01
    return W / W.norm(dim=0)


# -- schedule ------------------------------------------------------------------------------------------------


def test_authors_schedule_weights_per_epoch_have_no_reconstruction_only_epoch():
    s = LossSchedule(AUTHORS_PROTOCOL_SCHEDULE)
    # their epochs 1..35 are our 0..34: λ_rec 5.0 and λ_spa 0.4 throughout, λ_fid 0.5 until their epoch 19
    for epoch in (0, 1, 18):
        assert s.weights(epoch) == {"fidelity": 0.5, "reconstruction": 5.0, "sparsity": 0.4}
    for epoch in (19, 20, 34):
        assert s.weights(epoch) == {"fidelity": 1.0, "reconstruction": 5.0, "sparsity": 0.4}
    # the project's default differs by its reconstruction-only epoch 0 (and starts λ_fid 1.0 one epoch later)
    d = LossSchedule(AUTHORS_ESC50_SCHEDULE)
    assert d.weights(0) == {"fidelity": 0.0, "reconstruction": 5.0, "sparsity": 0.0}
    assert d.weights(19)["fidelity"] == 0.5 and d.weights(20)["fidelity"] == 1.0


def test_protocol_names_and_a_clear_error():
    assert get_protocol(None) is PROTOCOLS["project"]
    a = get_protocol("authors")
    assert (a.top_k, a.attention_dropout, a.psi, a.skip_last_layers, a.share_eps) == (5, 0.4, "authors", 1, 1e-6)
    with pytest.raises(ValueError, match="protocol must be one of"):
        get_protocol("paper")


# -- interpretation: top-5 capping --------------------------------------------------------------------------


def test_top_k_keeps_the_most_relevant_among_those_above_tau():
    r = torch.tensor([[[0.9, 0.1, 0.5, 1.0, 0.3, 0.25, 0.7, 0.6]]])
    assert choose_components(r, 0.2).sum() == 7
    capped = choose_components(r, 0.2, top_k=5)
    assert torch.nonzero(capped[0, 0]).flatten().tolist() == [0, 2, 3, 6, 7]  # 1.0, 0.9, 0.7, 0.6, 0.5
    # fewer than 5 above τ: all of them, nothing below τ is added
    assert torch.nonzero(choose_components(r, 0.65, top_k=5)[0, 0]).flatten().tolist() == [0, 3, 6]
    # ties at the cut: the lower index wins, deterministically
    tie = torch.tensor([[[0.5, 0.5, 0.5, 1.0]]])
    assert torch.nonzero(choose_components(tie, 0.2, top_k=2)[0, 0]).flatten().tolist() == [0, 3]
    with pytest.raises(ValueError, match="top_k"):
        choose_components(r, 0.2, top_k=0)


def test_top5_interpretation_sums_the_chosen_parts_unweighted_on_log1p():
    fe = AudioFrontEnd(**FE)
    torch.manual_seed(0)
    wav = torch.randn(1, 8000) * 0.1
    feats = fe(wav)
    K, T = 8, feats.nmf.shape[-1]
    W = _dictionary(129, K)
    H = torch.rand(1, K, T)
    pooled = torch.tensor([[1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.1, 0.05]])
    theta = torch.ones(2, K)
    it = build_interpretation(frontend=fe, features=feats, dictionary=W, activations=H, pooled=pooled,
                              class_weights=theta, logits=torch.zeros(1, 2), classes=torch.tensor([[0]]),
                              threshold=0.2, top_k=5, eps=1e-6)
    assert torch.nonzero(it.components[0, 0]).flatten().tolist() == [0, 1, 2, 3, 4]  # 6 above τ, top 5 kept
    # the authors' formula: expm1(Σ_k ratio_k · log1p|X|), ratio_k = w_k h_kᵀ / (W H + 1e-6), summed unweighted
    WH = torch.einsum("fk,bkt->bft", W, H)
    ratio = torch.einsum("fk,bkt->bft", W[:, :5], H[:, :5]) / (WH + 1e-6)
    expected = torch.expm1(ratio * feats.nmf)
    assert torch.allclose(it.mask[:, 0] * feats.magnitude, expected, atol=1e-5)


def test_posthoc_interpreter_uses_its_top_k_unless_told_otherwise():
    clf = _classifier()
    net = PostHocInterpreter(clf.frontend, clf.backbone, _dictionary(), num_classes=4, hidden=8, attention_dim=8, top_k=2)
    wav = torch.randn(2, 8000) * 0.1
    assert int(net.interpret(wav, threshold=0.0).components.sum(-1).max()) <= 2
    uncapped = net.interpret(wav, threshold=0.0, top_k=0).components.sum(-1)
    assert int(uncapped.max()) > 2  # a random Θ spreads positive evidence over many of the 12 components


# -- decoder -------------------------------------------------------------------------------------------------


def test_decoder_is_relu_of_normalised_relu_w_times_h_even_when_w_went_negative():
    clf = _classifier()
    net = PostHocInterpreter(clf.frontend, clf.backbone, _dictionary(), num_classes=4, hidden=8, attention_dim=8,
                             finetune_dictionary=True)
    with torch.no_grad():
        net.dictionary_param[:5, :3] = -1.0  # a fine-tuning step pushed some entries below 0
    out = net(torch.randn(2, 8000) * 0.1)
    Wp = net.dictionary_param.detach()
    authors = torch.relu(torch.einsum("fk,bkt->bft", torch.nn.functional.normalize(torch.relu(Wp), dim=0), out.activations))
    assert torch.allclose(out.reconstruction, authors, atol=1e-6)
    assert (out.reconstruction >= 0).all()


# -- Θ: dropout only where configured ---------------------------------------------------------------------


def test_theta_dropout_only_on_the_attention_input_and_only_when_configured():
    torch.manual_seed(0)
    H = torch.rand(4, 6, 10) + 0.1
    plain = Theta(6, 3, attention_dim=16).train()
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain.modules())
    assert torch.equal(plain(H)[0], plain(H)[0])  # no dropout configured: training mode is deterministic

    drop = Theta(6, 3, attention_dim=16, attention_dropout=0.4)
    drop.load_state_dict(plain.state_dict())
    drop.train()
    z1, z2 = drop.pool(H), drop.pool(H)
    assert not torch.allclose(z1, z2)  # the attention weights see dropout …
    # … but z is a convex combination of the undropped H (dropout's 1/(1-p) scaling would leave this range)
    assert (z1 <= H.amax(-1) + 1e-6).all() and (z1 >= H.amin(-1) - 1e-6).all()
    drop.eval()  # relevance is computed in eval mode: no dropout at all, the same z as without it
    assert torch.allclose(drop.pool(H), plain.eval().pool(H))
    assert drop.attention_score.bias is not None and drop.classifier.bias is None
    with pytest.raises(ValueError, match="attention_dropout"):
        Theta(6, 3, attention_dropout=1.0)


# -- Ψ -----------------------------------------------------------------------------------------------------


def test_authors_psi_collapses_frequency_and_upsamples_before_the_conv1d():
    maps = {"a": torch.rand(2, 16, 4, 5), "b": torch.rand(2, 8, 8, 10), "c": torch.rand(2, 4, 16, 20)}
    psi = AuthorsPsi({k: tuple(v.shape[1:]) for k, v in maps.items()}, n_components=7, hidden=6)
    assert len(psi.collapse) == 1 and psi.collapse[0][0].kernel_size == (4, 1)  # F_min = 4: one (4, 1) conv
    assert [m.kernel_size for m in psi.head if isinstance(m, torch.nn.Conv1d)] == [(5,), (5,)]
    H = psi(maps, 43)
    assert H.shape == (2, 7, 43) and (H >= 0).all()
    # a frequency size that is no power of 4 still collapses to one row; 1-D maps count as one row
    odd = AuthorsPsi({"a": (3, 6, 9), "b": (5, 1, 9)}, n_components=4, hidden=4)
    assert odd({"a": torch.rand(1, 3, 6, 9), "b": torch.rand(1, 5, 9)}, 17).shape == (1, 4, 17)
    # BCTF maps (CNN14's layout) are transposed first
    t = AuthorsPsi({"a": (3, 4, 9)}, n_components=4, hidden=4, conv_map_axes="BCTF")
    assert t({"a": torch.rand(1, 3, 9, 4)}, 12).shape == (1, 4, 12)


def test_authors_preset_builds_the_authors_model_and_project_keeps_todays():
    from lightning_modules.posthoc import PostHocInterpreterModule
    from l2i.dictionary import DictionaryArtifact

    clf = _classifier()
    art = DictionaryArtifact(W=_dictionary(), frontend=clf.frontend.config.spectral_params())
    a = PostHocInterpreterModule(classifier=clf, dictionary=art, hidden=8, attention_dim=8, protocol="authors")
    net = a.interpreter
    assert isinstance(net.psi, AuthorsPsi) and net.theta.attention_dropout == 0.4 and net.top_k == 5
    assert net.layers == ["block1", "block2", "block3"]  # the three before the last conv block
    assert a.schedule.to_dict() == AUTHORS_PROTOCOL_SCHEDULE
    # an explicit option wins over the preset (SONYC-UST: no Θ dropout)
    b = PostHocInterpreterModule(classifier=clf, dictionary=art, hidden=8, attention_dim=8, protocol="authors",
                                 attention_dropout=0.0)
    assert b.interpreter.theta.attention_dropout == 0.0
    p = PostHocInterpreterModule(classifier=clf, dictionary=art, hidden=8, attention_dim=8)
    assert type(p.interpreter.psi).__name__ == "Psi" and p.interpreter.top_k is None
    assert p.interpreter.layers == ["block2", "block3", "block4"] and p.schedule.to_dict() == AUTHORS_ESC50_SCHEDULE
    out = a(torch.randn(2, 8000) * 0.1)
    assert out.activations.shape[1] == 12 and torch.isfinite(sum(a.interpreter.losses(out).values()))


def test_frontend_mel_of_magnitude_is_half_the_db_of_the_mel_of_power_for_one_bin():
    torch.manual_seed(0)
    mag = torch.rand(1, 129, 5) + 0.1
    power_fe = AudioFrontEnd(**{**FE, "top_db": None})
    mag_fe = AudioFrontEnd(**{**FE, "top_db": None, "mel_power": 1.0})
    fb = power_fe.mel_fbanks
    expected = 10 * torch.log10(torch.einsum("bft,fm->bmt", mag, fb).clamp_min(1e-10))
    assert torch.allclose(mag_fe.logmel_from_magnitude(mag), expected, atol=1e-4)
    assert not torch.allclose(power_fe.logmel_from_magnitude(mag), expected, atol=1e-2)
    with pytest.raises(ValueError, match="mel_power"):
        AudioFrontEnd(**{**FE, "mel_power": 0.0})
