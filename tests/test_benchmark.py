"""``l2i benchmark``: a tiny run on artifacts built here writes one table whose rows and columns are all
filled with finite numbers (markdown, CSV, JSON with every row's seed and settings, W&B table offline); the L-MAC
decoder trains through Lightning and reloads from its checkpoint; missing artifacts are named."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
import os
import math

import lightning as L
import pytest
import torch
import yaml

from datamodules import SyntheticDataModule
from l2i.dictionary import DictionaryArtifact
from l2i.frontend import AudioFrontEnd, FrontEndConfig
from l2i.nmf import NMF
from lightning_modules import ByDesignModule, ClassifierModule, LMACModule, PostHocInterpreterModule

FE = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32, top_db=80.0)
SMALL = {"channels": [4, 8, 8, 8]}
DATA = {"class_path": "datamodules.SyntheticDataModule",
        "init_args": {"num_classes": 4, "sample_rate": 8000, "duration_s": 1.0, "num_train": 16, "num_val": 8,
                      "num_test": 8, "batch_size": 4, "distractor_prob": 0.8, "seed": 0}}


def _lightning_checkpoint(module, path) -> str:
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": L.__version__}, path)
    return str(path)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Tiny untrained classifier, dictionary, post-hoc and by-design models; an L-MAC decoder trained 2 steps."""
    root = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    clf = ClassifierModule(backbone_kwargs=SMALL, frontend=FE, num_classes=4)
    clf_path = _lightning_checkpoint(clf, root / "classifier.ckpt")
    dm = SyntheticDataModule(**DATA["init_args"])
    ds = dm.dataset("nmf", 12)
    fe = AudioFrontEnd(FrontEndConfig(**FE))
    V = fe.nmf_spectrogram(torch.stack([ds[i]["waveform"] for i in range(len(ds))]))
    art = DictionaryArtifact(W=NMF(10, max_iter=20, seed=0).fit(V).dictionary, frontend=fe.config.spectral_params(), meta={})
    dict_path = str(art.save(root / "dictionary.pt"))
    posthoc = PostHocInterpreterModule(classifier_checkpoint=clf_path, dictionary_path=dict_path, hidden=8, attention_dim=8)
    bydesign = ByDesignModule(dictionary_path=dict_path, backbone_kwargs=SMALL, frontend=FE, num_classes=4, hidden=8,
                              attention_dim=8)
    lmac = LMACModule(classifier_checkpoint=clf_path, hidden=8, num_classes=4, task="multiclass")
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                        default_root_dir=root)
    before = {k: v.clone() for k, v in lmac.interpreter.backbone.state_dict().items()}
    trainer.fit(lmac, datamodule=dm)
    lmac_path = root / "lmac.ckpt"
    trainer.save_checkpoint(lmac_path)
    for k, v in lmac.interpreter.backbone.state_dict().items():
        assert torch.equal(before[k], v), f"the classifier moved during L-MAC training: {k}"
    assert torch.isfinite(trainer.callback_metrics["val/loss"])
    return {"root": root, "classifier": clf_path, "dictionary": dict_path,
            "interpreter": _lightning_checkpoint(posthoc, root / "interpreter.ckpt"),
            "bydesign": _lightning_checkpoint(bydesign, root / "bydesign.ckpt"), "lmac": str(lmac_path)}


def _config(artifacts, out_dir, **benchmark) -> dict:
    interpreters = {
        "posthoc": {}, "bydesign": {}, "lmac": {}, "saliency": {},
        "integrated_gradients": {"n_steps": 2}, "gradcam": {"layer": "block3"},
        "occlusion": {"patch": [16, 16], "perturbations_per_eval": 8, "mask": "threshold"},
        "random_components": {}, "all_components": {}, "oracle_components": {}, "ideal_ratio_mask": {},
    }
    return {
        "out_dir": str(out_dir), "seed": 0,
        "artifacts": {k: artifacts[k] for k in ("classifier", "dictionary", "interpreter", "bydesign", "lmac")},
        "stages": {"classifier": {"config": "never-read.yaml"}},  # skipped: its artifact is given
        "benchmark": {"data": DATA, "max_batches": 1, "threshold": 0.2, "interpreters": interpreters, **benchmark},
    }


