"""The README as a newcomer uses it: its manual chain runs as printed (made tiny by appended options), its
links and the documents the code cites exist, the license and citation files match the package."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from experiments.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

TINY_DATA = ["--data.init_args.num_train", "16", "--data.init_args.num_val", "8", "--data.init_args.num_test", "8",
             "--data.init_args.duration_s", "1.0", "--data.init_args.batch_size", "8"]
TINY_FIT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", *TINY_DATA]
#: what makes each verb of the chain tiny (appended to the README's command, which is otherwise run as printed)
TINY = {
    "fit": TINY_FIT,
    "nmf": ["--num_clips", "8", "--eval_clips", "8", "--nmf.epochs", "1", "--nmf.n_components", "16",
            "--images", "false", "--wandb", "false", "--progress", "false", "--data.init_args.duration_s", "1.0"],
    "evaluate": ["--max_batches", "1", "--batch_size", "4", "--noise_snr_db", ""],
}


def readme_block(marker: str) -> list[list[str]]:
    """The ``l2i`` commands of the code block between ``<!-- marker -->`` and ``<!-- /marker -->``, as argv lists
    (continuation lines joined, comments dropped)."""
    m = re.search(rf"<!-- {marker} -->\s*```bash\n(.*?)```\s*<!-- /{marker} -->", README, re.S)
    assert m, f"README has no <!-- {marker} --> block"
    text = m.group(1).replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            argv = shlex.split(line)
            assert argv[0] == "l2i", line
            commands.append(argv[1:])
    return commands


@pytest.mark.slow
def test_the_manual_chain_runs_as_printed(tmp_path):
    """fit classifier -> nmf -> fit post-hoc -> evaluate, each line of the README run as printed from a fresh folder
    (plus options that make it tiny), each leaving the file the next line reads at the path the README names.
    One separate Python process runs the four commands, as a user's shell would (its own working folder and W&B
    state)."""
    import sys

    (tmp_path / "experiments").symlink_to(ROOT / "experiments")  # "run from the repository"
    commands = readme_block("manual-chain")
    assert [c[0] for c in commands] == ["fit", "nmf", "fit", "evaluate"]
    script = "import sys\nfrom experiments.cli import main\n" + "".join(
        f"rc = main({argv + TINY[argv[0]]!r})\nif rc not in (0, None):\n    sys.exit(f'{argv[0]} failed: {{rc}}')\n"
        for argv in commands)
    # a fresh user's environment: not this test process's W&B service
    env = {k: v for k, v in os.environ.items() if "WANDB" not in k} | {"PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    for key in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        env[key] = str(tmp_path / "wandb-home")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for path in ("runs/synthetic_classifier/checkpoints/best.ckpt", "runs/synthetic_classifier/checkpoints/last.ckpt",
                 "runs/synthetic_classifier/config.yaml", "runs/synthetic_dictionary/dictionary.pt",
                 "runs/synthetic_posthoc/checkpoints/best.ckpt", "runs/synthetic_posthoc/checkpoints/last.ckpt",
                 "runs/synthetic_evaluation/evaluation.json"):
        assert (tmp_path / path).is_file(), path
    results = json.loads((tmp_path / "runs/synthetic_evaluation/evaluation.json").read_text())
    assert 0.0 <= float(results.get("fidelity.top1", results.get("results", {}).get("fidelity.top1", -1))) <= 1.0
    # each run's W&B files are in its own folder, nothing in a shared runs/wandb
    for run in ("synthetic_classifier", "synthetic_posthoc"):
        assert len(list((tmp_path / "runs" / run / "wandb").glob("offline-run-*"))) == 1, run
    assert not (tmp_path / "runs" / "wandb").exists() and not (tmp_path / "runs" / "config.yaml").exists()
    assert "Traceback" not in proc.stderr and "💡" not in proc.stdout + proc.stderr


def test_readme_links_and_cited_documents_exist():
    for target in re.findall(r"\]\(([^)#:]+)\)", README):
        assert (ROOT / target).exists(), f"README links to {target}, which is not in the repository"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    texts = [p for p in tracked if p.endswith((".py", ".yaml", ".md", ".cfg", ".toml", ".cff")) or p == "Makefile"]
    offenders = []
    for rel in texts:
        if rel == "tests/test_readme.py":  # this test names the patterns it looks for
            continue
        text = (ROOT / rel).read_text()
        for pattern in (r"(?<!docs/)\bmethod\.md", r"\b[Ii]ssue #?\d+", r"\.\./shared", r"first-contact-findings",
                        r"reliability-findings", r"architecture-review"):
            if re.search(pattern, text):
                offenders.append(f"{rel}: {pattern}")
    assert not offenders, offenders
    assert (ROOT / "docs" / "method.md").is_file()


def test_license_and_citation_match_the_package():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg.get("metadata", "license") == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    assert cff["version"] == cfg.get("metadata", "version")
    for key in ("message", "title", "authors"):
        assert cff[key]
    paper = cff["preferred-citation"]
    assert paper["title"].startswith("Tackling Interpretability in Audio Classification Networks")
    assert paper["year"] == 2024 and paper["authors"][0] == {"family-names": "Parekh", "given-names": "Jayneel"}
    assert cff["references"][0]["title"].startswith("Listen to Interpret")
