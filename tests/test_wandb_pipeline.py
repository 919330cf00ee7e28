"""Reviewing by ear in W&B: a tiny ``l2i benchmark`` pipeline (an L-MAC stage trained through Lightning, then
the benchmark) runs offline in its own process with a fresh home folder and W&B's defaults. Its runs share one
group, each stage has its job_type and names the artifacts it used; the benchmark's run holds the listening
table, every audio cell of which is a decodable WAV inside the run's own folder (read from the run's own
record); nothing lands in the home folder's W&B folders; the static listening page fits a 1,280 px window."""

from __future__ import annotations

import json
import re
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from browser_helpers import dump_dom, layout, screenshot
from experiments.cli import read_config
from test_benchmark import DATA, artifacts  # noqa: F401 - the tiny artifacts fixture

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
INTERPRETERS = ["posthoc", "lmac", "saliency", "oracle_components"]
CLIPS = 3


def wandb_records(path: Path):
    """The protobuf records of an offline run file (``run-<id>.wandb``: W&B's LevelDB-style log of 32 KiB
    blocks, a 7-byte file header, each record chunk ``crc32 | length (u16) | type (full/first/middle/last)``)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            raw = chunk
        elif kind == 2:
            pending = chunk
            continue
        elif kind == 3:
            pending += chunk
            continue
        elif kind == 4:
            raw = pending + chunk
        else:
            continue
        rec = pb.Record()
        rec.ParseFromString(raw)
        yield rec


def read_run(folder: Path) -> dict:
    """group, job_type, config, summary and artifact manifests (name -> {path in artifact: local file}) of a run."""
    out = {"folder": folder, "config": {}, "artifacts": {}, "summary": {}}
    for rec in wandb_records(next(folder.glob("run-*.wandb"))):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["group"], out["job_type"] = rec.run.run_group, rec.run.job_type
            out["config"].update({item.key: json.loads(item.value_json) for item in rec.run.config.update})
        elif kind == "config":
            out["config"].update({item.key: json.loads(item.value_json) for item in rec.config.update})
        elif kind == "summary":
            out["summary"].update({item.key or ".".join(item.nested_key): json.loads(item.value_json)
                                   for item in rec.summary.update})
        elif kind == "artifact":
            out["artifacts"][rec.artifact.name] = {e.path: e.local_path for e in rec.artifact.manifest.contents}
    return out


def finished_runs(folders) -> list[dict]:
    """:func:`read_run` of each offline run folder once its ``.wandb`` file holds the exit record (W&B's service
    may still be writing it after ``wandb.finish()`` returns)."""
    for folder in folders:
        path = next(folder.glob("run-*.wandb"))
        for _ in range(60):
            if any(r.WhichOneof("record_type") == "exit" for r in wandb_records(path)):
                break
            time.sleep(0.5)
    return [read_run(f) for f in folders]


@pytest.fixture(scope="module")
def offline_pipeline(artifacts, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp("wandb-pipeline")
    home = tmp / "home"
    home.mkdir()
    tiny = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
            "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]
    tiny += [f"--data.init_args.{k}={v}" for k, v in DATA["init_args"].items()]
    config = {
        "out_dir": str(tmp / "run"), "seed": 0,
        "artifacts": {k: artifacts[k] for k in ("classifier", "dictionary", "interpreter")},
        "stages": {"lmac": {"config": "experiments/synthetic/lmac.yaml", "overrides": tiny}},
        "benchmark": {"data": DATA, "max_batches": 1, "threshold": 0.2, "listening_clips": CLIPS,
                      "interpreters": {name: {} for name in INTERPRETERS}},
    }
    cfg = tmp / "bench.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}  # W&B's defaults, as a user has them
    env.update(HOME=str(home), WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(ROOT),
               OMP_NUM_THREADS="1", XDG_DATA_HOME="", XDG_CACHE_HOME="", XDG_CONFIG_HOME="")
    env = {k: v for k, v in env.items() if v != ""}
    proc = subprocess.run([sys.executable, "-m", "experiments.cli", "benchmark", "--config", str(cfg)], cwd=str(tmp),
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    # each stage's run in its own folder (<out>/lmac/wandb/…, as every trained stage), the benchmark's in <out>/wandb
    runs = [read_run(f) for f in sorted((tmp / "run").rglob("wandb/offline-run-*"))]
    return {"tmp": tmp, "home": home, "out": tmp / "run", "runs": runs, "stdout": proc.stdout}


def test_one_group_one_job_type_per_stage_and_the_artifacts_used(offline_pipeline, artifacts):  # noqa: F811
    runs = offline_pipeline["runs"]
    assert sorted(r["job_type"] for r in runs) == ["benchmark", "lmac"]
    groups = {r["group"] for r in runs}
    assert len(groups) == 1 and next(iter(groups)).startswith("run-"), groups  # <out_dir name>-<start time>
    assert f"W&B group of this benchmark's runs: {next(iter(groups))}" in offline_pipeline["stdout"]
    by_job = {r["job_type"]: r for r in runs}
    lmac_cfg = by_job["lmac"]["config"]["l2i"]
    assert lmac_cfg["stage"] == "lmac" and lmac_cfg["artifacts"]["classifier"] == artifacts["classifier"]
    bench = by_job["benchmark"]["config"]["l2i"]["artifacts"]
    assert bench["interpreter"] == artifacts["interpreter"] and Path(bench["lmac"]).is_file()
    assert Path(bench["lmac"]).is_relative_to(offline_pipeline["out"])  # the L-MAC decoder this pipeline trained


def test_listening_table_has_a_decodable_wav_behind_every_audio_cell(offline_pipeline):
    bench = next(r for r in offline_pipeline["runs"] if r["job_type"] == "benchmark")
    manifest = next(m for name, m in bench["artifacts"].items() if name.endswith("-listening"))
    table = json.loads(Path(manifest["listening.table.json"]).read_text())
    columns = table["columns"]
    for col in ["mixture", "source", *INTERPRETERS, *[f"{n}_spectrogram" for n in INTERPRETERS],
                *[f"{n}_si_sdr" for n in INTERPRETERS], *[f"{n}_prob_drop" for n in INTERPRETERS]]:
        assert col in columns, col
    assert len(table["data"]) == CLIPS
    audio_cells = 0
    for row in table["data"]:
        cells = dict(zip(columns, row))
        for col in ["mixture", "source", *INTERPRETERS]:
            cell = cells[col]
            assert isinstance(cell, dict) and cell["_type"] == "audio-file", (col, cell)
            local = Path(manifest[cell["path"]])
            assert local.is_relative_to(bench["folder"]), local  # staged inside the run's own folder
            data, rate = sf.read(str(local))
            assert rate == DATA["init_args"]["sample_rate"] and data.shape[0] > 0
            audio_cells += 1
        for name in INTERPRETERS:
            assert isinstance(cells[f"{name}_prob_drop"], float) and isinstance(cells[f"{name}_si_sdr"], float)
    assert audio_cells == CLIPS * (2 + len(INTERPRETERS))


def test_a_copy_of_the_run_folder_carries_every_staged_file_and_home_stays_clean(offline_pipeline):
    home = offline_pipeline["home"]
    leaked = [str(p.relative_to(home)) for p in home.rglob("*") if "wandb" in p.name.lower()]
    assert leaked == [], leaked  # nothing under ~/.local/share/wandb, ~/.cache/wandb, ~/.config/wandb
    for run in offline_pipeline["runs"]:
        copy = offline_pipeline["tmp"] / "copied" / run["folder"].name
        shutil.copytree(run["folder"], copy)
        for manifest in run["artifacts"].values():
            for path, local in manifest.items():
                rel = Path(local).relative_to(run["folder"])  # raises if a staged file lies outside the run
                assert (copy / rel).is_file(), (path, local)


def test_listening_page_shows_every_interpreter_within_1280px(offline_pipeline, tmp_path):
    page = offline_pipeline["out"] / "benchmark" / "listening" / "index.html"
    report = json.loads((offline_pipeline["out"] / "report.json").read_text())
    assert report["benchmark.listening"] == str(page)
    shot = screenshot(page, tmp_path / "listening.png", tmp_path)
    assert int.from_bytes(shot.read_bytes()[16:20], "big") == 1280
    dom, stderr = dump_dom(page, tmp_path)
    assert 'id="errors" data-count="0"' in dom
    found = layout(dom)
    assert found["viewport"] == 1280 and found["scroll_width"] <= 1280, found
    assert set(found["columns"]) == {"mixture", "source", *INTERPRETERS}
    assert all(len(rights) == CLIPS for rights in found["columns"].values()), found["columns"]
    assert all(r <= 1280 for rights in found["columns"].values() for r in rights), found["columns"]
    assert dom.count("<audio") == CLIPS * (2 + len(INTERPRETERS)) == len(re.findall(r'data-duration="', dom))


def test_a_plain_fit_names_its_job_type_group_and_artifacts(tmp_path, monkeypatch):
    """A user's own chain: ``WANDB_RUN_GROUP=exp1 l2i fit …`` — W&B's group variable, the model's stage as
    job_type, the files the model was built from (here: none for a classifier) in the config."""
    from experiments.cli import main

    monkeypatch.setenv("WANDB_RUN_GROUP", "exp1")
    monkeypatch.chdir(ROOT)
    args = ["fit", "--config", "experiments/synthetic/classifier.yaml", "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1", "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
            "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.callbacks", "[]",
            "--data.init_args.num_train", "8", "--data.init_args.num_val", "4", "--data.init_args.num_test", "4",
            "--data.init_args.duration_s", "1.0", "--data.init_args.batch_size", "4"]
    assert main(args) == 0
    import wandb

    wandb.finish()
    runs = finished_runs(sorted((tmp_path / "wandb").glob("offline-run-*")))
    assert [(r["group"], r["job_type"]) for r in runs] == [("exp1", "classifier")]
    assert runs[0]["config"]["l2i"]["artifacts"] == {}


def test_listening_table_without_sources_has_no_source_column(artifacts, tmp_path):  # noqa: F811
    """A data set that does not know its sources (ESC-50 and the like): the explained model's own class, no
    source column, no SI-SDR; every interpreter's interpretation and faithfulness are still there."""
    from datamodules import SyntheticDataModule
    from experiments.stages.benchmark import _Loaded
    from experiments.listening import listening_columns, listening_table
    from experiments.pipeline import PipelineContext

    dm = SyntheticDataModule(**DATA["init_args"])
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    batch = {k: v for k, v in batch.items() if k not in ("sources", "source_labels", "source_targets")}
    loaded = _Loaded(PipelineContext(out_dir=tmp_path, artifacts=dict(artifacts)), "cpu")
    posthoc, classifier = loaded.get("interpreter", "posthoc"), loaded.get("classifier", "posthoc")
    record = listening_table(tmp_path / "listening", [("posthoc", posthoc, classifier)], batch, dm.class_names,
                             clips=2, images=False)
    assert record["has_sources"] is False and len(record["rows"]) == 2
    predicted = classifier(batch["waveform"][:2].float()).argmax(-1)
    for row, c in zip(record["rows"], predicted):
        assert "source" not in row["files"] and row["si_sdr_mixture"] is None
        assert row["explained_class"] == dm.class_names[int(c)]  # the model's own class
        fig = row["figures"]["posthoc"]
        assert fig["si_sdr"] is None and -1.0 <= fig["prob_drop"] <= 1.0
        assert sf.read(str(tmp_path / "listening" / row["files"]["posthoc"]))[0].shape[0] > 0
    assert listening_columns(record) == ["id", "true_label", "explained_class", "mixture", "mixture_spectrogram",
                                         "posthoc", "posthoc_spectrogram", "posthoc_prob_drop"]
    assert "data-col='source'" not in (tmp_path / "listening" / "index.html").read_text()


