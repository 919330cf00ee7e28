"""DDP correctness of the evaluation metrics: two gloo processes, each updating with half of the data, compute
the same values as one process with all of it (sum states add, cat states gather, medians stay exact)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from l2i.evaluation import Faithfulness, Fidelity, GroundTruth, MaskMetrics, NoiseRobustness

pytestmark = pytest.mark.slow


def _data():
    g = torch.Generator().manual_seed(0)
    B, C, K, F, T = 8, 3, 5, 4, 6
    return {
        "interp": torch.randn(B, C, generator=g),
        "clf": torch.randn(B, C, generator=g),
        "removed": torch.randn(B, 1, C, generator=g),
        "random": torch.randn(B, 1, C, generator=g),
        "classes": torch.randint(0, C, (B, 1), generator=g),
        "mask": torch.rand(B, 1, F, T, generator=g),
        "sdr": torch.randn(B, generator=g) * 10,
        "rel": torch.rand(B, 1, K, generator=g),
        "rel2": torch.rand(B, 1, K, generator=g),
    }


def _compute(rank: int | None):
    d = _data()
    sl = slice(None) if rank is None else slice(4 * rank, 4 * rank + 4)
    d = {k: v[sl] for k, v in d.items()}
    fid, faith, lmac, gt, noise = Fidelity("multiclass", 3, top_k=(2,)), Faithfulness(), MaskMetrics(), GroundTruth(), NoiseRobustness(5.0)
    fid.update(d["interp"], d["clf"])
    faith.update_from_logits(d["clf"], d["removed"], d["classes"], d["random"])
    lmac.update(d["clf"], d["removed"], d["random"], d["classes"], d["mask"])
    gt.update(d["sdr"], d["sdr"] / 2, d["mask"].mean((1, 2, 3)), d["sdr"] - 1, d["mask"].amax((1, 2, 3)))
    agree = d["interp"].argmax(-1) == d["clf"].argmax(-1)
    valid = torch.ones(d["rel"].shape[:2], dtype=torch.bool)
    noise.update(agree, ~agree, d["rel"], d["rel2"], d["rel"] > 0.2, d["rel2"] > 0.2, valid, d["sdr"], d["sdr"] - 3)
    out = {}
    for name, m in (("fid", fid), ("faith", faith), ("lmac", lmac), ("gt", gt), ("noise", noise)):
        for k, v in m.compute().items():
            out[f"{name}.{k}"] = float(v)
    return out


def _worker(rank: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        queue.put((rank, _compute(rank)))
    finally:
        dist.destroy_process_group()


def test_two_process_results_equal_one_process():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("fork")  # no re-import of torch in the children (spawn costs ~10 s here)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    single = _compute(None)
    for rank in (0, 1):
        assert results[rank].keys() == single.keys()
        for k, v in single.items():
            assert results[rank][k] == pytest.approx(v, rel=1e-5, abs=1e-6), k
