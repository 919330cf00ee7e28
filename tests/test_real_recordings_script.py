"""experiments/benchmarks/real_recordings.py scores with the project's one evaluator (GroundTruth): its table's
figures are the evaluator's ``ground_truth.multi.*`` on the clips with two or more instruments."""

from __future__ import annotations

import torch

from datamodules.instruments import InstrumentDataModule
from experiments.benchmarks.real_recordings import label_constrained_nmf, score, summary
from l2i.dictionary import DictionaryArtifact
from l2i.evaluation.ground_truth import si_sdr
from l2i.frontend import AudioFrontEnd, FrontEndConfig


def test_the_script_scores_with_the_evaluator(tmp_path):
    torch.set_num_threads(1)
    dm = InstrumentDataModule(instruments=["flute", "cello", "trumpet"], max_labels=3, num_train=2, num_val=2,
                              num_test=8, batch_size=4, cache_dir=str(tmp_path), sample_rate=8000, duration_s=1.0)
    frontend = AudioFrontEnd(FrontEndConfig(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32))
    art = DictionaryArtifact(W=torch.rand(129, 6, generator=torch.Generator().manual_seed(0)) + 0.01,
                             frontend=frontend.config, meta={"labels": [c for c in dm.class_names for _ in range(2)]})
    full = score(label_constrained_nmf(art, frontend, dm.class_names, iters=20), frontend, dm.test_dataloader())
    # the pairs and the mixture's SI-SDR, counted here straight from the stems
    mix = []
    for batch in dm.test_dataloader():
        labels, sources = batch["source_labels"], batch["sources"]
        for b in range(labels.shape[0]):
            present = [c for c in labels[b].unique().tolist() if c >= 0]
            if len(present) < 2:
                continue
            for c in present:
                s = sources[b][labels[b] == c].sum(0)
                mix.append(float(si_sdr(batch["waveform"][b][None], s[None])))
    row = summary(full)
    assert row["pairs"] == len(mix) == full["multi.pairs"] > 0
    assert abs(row["mixture_median"] - float(torch.tensor(mix).median())) < 1e-4  # the lower middle value
    assert row["interp_median"] == full["multi.interpretation_median"]
    assert row["specificity"] == full["multi.specificity"] and 0.0 <= row["specificity"] <= 1.0
    assert row["oracle_median"] == full["multi.oracle_median"] > row["mixture_median"]
    assert full["all.pairs"] == full["single.pairs"] + full["multi.pairs"]
    assert row["gap_to_oracle_median"] > 0  # a random 2-component-per-class dictionary is far from the oracle
