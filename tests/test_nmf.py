"""NMF (stage 1): planted factorisations recovered, monotone objectives, streaming ≈ full batch, clear
errors for bad input, noise blocks and per-class dictionaries. Tiny matrices: the file runs in seconds."""

from __future__ import annotations

import pytest
import torch

from l2i.nmf import (NMF, check_nonnegative, concat_dictionaries, fit_per_class, fit_with_noise, nmf_objective,
                     update_activations)


#: tiny matrices: torch on one thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread_module")


def planted(F=48, K=6, N=600, seed=0, density=0.3, dtype=torch.float64):
    """V = W* H* with W* non-negative, unit columns, partly disjoint supports, H* sparse."""
    g = torch.Generator().manual_seed(seed)
    W = torch.rand(F, K, generator=g, dtype=dtype) * (torch.rand(F, K, generator=g, dtype=dtype) < 0.4)
    W = W + 1e-3
    W = W / W.norm(dim=0)
    H = torch.rand(K, N, generator=g, dtype=dtype) * 2 * (torch.rand(K, N, generator=g, dtype=dtype) < density)
    return W, H, W @ H


def best_cosines(W_true, W_learnt):
    """For every true column, the best cosine similarity with a learnt column."""
    a = W_true / W_true.norm(dim=0)
    b = W_learnt.to(a.dtype) / W_learnt.to(a.dtype).norm(dim=0).clamp_min(1e-12)
    return (a.t() @ b).max(dim=1).values


def is_non_increasing(history, rtol=1e-6):
    return all(b <= a + rtol * abs(a) + 1e-9 for a, b in zip(history, history[1:]))


@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_planted_factorization_recovered(solver):
    W, H, V = planted()
    iters = 60 if solver == "hals" else 400
    res = NMF(6, solver=solver, max_iter=iters, tol=0, dtype=torch.float64, seed=1, init="nndsvda").fit(V)
    cos = best_cosines(W, res.dictionary)
    assert cos.min() >= 0.95, cos
    rel = (V - res.dictionary @ res.activations).norm() / V.norm()
    assert rel < 0.05
    # unit-norm, non-negative columns
    assert torch.allclose(res.dictionary.norm(dim=0), torch.ones(6, dtype=torch.float64), atol=1e-6)
    assert (res.dictionary >= 0).all() and (res.activations >= 0).all()


@pytest.mark.parametrize(
    "solver,beta,sparsity", [("hals", 2, 0.0), ("hals", 2, 0.5), ("mu", 2, 0.0), ("mu", 2, 0.5), ("mu", 1, 0.0), ("mu", 1, 0.3)]
)
def test_objective_never_increases(solver, beta, sparsity):
    _, _, V = planted(F=30, K=5, N=200, seed=3)
    V = V + 0.05 * torch.rand(V.shape, generator=torch.Generator().manual_seed(9), dtype=V.dtype)  # not exactly low-rank
    nmf = NMF(5, beta=beta, solver=solver, sparsity=sparsity, max_iter=60, tol=0, dtype=torch.float64)
    res = nmf.fit(V)
    assert len(res.history) == 61
    assert is_non_increasing(res.history), res.history
    assert res.history[-1] < res.history[0]
    # the reported final objective is the directly evaluated one
    direct = nmf_objective(V, res.dictionary, res.activations, beta, sparsity)
    assert res.objective == pytest.approx(direct, rel=1e-9)


def test_hals_beats_mu_per_iteration():
    _, _, V = planted(seed=4)
    hals = NMF(6, solver="hals", max_iter=30, tol=0, dtype=torch.float64).fit(V).objective
    mu = NMF(6, solver="mu", max_iter=30, tol=0, dtype=torch.float64).fit(V).objective
    assert hals < mu


def test_sparsity_makes_activations_sparser():
    _, _, V = planted(seed=5, density=0.5)
    dense = NMF(6, max_iter=100, dtype=torch.float64).fit(V).activations
    sparse = NMF(6, sparsity=2.0, max_iter=100, dtype=torch.float64).fit(V).activations
    assert (sparse == 0).float().mean() > (dense == 0).float().mean() + 0.05