def _tiny_config(src: str, dst: Path, data: dict) -> str:
    """``src`` (a fit config) with tiny data, written to ``dst``."""
    cfg = read_config(ROOT / src)  # its data and front-end files read in: the copy stands alone
    cfg["data"]["init_args"].update(data)
    dst.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(dst)


def test_every_demo_stage_has_its_own_run_in_the_group(tmp_path, monkeypatch):
    """The demo's eight stages, tiny, in one process: every stage (the trainer-less ``dictionary``, ``evaluation`` and
    ``instruments`` too) makes one run with the pipeline's group and its own job_type, and names the artifacts it was given; the
    post-hoc and by-design runs' galleries have the final model's ``test-final`` section."""
    from experiments.pipeline import STAGE_ORDER, run_pipeline

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_RUN_GROUP", raising=False)
    data = {"num_train": 8, "num_val": 4, "num_test": 4, "duration_s": 1.0, "batch_size": 4}
    tiny = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
            "--trainer.limit_test_batches", "1", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]
    posthoc = _tiny_config("experiments/synthetic/posthoc.yaml", tmp_path / "posthoc.yaml", data)
    bench_data = {"class_path": "datamodules.SyntheticDataModule", "init_args": {**data, "num_classes": 8}}
    stages = {
        "classifier": {"config": "experiments/synthetic/classifier.yaml",
                       "overrides": tiny + [f"--data.init_args.{k}={v}" for k, v in data.items()]},
        "dictionary": {"config": "experiments/synthetic/nmf.yaml", "num_clips": 8, "eval_clips": 4, "images": False,
                       "data": {"init_args": data}, "nmf": {"n_components": 8, "epochs": 1}},
        "posthoc": {"config": posthoc, "overrides": tiny + ["--model.init_args.noise_evidence", "true"],
                    "examples": 1, "max_batches": 1},
        "evaluation": {"config": posthoc, "max_batches": 1, "noise_snr_db": [], "overlap": None},
        "bydesign": {"config": _tiny_config("experiments/synthetic/bydesign.yaml", tmp_path / "bydesign.yaml", data),
                     "overrides": tiny, "max_batches": 1},
        "lmac": {"config": "experiments/synthetic/lmac.yaml",
                 "overrides": tiny + [f"--data.init_args.{k}={v}" for k, v in data.items()]},
        "benchmark": {"data": bench_data, "max_batches": 1, "listening_clips": 1,
                      "interpreters": {"posthoc": {}, "saliency": {}}},
        "instruments": {"instruments": ["flute", "cello"], "max_labels": 2, "num_train": 8, "num_val": 2, "num_test": 4, "duration_s": 1.0,
                        "classifier_epochs": 1, "posthoc_epochs": 1, "authors_components": 4, "block_components": 2,
                        "nmf_epochs": 1, "batch_size": 4, "listening_clips": 1, "cache_dir": str(tmp_path / "cache")},
    }
    assert tuple(stages) == STAGE_ORDER
    ctx = run_pipeline(stages, tmp_path / "demo", group="tiny-demo")
    import wandb

    wandb.finish()
    runs = finished_runs(sorted((tmp_path / "demo").rglob("wandb/offline-run-*")))
    assert sorted(r["job_type"] for r in runs) == sorted(STAGE_ORDER)  # one run per stage, none without a job_type
    assert {r["group"] for r in runs} == {"tiny-demo"}
    by_job = {r["job_type"]: r for r in runs}
    assert by_job["dictionary"]["config"]["l2i"]["artifacts"]["classifier"] == ctx.artifacts["classifier"]
    assert by_job["dictionary"]["folder"].is_relative_to(tmp_path / "demo" / "dictionary")
    evaluation = by_job["evaluation"]
    assert evaluation["config"]["l2i"]["artifacts"]["interpreter"] == ctx.artifacts["interpreter"]
    assert evaluation["folder"].is_relative_to(tmp_path / "demo" / "evaluation")
    assert evaluation["summary"]["fidelity.top1"] == pytest.approx(ctx.report["evaluation.fidelity.top1"])
    assert by_job["instruments"]["folder"].is_relative_to(tmp_path / "demo" / "instruments")
    assert any(name.endswith("-listening") for name in by_job["instruments"]["artifacts"])
    # the post-hoc and by-design stages' galleries hold the final model on the test clips
    for job in ("posthoc", "bydesign"):
        final = by_job[job]["folder"] / "interpretations" / "test-final"
        assert (final / "index.html").is_file() and list(final.glob("*_interpretation.wav")), job
