"""MagnaTagATune metrics: macro ROC-AUC / PR-AUC equal scikit-learn's; chunk averaging."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from l2i.metrics.tagging import ClipTaggingMetrics, TaggingMetrics, average_chunks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_roc_auc_and_pr_auc_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, c = 300, 50
    target = (rng.random((n, c)) < rng.uniform(0.02, 0.3, c)).astype(np.int64)
    target[0] = 1  # every tag has a positive
    target[1] = 0  # and a negative
    scores = np.clip(0.35 * target + rng.random((n, c)) * 0.8, 0, 1)
    scores[:, :5] = np.round(scores[:, :5], 1)  # ties
    m = TaggingMetrics(num_labels=c, prefix="test/")
    for s in (slice(0, 100), slice(100, 170), slice(170, n)):
        m.update(torch.from_numpy(scores[s]).float(), torch.from_numpy(target[s]))
    out = m.compute()
    assert set(out) == {"test/roc_auc", "test/pr_auc"}
    want_roc = roc_auc_score(target, scores.astype(np.float32), average="macro")
    want_pr = average_precision_score(target, scores.astype(np.float32), average="macro")
    assert out["test/roc_auc"].item() == pytest.approx(want_roc, abs=1e-5)
    assert out["test/pr_auc"].item() == pytest.approx(want_pr, abs=1e-5)
    assert 0.6 < want_roc < 1.0  # informative scores, not a degenerate case


def test_chunk_average_then_metric():
    """Chunk predictions averaged per clip before the metric (the test-time protocol)."""
    rng = np.random.default_rng(3)
    clips, chunks, c = 40, 3, 6
    clip_target = (rng.random((clips, c)) < 0.4).astype(np.int64)
    clip_target[0], clip_target[1] = 1, 0
    chunk_scores = rng.random((clips * chunks, c)).astype(np.float32)
    clip_index = torch.arange(clips).repeat_interleave(chunks)
    avg, ids = average_chunks(torch.from_numpy(chunk_scores), clip_index)
    assert ids == list(range(clips)) and avg.shape == (clips, c)
    np.testing.assert_allclose(avg.numpy(), chunk_scores.reshape(clips, chunks, c).mean(1), rtol=1e-6)
    m = TaggingMetrics(num_labels=c)
    m.update(avg, torch.from_numpy(clip_target))
    out = m.compute()
    want = roc_auc_score(clip_target, avg.numpy(), average="macro")
    assert out["roc_auc"].item() == pytest.approx(want, abs=1e-5)


def test_average_chunks_input_errors():
    with pytest.raises(ValueError, match=r"outputs must be \(N_chunks, C\)"):
        average_chunks(torch.zeros(3), [0, 0, 1])
    with pytest.raises(ValueError, match="2 clip ids for 3 chunk outputs"):
        average_chunks(torch.zeros(3, 2), [0, 1])


def test_clip_metrics_average_chunks_across_batches():
    """Chunks of a clip spread over batches (shuffled): clip-level scores equal scikit-learn on the means."""
    rng = np.random.default_rng(4)
    clips, chunks, c = 30, 4, 5
    clip_target = (rng.random((clips, c)) < 0.4).astype(np.int64)
    clip_target[0], clip_target[1] = 1, 0
    clip_index = np.repeat(np.arange(clips), chunks)
    scores = np.clip(0.3 * clip_target[clip_index] + rng.random((clips * chunks, c)), 0, 1).astype(np.float32)
    perm = rng.permutation(len(clip_index))
    m = ClipTaggingMetrics(num_labels=c, prefix="test/")
    for part in np.array_split(perm, 7):
        m.update(torch.from_numpy(scores[part]), torch.from_numpy(clip_target[clip_index[part]]),
                 torch.from_numpy(clip_index[part]))
    out = m.compute()
    means = scores.reshape(clips, chunks, c).mean(1)
    assert out["test/roc_auc"].item() == pytest.approx(roc_auc_score(clip_target, means, average="macro"), abs=1e-5)
    assert out["test/pr_auc"].item() == pytest.approx(average_precision_score(clip_target, means, average="macro"), abs=1e-5)
    # chunk-level scores differ: averaging is what is measured
    assert roc_auc_score(clip_target[clip_index], scores, average="macro") != pytest.approx(out["test/roc_auc"].item(), abs=1e-3)
    bad = ClipTaggingMetrics(num_labels=c)
    bad.update(torch.rand(2, c), torch.tensor([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0]]), torch.tensor([3, 3]))
    with pytest.raises(ValueError, match="chunks of one clip carry different targets"):
        bad.compute()