def test_batched_spectrograms_and_transform():
    W, H, V = planted(F=32, K=4, N=300, seed=6)
    Vb = V.reshape(32, 3, 100).permute(1, 0, 2)  # (B, F, T)
    nmf = NMF(4, max_iter=200, tol=0, dtype=torch.float64, init="nndsvda")
    res = nmf.fit(Vb)
    assert res.activations.shape == (3, 4, 100)
    # transform with the learnt W reproduces V; with the true W recovers H*
    Hb = nmf.transform(Vb)
    assert Hb.shape == (3, 4, 100)
    recon = torch.einsum("fk,bkt->bft", res.dictionary, Hb)
    assert ((recon - Vb).norm() / Vb.norm()) < 0.05
    nmf_t = NMF(4, max_iter=1, dtype=torch.float64, transform_iters=500, transform_tol=1e-10)
    H_est = nmf_t.transform(V, W)
    assert ((H_est - H).norm() / H.norm()) < 1e-3
    # fixed dictionary: the score is the objective with H from transform
    assert nmf.score(V) == pytest.approx(nmf.objective(V, nmf.dictionary_, nmf.transform(V)), rel=1e-9)


@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_streaming_close_to_full_batch(solver):
    W, H, V = planted(F=40, K=5, N=2000, seed=7)
    V = V + 0.02 * torch.rand(V.shape, generator=torch.Generator().manual_seed(1), dtype=V.dtype)
    full = NMF(5, solver=solver, sparsity=0.05, max_iter=300, tol=1e-7, dtype=torch.float64)
    full_res = full.fit(V)
    stream = NMF(5, solver=solver, sparsity=0.05, dtype=torch.float64, transform_iters=50, transform_tol=1e-6)
    batches = [V[:, s : s + 200] for s in range(0, V.shape[1], 200)]
    res = stream.fit_stream(batches, epochs=8)
    assert res.dictionary.shape == (40, 5) and res.n_iter == 8
    # evaluate both dictionaries the same way: objective on all data with H re-estimated (W fixed)
    judge = NMF(5, solver=solver, sparsity=0.05, dtype=torch.float64, transform_iters=500, transform_tol=1e-9)
    full_obj = judge.score(V, full_res.dictionary)
    stream_obj = judge.score(V, res.dictionary)
    assert stream_obj <= 1.05 * full_obj, (stream_obj, full_obj)
    assert best_cosines(W, res.dictionary).min() >= 0.9


def test_streaming_from_spectrogram_batches_and_resume(tmp_path):
    _, _, V = planted(F=24, K=3, N=960, seed=8)
    clips = V.reshape(24, 12, 80).permute(1, 0, 2)  # 12 "clips" (F, T)
    batches = [{"nmf": clips[i : i + 4]} for i in range(0, 12, 4)]  # (B, F, T) in a dict
    a = NMF(3, dtype=torch.float64)
    a.fit_stream(batches, epochs=2, to_frames=lambda b: b["nmf"])
    path = tmp_path / "state.pt"
    torch.save(a.state_dict(), path)
    ra = a.fit_stream(batches, epochs=1, to_frames=lambda b: b["nmf"])
    b = NMF(3, dtype=torch.float64)
    b.load_state_dict(torch.load(path, weights_only=True))
    rb = b.fit_stream(batches, epochs=1, to_frames=lambda b: b["nmf"])
    assert rb.n_iter == ra.n_iter == 3
    assert torch.allclose(ra.dictionary, rb.dictionary, atol=1e-10)
    with pytest.raises(ValueError, match="sparsity"):
        NMF(3, sparsity=0.1, dtype=torch.float64).load_state_dict(torch.load(path, weights_only=True))


def test_stream_reduce_fn_sums_statistics():
    """reduce_fn sees the flattened batch statistics; doubling them (two identical "processes") gives the
    same W as one process on duplicated data."""
    _, _, V = planted(F=20, K=3, N=400, seed=10)
    batches = [V[:, s : s + 100] for s in range(0, 400, 100)]
    seen = []

    def double(t):
        seen.append(t.shape)
        return 2 * t

    r1 = NMF(3, dtype=torch.float64).fit_stream(batches, epochs=2, reduce_fn=double)
    r2 = NMF(3, dtype=torch.float64).fit_stream([torch.cat([b, b], 1) for b in batches], epochs=2)
    assert len(seen) == 8
    assert torch.allclose(r1.dictionary, r2.dictionary, atol=1e-8)