def test_tiny_benchmark_writes_a_full_finite_table(artifacts, tmp_path):
    from experiments.cli import main

    cfg = tmp_path / "bench.yaml"
    cfg.write_text(yaml.safe_dump(_config(artifacts, tmp_path / "run"), sort_keys=False))
    assert main(["benchmark", "--config", str(cfg)]) == 0
    out = tmp_path / "run" / "benchmark"
    record = json.loads((out / "benchmark.json").read_text())
    names = [r["name"] for r in record["rows"]]
    assert names == ["posthoc", "bydesign", "lmac", "saliency", "integrated_gradients", "gradcam", "occlusion",
                     "random_components", "all_components", "oracle_components", "ideal_ratio_mask"]
    expected = {"accuracy", "fidelity", "removal_prob_drop", "removal_logit_drop", "AI", "AD", "AG", "FF", "FidIn",
                "SPS", "COMP", "si_sdr", "si_sdri", "energy_in_support", "si_sdr_single", "si_sdr_multi", "mixture_multi",
                "beats_mixture_multi", "specificity", "oracle_multi", "interp_ms_per_clip", "train_s"}
    assert set(record["columns"]) == expected
    for row in record["rows"]:
        assert set(row["columns"]) == expected
        assert all(math.isfinite(v) for v in row["columns"].values()), row["name"]
        assert row["seed"] == 0 and isinstance(row["settings"], dict) and row["settings"]["kind"] == row["name"]
        assert row["results"]["clips"] == 4.0  # the same clips for every row
    by_name = {r["name"]: r for r in record["rows"]}
    assert by_name["integrated_gradients"]["settings"]["n_steps"] == 2
    assert by_name["bydesign"]["explained_model"] == "bydesign"
    assert by_name["all_components"]["columns"]["FidIn"] == 100.0  # the whole input keeps the class
    # the ideal ratio mask row is the report's oracle: its interpretation scores what every row's oracle column says
    irm = by_name["ideal_ratio_mask"]["columns"]
    assert irm["si_sdr_multi"] == pytest.approx(irm["oracle_multi"], abs=1e-3)
    assert irm["si_sdr_multi"] > irm["mixture_multi"] and irm["beats_mixture_multi"] == 1.0
    assert by_name["posthoc"]["columns"]["oracle_multi"] == pytest.approx(irm["oracle_multi"], abs=1e-3)
    with open(out / "benchmark.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["interpreter"] for r in rows] == names
    for r in rows:
        assert all(math.isfinite(float(r[c])) for c in expected)
    md = (out / "benchmark.md").read_text()
    assert md.count("\n| ") >= len(names) + 1 and "nan" not in md.lower()
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["benchmark.posthoc.si_sdr"] == by_name["posthoc"]["columns"]["si_sdr"]
    assert report["reused.classifier"] == artifacts["classifier"]
    assert report["benchmark.wandb"] == "ok"
    # the offline run lands in the run folder; after another W&B run in the same process wandb may keep its
    # first root folder (WANDB_DIR), so look there too
    roots = [tmp_path / "run" / "wandb", Path(os.environ["WANDB_DIR"]) / "wandb", Path(os.environ["WANDB_DIR"])]
    assert any(list(r.glob("offline-run-*")) for r in roots if r.is_dir())


def test_benchmark_stage_from_a_pipeline_context(artifacts, tmp_path):
    """What ``l2i demo`` runs: the stage on what earlier stages left in the context (two rows, no W&B)."""
    from experiments.stages.benchmark import benchmark_stage
    from experiments.pipeline import PipelineContext

    ctx = PipelineContext(out_dir=tmp_path, seed=1, artifacts={k: artifacts[k] for k in ("classifier", "dictionary", "interpreter")})
    ctx.report["posthoc.train_seconds"] = 12.5
    figures = benchmark_stage(ctx, {"data": DATA, "max_batches": 1, "wandb": False,
                                    "interpreters": {"posthoc": {}, "random": {"kind": "random_components"}}})
    assert figures["posthoc.train_s"] == 12.5 and figures["random.train_s"] == 12.5
    assert all(math.isfinite(v) for k, v in figures.items() if k.startswith(("posthoc.", "random.")))
    assert (tmp_path / "benchmark" / "benchmark.csv").is_file()


def test_missing_artifacts_and_bad_settings_are_named(artifacts, tmp_path):
    from experiments.benchmark import run_benchmark
    from experiments.stages.benchmark import benchmark_stage
    from experiments.pipeline import PipelineContext

    cfg = _config(artifacts, tmp_path)
    cfg["artifacts"]["bydesign"] = str(tmp_path / "missing.ckpt")
    with pytest.raises(FileNotFoundError, match="artifacts.bydesign"):
        run_benchmark(cfg)
    ctx = PipelineContext(out_dir=tmp_path, artifacts={"classifier": artifacts["classifier"]})
    with pytest.raises(ValueError, match="'interpreter' artifact"):
        benchmark_stage(ctx, {"data": DATA, "max_batches": 1, "interpreters": {"posthoc": {}}})
    with pytest.raises(ValueError, match="unknown kind 'lime'"):
        benchmark_stage(ctx, {"data": DATA, "max_batches": 1, "interpreters": {"lime": {}}})
    with pytest.raises(ValueError, match="unknown key"):
        benchmark_stage(ctx, {"data": DATA, "max_batch": 1})


def test_seeds_rows_and_max_batches_from_the_command_line(artifacts, tmp_path):
    """``--seeds 2 --rows … --max_batches 1``: one run per seed in its own folder, then one table of mean ± std per
    cell in Markdown, CSV, LaTeX (booktabs) and JSON; the artifacts are given, so only the benchmark's own
    randomness varies: the post-hoc row is the same for both seeds, the random components differ."""
    from experiments.cli import main

    cfg = _config(artifacts, tmp_path / "run", max_batches=3, wandb=False)
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert main(["benchmark", "--config", str(path), "--seeds", "2", "--rows", "posthoc,random_components",
                 "--max_batches", "1"]) == 0
    for seed in (0, 1):
        single = json.loads((tmp_path / "run" / f"seed-{seed}" / "benchmark" / "benchmark.json").read_text())
        assert [r["name"] for r in single["rows"]] == ["posthoc", "random_components"] and single["complete"]
        assert single["rows"][0]["seed"] == seed and single["rows"][0]["results"]["clips"] == 4.0  # --max_batches 1
    out = tmp_path / "run" / "benchmark"
    record = json.loads((out / "benchmark.json").read_text())
    assert record["complete"] and record["seeds"] == [0, 1]
    by_name = {r["name"]: r for r in record["rows"]}
    assert by_name["posthoc"]["seeds"] == [0, 1]
    for c, values in by_name["posthoc"]["per_seed"].items():
        if c != "interp_ms_per_clip":  # a time, not a figure of the interpretation
            assert values[0] == values[1], c
            assert by_name["posthoc"]["std"][c] == 0.0
    rnd = by_name["random_components"]
    assert rnd["per_seed"]["si_sdr"][0] != rnd["per_seed"]["si_sdr"][1]
    mean = sum(rnd["per_seed"]["si_sdr"]) / 2
    std = abs(rnd["per_seed"]["si_sdr"][0] - rnd["per_seed"]["si_sdr"][1]) / math.sqrt(2)  # sample std of two values
    assert rnd["columns"]["si_sdr"] == pytest.approx(mean) and rnd["std"]["si_sdr"] == pytest.approx(std)
    md = (out / "benchmark.md").read_text()
    assert f"{mean:.2f} ± {std:.2f}" in md and "mean ± std over 2 seed(s) [0, 1]" in md
    assert "Seeds vary: the benchmark's own randomness only" in md
    tex = (out / "benchmark.tex").read_text()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{l" + "r" * len(record["columns"]) + "}"):
        assert rule in tex
    assert r"random\_components &" in tex and r"$\pm$" in tex and r"si\_sdr $\uparrow$" in tex
    with open(out / "benchmark.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[1]["si_sdr_std"]) == pytest.approx(std) and rows[1]["seeds"] == "0 1"


def test_rows_are_written_as_they_finish(artifacts, tmp_path, monkeypatch):
    """A run killed during its second row keeps the first row's table (marked partial)."""
    import l2i.evaluation
    from experiments.stages.benchmark import benchmark_stage
    from experiments.pipeline import PipelineContext

    real = l2i.evaluation.evaluate_interpreter
    calls = []

    def dies_on_the_second_row(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(l2i.evaluation, "evaluate_interpreter", dies_on_the_second_row)
    ctx = PipelineContext(out_dir=tmp_path, artifacts={k: artifacts[k] for k in ("classifier", "dictionary", "interpreter")})
    with pytest.raises(KeyboardInterrupt):
        benchmark_stage(ctx, {"data": DATA, "max_batches": 1, "wandb": False,
                              "interpreters": {"posthoc": {}, "saliency": {}, "all_components": {}}})
    record = json.loads((tmp_path / "benchmark" / "benchmark.json").read_text())
    assert [r["name"] for r in record["rows"]] == ["posthoc"] and record["complete"] is False
    assert math.isfinite(record["rows"][0]["columns"]["si_sdr"])
    md = (tmp_path / "benchmark" / "benchmark.md").read_text()
    assert "*Partial: 1 row(s) finished" in md and "| posthoc |" in md
    assert (tmp_path / "benchmark" / "benchmark.tex").is_file() and (tmp_path / "benchmark" / "benchmark.csv").is_file()


def test_one_number_format_and_the_best_value_marked():
    from experiments.stages.benchmark import _fmt, table_latex, table_markdown

    assert [_fmt(v) for v in (6.404e-05, 1.613e-07, 1.0, 70.125, -5.2149, 12345.6)] == \
        ["0.00", "0.00", "1.00", "70.12", "-5.21", "12346"]
    rows = [{"name": "posthoc", "kind": "posthoc", "columns": {"si_sdr": 8.97, "AD": 70.1}},
            {"name": "gradcam", "kind": "gradcam", "columns": {"si_sdr": 12.09, "AD": 37.6}},
            {"name": "all_components", "kind": "all_components", "columns": {"si_sdr": 14.18, "AD": 0.0}}]
    md = table_markdown(rows, ["si_sdr", "AD"])
    # higher si_sdr and lower AD are better; the reference row (the whole input) is never marked
    assert "| gradcam | **12.09** | **37.60** |" in md and "| all_components | 14.18 | 0.00 |" in md
    assert r"gradcam & \textbf{12.09} & \textbf{37.60} \\" in table_latex(rows, ["si_sdr", "AD"])


def test_the_demo_and_l2i_benchmark_share_one_configuration():
    """The demo's benchmark stage reads ``l2i benchmark``'s config: the same rows with the same settings (integrated
    gradients' steps, occlusion's patch …) and L-MAC training, on the first half of the command's clips, so their
    tables are comparable."""
    from experiments.stages.benchmark import resolve_settings

    root = Path(__file__).resolve().parents[1]
    demo = yaml.safe_load((root / "experiments/demo.yaml").read_text())["stages"]["benchmark"]
    bench = yaml.safe_load((root / "experiments/benchmark/synthetic.yaml").read_text())
    settings = resolve_settings(demo)
    assert settings["interpreters"] == bench["benchmark"]["interpreters"]
    assert settings["interpreters"]["integrated_gradients"]["n_steps"] == 8
    assert settings["interpreters"]["occlusion"]["patch"] == [16, 16]
    assert settings["lmac"] == bench["stages"]["lmac"]
    for key in ("batch_size", "threshold", "data_config", "split"):
        assert settings[key] == bench["benchmark"][key]
    # the demo scores the first of the command's test batches (64 of its 128 clips, to keep the demo short)
    assert settings["max_batches"] == 2 and bench["benchmark"]["max_batches"] == 4
    assert resolve_settings({**demo, "max_batches": 1})["max_batches"] == 1  # keys given beside config override it


def test_lmac_stage_keeps_best_and_last_checkpoints_and_its_config_in_its_folder(artifacts, tmp_path):
    """The L-MAC stage (plain ModelCheckpoint before) now checkpoints like every stage: ``lmac/checkpoints/best.ckpt``
    and ``last.ckpt``, its resolved ``config.yaml`` and W&B run in ``lmac/``, nothing in the pipeline's root."""
    from experiments.stages.lmac import lmac_stage
    from experiments.pipeline import PipelineContext

    ctx = PipelineContext(out_dir=tmp_path, artifacts={"classifier": artifacts["classifier"]})
    tiny = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--model.init_args.hidden", "8", "--data.init_args.num_classes", "4", "--data.init_args.sample_rate", "8000",
            "--data.init_args.duration_s", "1.0", "--data.init_args.num_train", "16", "--data.init_args.num_val", "8",
            "--data.init_args.num_test", "8", "--data.init_args.batch_size", "4"]
    figures = lmac_stage(ctx, {"overrides": tiny})
    stage = tmp_path / "lmac"
    assert (stage / "checkpoints" / "best.ckpt").is_file() and (stage / "checkpoints" / "last.ckpt").is_file()
    assert Path(figures["checkpoint"]) == stage / "lmac.ckpt" and ctx.artifacts["lmac"] == str(stage / "lmac.ckpt")
    assert yaml.safe_load((stage / "config.yaml").read_text())["model"]["class_path"] == "lightning_modules.LMACModule"
    assert list((stage / "wandb").glob("offline-run-*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lmac"]


def test_an_all_pass_lmac_row_is_called_one_in_the_table(artifacts, tmp_path):
    from experiments.stages.benchmark import benchmark_stage
    from experiments.pipeline import PipelineContext

    ctx = PipelineContext(out_dir=tmp_path, artifacts={k: artifacts[k] for k in ("classifier", "lmac")})
    ctx.report["lmac.val_mask_mean"] = 0.9986
    benchmark_stage(ctx, {"data": DATA, "max_batches": 1, "wandb": False, "interpreters": {"lmac": {}}})
    md = (tmp_path / "benchmark" / "benchmark.md").read_text()
    assert "The lmac row is an all-pass mask (mean mask 0.999 on the validation clips)" in md
    ctx.report["lmac.val_mask_mean"] = 0.44
    benchmark_stage(ctx, {"data": DATA, "max_batches": 1, "wandb": False, "interpreters": {"lmac": {}}})
    assert "all-pass" not in (tmp_path / "benchmark" / "benchmark.md").read_text()


def test_the_authors_protocol_on_a_tiny_benchmark(artifacts, tmp_path, monkeypatch):
    """``l2i benchmark --protocol authors``: the post-hoc row interprets with the preset's top 5 (the shared model,
    which the component baselines also use, is left as it is); the post-hoc and by-design rows carry the authors'
    figures — the same numbers as evaluate_authors_protocol on the same clips — in benchmark.json, report.json and
    benchmark.md; other rows have none; an unknown protocol is named."""
    from experiments.stages.benchmark import _Loaded, _batches, _datamodule, benchmark_stage, build_row
    from experiments.cli import main
    from experiments.pipeline import PipelineContext
    from l2i.evaluation.authors import evaluate_authors_protocol
    from l2i.interpreter.protocol import PROTOCOLS

    rows = ["posthoc", "bydesign", "saliency", "random_components"]
    cfg = _config(artifacts, tmp_path / "run", wandb=False, listening_clips=0)
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert main(["benchmark", "--config", str(path), "--rows", ",".join(rows), "--protocol", "authors"]) == 0
    record = json.loads((tmp_path / "run" / "benchmark" / "benchmark.json").read_text())
    assert record["protocol"] == "authors" and [r["name"] for r in record["rows"]] == rows
    by_name = {r["name"]: r for r in record["rows"]}
    assert by_name["posthoc"]["settings"] == {"kind": "posthoc", "protocol": "authors", "top_k": 5}
    assert by_name["bydesign"]["settings"] == {"kind": "bydesign", "protocol": "authors"}
    for name in ("saliency", "random_components"):
        assert not [k for k in by_name[name]["results"] if k.startswith("authors.")], name

    # the same figures as the authors' evaluation called directly on the benchmark's clips
    ctx = PipelineContext(out_dir=tmp_path / "direct", artifacts={k: artifacts[k] for k in ("classifier", "dictionary",
                                                                                            "interpreter", "bydesign")})
    loaded = _Loaded(ctx, "cpu")
    batches = _batches(_datamodule({"data": DATA})[0], "test", 1)
    for name in ("posthoc", "bydesign"):
        interp, classifier, _, _ = build_row(name, {}, loaded, 0, "authors")
        direct = evaluate_authors_protocol(interp, classifier, batches, task="multiclass", num_classes=4, seed=0)
        got = {k[len("authors."):]: v for k, v in by_name[name]["results"].items() if k.startswith("authors.")}
        assert set(got) == set(direct) and {"fidelity.top1", "fidelity.top5", "faithfulness.relevant_prob_drop_median",
                                            "faithfulness.random_prob_drop_median", "lmac.FF", "lmac.COMP"} <= set(got)
        for k, v in direct.items():
            assert got[k] == pytest.approx(v, abs=1e-6), (name, k)
            assert math.isfinite(got[k])
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["benchmark.posthoc.authors.fidelity.top1"] == by_name["posthoc"]["results"]["authors.fidelity.top1"]
    md = (tmp_path / "run" / "benchmark" / "benchmark.md").read_text()
    section = md[md.index("## Authors' protocol"):]
    assert "| posthoc |" in section and "| bydesign |" in section and "| saliency |" not in section

    # the post-hoc row takes the preset's top_k (here a preset capped at 3, fewer than the components this tiny
    # interpreter finds relevant); the shared model itself (and so the component baselines) stays uncapped
    monkeypatch.setitem(PROTOCOLS, "authors", dataclasses.replace(PROTOCOLS["authors"], top_k=3))
    interp, classifier, _, settings = build_row("posthoc", {}, loaded, 0, "authors")
    plain, _, _, _ = build_row("posthoc", {}, loaded, 0, "project")
    assert settings["top_k"] == 3
    wav = batches[0]["waveform"].float()
    with torch.no_grad():  # Θ weighs every component for the explained classes
        weight = plain.interpreter.theta.classifier.weight
        weight.zero_()
        weight[classifier(wav).argmax(-1).unique()] = 1.0
    capped, every = interp.interpret(wav, threshold=0.0), plain.interpret(wav, threshold=0.0)
    assert int(every.explained("components")[every.valid].sum(-1).min()) > 3
    assert int(capped.explained("components")[capped.valid].sum(-1).max()) == 3
    assert plain.interpreter.top_k is None
    with pytest.raises(ValueError, match="benchmark.protocol: protocol must be one of"):
        benchmark_stage(ctx, {"data": DATA, "max_batches": 1, "protocol": "paper", "interpreters": {"posthoc": {}}})


def test_dotted_overrides_set_the_benchmarks_data_as_for_fit(artifacts, tmp_path):
    """``l2i benchmark --data.init_args.batch_size 2``: the override reaches the benchmark's data (as
    ``--data.init_args.root`` does for a user's copy of a data set); other dotted keys address the config."""
    from experiments.cli import main

    cfg = _config(artifacts, tmp_path / "run", max_batches=3, wandb=False)
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert main(["benchmark", "--config", str(path), "--rows", "posthoc", "--max_batches", "1",
                 "--data.init_args.batch_size", "2", "--benchmark.threshold", "0.3"]) == 0
    record = json.loads((tmp_path / "run" / "benchmark" / "benchmark.json").read_text())
    row = record["rows"][0]
    assert row["results"]["clips"] == 2.0 and row["threshold"] == 0.3
