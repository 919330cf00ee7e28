"""The configs in layers: each data set's data and each front-end written once, every recipe's data rate equal to
its front-end's, a mismatch refused when the config is read, and the readers that take a config as plain YAML
see the files a recipe names."""

from __future__ import annotations

import importlib
import inspect
import json
import re
from pathlib import Path

import pytest
import yaml

from experiments.cli import main, read_config

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"
#: recipes that still carry their own copies (layered with the others when they are next edited)
NOT_YET_LAYERED = ("demo",)


def _recipes():
    for path in sorted(EXP.rglob("*.yaml")):
        rel = str(path.relative_to(EXP))
        if not rel.startswith(NOT_YET_LAYERED):
            yield rel, path


def test_no_data_block_or_front_end_is_written_twice():
    seen: dict[str, str] = {}
    for rel, path in _recipes():
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            continue  # a list of callbacks
        blocks = []
        if isinstance(raw.get("data"), dict) and "class_path" in raw["data"]:
            blocks.append(("data", raw["data"]))
        if "class_path" in raw and rel.endswith("data.yaml"):
            blocks.append(("data", raw))
        for fe in (raw.get("frontend"), ((raw.get("model") or {}).get("init_args") or {}).get("frontend")):
            if isinstance(fe, dict):
                blocks.append(("frontend", fe))
        if rel.startswith("frontends/"):
            blocks.append(("frontend", raw))
        for kind, block in blocks:
            key = kind + json.dumps(block, sort_keys=True)
            assert key not in seen, f"{rel} repeats the {kind} block of {seen.get(key)}: name that file instead"
            seen[key] = rel
    assert sum(k.startswith("data") for k in seen) >= 8 and sum(k.startswith("frontend") for k in seen) == 4


@pytest.mark.parametrize("rel", [r for r, p in _recipes() if re.search(r"^\s*frontend:", p.read_text(), re.M)
                                 and re.search(r"^data:", p.read_text(), re.M)])
def test_every_recipe_decodes_at_its_front_end_rate(rel):
    config = read_config(EXP / rel)
    data = (config.get("data") or {}).get("init_args") or {}
    frontend = config.get("frontend") or ((config.get("model") or {}).get("init_args") or {}).get("frontend")
    rate = data.get("sample_rate")
    if rate is None:  # the data module's default rate
        module, name = config["data"]["class_path"].rsplit(".", 1)
        rate = inspect.signature(getattr(importlib.import_module(module), name)).parameters["sample_rate"].default
    assert isinstance(frontend, dict) and rate == frontend["sample_rate"], rel


def test_read_config_reads_the_files_a_recipe_names():
    config = read_config("experiments/esc50/posthoc.yaml")
    assert config["data"]["init_args"]["sample_rate"] == 32000
    assert config["data"]["init_args"]["loader"]["batch_size"] == 32
    assert [cb["class_path"].rsplit(".", 1)[1] for cb in config["trainer"]["callbacks"]] == [
        "RunCheckpoint", "ExactResume", "NaNGuard", "InterpretationLogger", "MetricsCallback"]


def test_a_copied_recipe_without_its_files_is_named(tmp_path):
    (tmp_path / "posthoc.yaml").write_text((EXP / "esc50/posthoc.yaml").read_text())
    with pytest.raises(FileNotFoundError, match=r"names callbacks: \.\./callbacks/posthoc\.yaml, which is not there"):
        read_config(tmp_path / "posthoc.yaml")


def test_a_data_rate_other_than_the_front_ends_is_refused_naming_both_keys(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["fit", "--config", str(EXP / "synthetic/classifier.yaml"), "--data.init_args.sample_rate", "8000"],
                friendly_errors=True)
    err = capsys.readouterr().err
    assert code == 2
    assert "data.init_args.sample_rate is 8000 but model.init_args.frontend.sample_rate is 16000" in err
    assert not any(tmp_path.iterdir())  # refused before anything was built or written


def test_nmf_reads_its_configs_as_every_verb_composed_in_order():
    """``l2i nmf`` reads each --config with the one file reader (the data and front-end files it names read in),
    composes them in order, then applies the options and dotted overrides."""
    from experiments.cli import read_config
    from experiments.nmf import read_nmf_config

    cfg, _ = read_nmf_config(["--config", "experiments/esc50/nmf.yaml", "--config", "experiments/esc50/nmf_blocks.yaml",
                              "--data.init_args.root", "/data/esc50", "--device=cpu", "--nmf.seed", "3"])
    data = read_config("experiments/esc50/data.yaml")
    assert cfg.data.class_path == data["class_path"] and cfg.data.init_args.sample_rate == data["init_args"]["sample_rate"]
    assert cfg.data.init_args.root == "/data/esc50" and cfg.device == "cpu"
    assert (cfg.nmf.n_components, cfg.nmf.per_class_components, cfg.nmf.seed) == (100, 2, 3)  # both files, then the override
    assert cfg.out == "runs/esc50/dictionary_blocks.pt" and cfg.frontend.sample_rate == 32000
    # an override is typed by the schema, as l2i fit types it (as YAML, "|" would be an empty block scalar)
    cfg, _ = read_nmf_config(["--config", "experiments/custom/nmf.yaml", "--data.init_args.label_separator", "|"])
    assert cfg.data.init_args.label_separator == "|"


def test_nmf_takes_the_front_end_of_the_classifier_config():
    from experiments.nmf import classifier_frontend, read_nmf_config

    cfg, _ = read_nmf_config(["--config", str(EXP / "synthetic/nmf.yaml"), "--frontend.n_mels", "32",
                              "--classifier", "experiments/synthetic/classifier.yaml"])
    assert cfg.frontend.n_mels == 32  # the command line's, until the classifier's replaces it
    assert classifier_frontend(cfg).frontend.n_mels == 64  # the classifier's, not the command line's
    cfg, _ = read_nmf_config(["--config", str(EXP / "synthetic/nmf.yaml"),
                              "--classifier", "experiments/esc50/classifier.yaml"])
    with pytest.raises(ValueError, match="data.init_args.sample_rate is 16000 but frontend.sample_rate is 32000"):
        classifier_frontend(cfg)


def test_the_benchmark_reads_the_data_sets_data_file_with_its_overrides(tmp_path):
    from experiments.stages.benchmark import _datamodule

    dm, info = _datamodule({"data_config": "experiments/esc50/data.yaml", "batch_size": 16,
                            "data": {"init_args": {"root": str(tmp_path)}}})
    assert (type(dm).__name__, dm.sample_rate, dm.batch_size, dm.root) == ("ESC50DataModule", 32000, 16, str(tmp_path))
    assert info["init_args"]["loader"]["cache_dir"] == "l2i-cache"