@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.tensor([[1.0, float("nan")], [0.5, 0.2]]), "NaN"),
        (torch.tensor([[1.0, float("inf")], [0.5, 0.2]]), "inf"),
        (torch.tensor([[1.0, -0.3], [0.5, 0.2]]), "negative"),
        (torch.zeros(0, 3), "empty"),
        (torch.ones(2, 2, dtype=torch.complex64), "complex"),
    ],
)
def test_bad_input_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        NMF(2).fit(bad)
    with pytest.raises(ValueError, match=match):
        NMF(2).transform(bad, torch.ones(bad.shape[0] if bad.dim() == 2 else 2, 2))
    with pytest.raises(ValueError, match=match):
        NMF(2).fit_stream([bad])


def test_error_messages_name_the_input():
    with pytest.raises(ValueError, match=r"V_noise contains negative"):
        fit_with_noise(torch.rand(5, 20), -torch.rand(5, 20), 1, 2)
    with pytest.raises(ValueError, match=r"W must be \(5, K\)"):
        NMF(2).transform(torch.rand(5, 20), torch.rand(6, 2))
    with pytest.raises(ValueError, match="batch has 6 frequency bins"):
        NMF(2).fit_stream([torch.rand(5, 20), torch.rand(6, 20)])
    with pytest.raises(ValueError, match="beta"):
        NMF(2, beta=0.5)
    with pytest.raises(ValueError, match="hals"):
        NMF(2, beta=1, solver="hals")
    with pytest.raises(TypeError, match="V must be a tensor"):
        check_nonnegative("spectrum")


def test_noise_block_kept_fixed_and_first():
    g = torch.Generator().manual_seed(11)
    W_noise, _, V_noise = planted(F=30, K=2, N=300, seed=12)
    W_ev, H_ev, _ = planted(F=30, K=3, N=300, seed=13)
    H_n = torch.rand(2, 300, generator=g, dtype=torch.float64) * 0.5
    V = W_ev @ H_ev + W_noise @ H_n
    res = fit_with_noise(V, V_noise, n_noise=2, n_components=3, max_iter=300, tol=0, dtype=torch.float64, init="nndsvda")
    assert res.dictionary.shape == (30, 5)
    assert res.labels == ["noise", "noise", "event", "event", "event"]
    noise_only = NMF(2, max_iter=300, tol=0, dtype=torch.float64, init="nndsvda").fit(V_noise).dictionary
    assert torch.allclose(res.dictionary[:, :2], noise_only, atol=1e-10)  # the noise block stayed fixed
    assert best_cosines(W_noise, res.dictionary[:, :2]).min() >= 0.95
    assert best_cosines(W_ev, res.dictionary[:, 2:]).min() >= 0.95
    # the MU solver keeps the block fixed too
    res_mu = NMF(3, solver="mu", max_iter=20, dtype=torch.float64).fit(V, W_fixed=noise_only)
    assert torch.allclose(res_mu.dictionary[:, :2], noise_only, atol=1e-10)
    assert is_non_increasing(res_mu.history)


def test_per_class_dictionaries_concatenated():
    W_a, _, V_a = planted(F=30, K=2, N=200, seed=20)
    W_b, _, V_b = planted(F=30, K=3, N=200, seed=21)
    block = fit_per_class({"dog": V_a, "siren": V_b}, {"dog": 2, "siren": 3}, max_iter=300, tol=0, dtype=torch.float64, init="nndsvda")
    assert block.dictionary.shape == (30, 5)
    assert block.labels == ["dog"] * 2 + ["siren"] * 3 and block.names == ["dog", "siren"]
    assert best_cosines(W_a, block.dictionary[:, block.columns("dog")]).min() >= 0.95
    assert best_cosines(W_b, block.dictionary[:, block.columns("siren")]).min() >= 0.95
    with pytest.raises(KeyError, match="cat"):
        block.columns("cat")
    with pytest.raises(ValueError, match="frequency bins"):
        concat_dictionaries([torch.rand(30, 2), torch.rand(31, 2)])
    with pytest.raises(ValueError, match="class 'siren'"):
        fit_per_class({"dog": V_a, "siren": V_b}, {"dog": 2})


