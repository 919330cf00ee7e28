"""The ``instruments`` stage of ``l2i demo`` (optional: experiments/demo_instruments.yaml): the authors' settings
and the class-block recipe side by side on the real-recording set, scored by the one evaluator, with a listening
table of mixture, true source and both interpretations. Tiny here (3 instruments, 1 s at 8 kHz, 1 epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_instruments_stage_reports_both_side_by_side_and_a_listening_table(tmp_path):
    from experiments.pipeline import run_pipeline

    torch.set_num_threads(1)
    tiny = dict(instruments=["flute", "cello", "trumpet"], num_train=12, num_val=4, num_test=8, duration_s=1.0,
                classifier_epochs=1, posthoc_epochs=1, authors_components=6, block_components=2, nmf_epochs=1,
                batch_size=4, listening_clips=2, cache_dir=str(tmp_path / "cache"))
    ctx = run_pipeline({"instruments": tiny}, tmp_path / "demo", seed=0)
    r = ctx.report
    for name in ("authors", "recipe"):
        for key in ("pairs", "interpretation_median", "mixture_median", "over_mixture_median", "oracle_median"):
            assert isinstance(r[f"instruments.ground_truth.{name}.all.{key}"], float), (name, key)
    # the same clips and pairs for both; the mixture's figure does not depend on the interpreter
    assert r["instruments.ground_truth.authors.all.pairs"] == r["instruments.ground_truth.recipe.all.pairs"] >= 8
    assert r["instruments.ground_truth.authors.all.mixture_median"] == r["instruments.ground_truth.recipe.all.mixture_median"]
    assert r["instruments.ground_truth.recipe.all.oracle_median"] > r["instruments.ground_truth.recipe.all.mixture_median"]
    page = Path(r["instruments.listening"])
    rows = json.loads((page.parent / "rows.json").read_text())
    assert rows["interpreters"] == ["authors", "recipe"] and rows["has_sources"] and len(rows["rows"]) == 2
    for row in rows["rows"]:
        for column in ("mixture", "source", "authors", "recipe"):
            assert (page.parent / row["files"][column]).is_file(), (column, row["files"])
    assert "instruments.ground_truth.recipe.all.interpretation_median" in (tmp_path / "demo" / "report.json").read_text()


def test_the_optional_config_names_the_stage_and_the_default_demo_leaves_it_out():
    optional = yaml.safe_load((REPO / "experiments/demo_instruments.yaml").read_text())
    assert list(optional["stages"]) == ["instruments"]
    assert "instruments" not in yaml.safe_load((REPO / "experiments/demo.yaml").read_text())["stages"]