def test_no_nan_on_silence_and_zero_rows():
    V = torch.zeros(16, 50)
    V[3, 10:20] = 1.0  # mostly silent spectrogram
    for solver in ("hals", "mu"):
        res = NMF(4, solver=solver, max_iter=20, sparsity=0.1).fit(V)
        assert torch.isfinite(res.dictionary).all() and torch.isfinite(res.activations).all()
        assert torch.isfinite(torch.tensor(res.objective))
    H = NMF(4).transform(torch.zeros(16, 5), torch.rand(16, 4))
    assert torch.isfinite(H).all() and (H == 0).all()


def test_kl_recovers_planted():
    W, H, V = planted(F=40, K=4, N=500, seed=30)
    res = NMF(4, beta=1, max_iter=1500, tol=0, dtype=torch.float64, init="nndsvda").fit(V)
    assert best_cosines(W, res.dictionary).min() >= 0.95


@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_streaming_with_fixed_noise_block(solver, tmp_path):
    W_noise, _, V_noise = planted(F=30, K=2, N=300, seed=40)
    W_ev, H_ev, _ = planted(F=30, K=3, N=1200, seed=41)
    H_n = torch.rand(2, 1200, generator=torch.Generator().manual_seed(42), dtype=torch.float64) * 0.5
    V = W_ev @ H_ev + W_noise @ H_n
    noise = NMF(2, solver=solver, dtype=torch.float64).fit_stream([V_noise[:, :150], V_noise[:, 150:]], epochs=10).dictionary
    nmf = NMF(3, solver=solver, dtype=torch.float64)
    res = nmf.fit_stream([V[:, s : s + 200] for s in range(0, 1200, 200)], epochs=6, W_fixed=noise)
    assert res.dictionary.shape == (30, 5)
    assert torch.allclose(res.dictionary[:, :2], noise, atol=1e-12)  # the block stayed fixed
    assert best_cosines(W_noise, noise).min() >= 0.95
    assert best_cosines(W_ev, res.dictionary[:, 2:]).min() >= 0.9
    state = nmf.state_dict()
    assert state["fixed"] == 2
    other = NMF(3, solver=solver, dtype=torch.float64)
    other.load_state_dict(state)
    r2 = other.fit_stream([V[:, :200]], epochs=1)
    assert torch.allclose(r2.dictionary[:, :2], noise, atol=1e-12)
    with pytest.raises(ValueError, match="expected fixed 2 \\+ n_components 4"):
        NMF(4, solver=solver, dtype=torch.float64).load_state_dict({**state, "config": {**state["config"], "n_components": 4}})


@pytest.mark.parametrize("beta", [1, 2])
def test_update_activations_descend_their_divergence_and_keep_zeros(beta):
    """The interpretation's separation (``refine_iters``, ``refine_beta``): batched activation updates with W fixed
    never increase their own objective (Euclidean or Kullback-Leibler), keep a zero at zero, and recover planted
    activations better than where they start."""
    W, H_true, _ = planted(F=30, K=5, N=80, seed=4)
    H_true = H_true.reshape(5, 2, 40).permute(1, 0, 2)  # (B=2, K, T)
    V = torch.einsum("fk,bkt->bft", W, H_true)
    start = torch.full_like(H_true, float(H_true.mean()))
    start[1, 3] = 0.0  # component 3 held off on clip 1
    history, H = [], start
    for _ in range(40):
        frames = H.permute(1, 0, 2).reshape(5, -1)
        history.append(nmf_objective(V.permute(1, 0, 2).reshape(30, -1), W, frames, beta))
        H = update_activations(W, V, H, 1, beta)
    assert is_non_increasing(history), history
    assert history[-1] < 0.5 * history[0]
    assert float(H[1, 3].abs().max()) == 0.0
    assert bool((H[0, 3] >= 0).all()) and torch.isfinite(H).all()
    torch.testing.assert_close(update_activations(W, V, start, 40, beta), H)  # 40 steps at once = 40 single steps
    with pytest.raises(ValueError, match="beta must be 1 .* or 2 .*, got 3"):
        update_activations(W, V, start, 1, 3)
