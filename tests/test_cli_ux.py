"""The ``l2i`` command as a user meets it: fast help, a version, one line per mistake, no repeated framework
noise, and a package whose every import is an install requirement."""

from __future__ import annotations

import ast
import logging
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from experiments.cli import COMMANDS, LIGHTNING_VERBS, main, one_line, quiet_frameworks, version

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "experiments.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60)


def test_help_answers_in_under_two_seconds_without_importing_lightning():
    start = time.perf_counter()
    proc = _run(["--help"])
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert seconds < 2.0, f"l2i --help took {seconds:.2f} s"
    for verb in (*LIGHTNING_VERBS, *COMMANDS):
        assert verb in proc.stdout
    probe = subprocess.run([sys.executable, "-c", "import sys, experiments.cli; "
                            "print(sorted(m for m in ('lightning', 'torch') if m in sys.modules))"],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert probe.stdout.strip() == "[]", probe.stdout


def test_version_is_the_package_version():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    proc = _run(["--version"])
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"l2i (listen-to-interpret) {cfg.get('metadata', 'version')}" == \
        f"l2i (listen-to-interpret) {version()}"


def _one_error_line(capsys, argv: list[str]) -> str:
    rc = main(argv, friendly_errors=True)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    errors = [i for i, line in enumerate(lines) if re.match(r"l2i \w+: error: ", line)]
    # the message, then how to see the traceback: nothing after (progress and log lines before it are the run's)
    assert len(errors) == 1 and lines[errors[0] + 1:] == ["  (L2I_TRACEBACK=1 l2i … shows the traceback)"], err
    return lines[errors[0]]


def test_unknown_backbone_is_one_line(capsys, tmp_path):
    line = _one_error_line(capsys, ["fit", "--config", "experiments/synthetic/classifier.yaml", "--model.init_args.backbone",
                                    "smallcnn", "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)])
    assert line == "l2i fit: error: unknown backbone 'smallcnn'; known backbones: ['cnn14', 'sbcnn', 'small_cnn']"


def test_refused_option_and_unknown_verb_are_one_line(capsys):
    line = _one_error_line(capsys, ["fit", "--config", "experiments/synthetic/classifier.yaml", "--trainer.max_epochz", "1"])
    assert line.startswith("l2i fit: error:") and "--trainer.max_epochz" in line
    assert main(["fiit"]) == 2
    assert capsys.readouterr().err.strip().startswith("l2i: error: unknown command 'fiit'; commands: fit,")


def test_path_typos_are_one_line(capsys, tmp_path):
    line = _one_error_line(capsys, ["demo", "--config", "experiments/dmo.yaml"])
    assert line.startswith("l2i demo: error: config file not found: experiments/dmo.yaml")
    line = _one_error_line(capsys, ["benchmark", "--interpreter", str(tmp_path / "interpeter.ckpt"),
                                    "--out_dir", str(tmp_path / "b")])
    assert line == f"l2i benchmark: error: benchmark config: artifacts.interpreter = {tmp_path / 'interpeter.ckpt'} does not exist"


def test_crossval_without_folds_is_one_line(capsys, tmp_path):
    line = _one_error_line(capsys, ["crossval", "--config", "experiments/synthetic/classifier.yaml", "--folds", "1",
                                    "--out_dir", str(tmp_path)])
    assert line == ("l2i crossval: error: crossval needs a data module with folds (test_fold / val_fold, e.g. "
                    "datamodules.ESC50DataModule); experiments/synthetic/classifier.yaml uses "
                    "SyntheticDataModule, which has none")
    assert not list(tmp_path.iterdir())  # refused before anything was built


def test_a_bug_still_shows_its_traceback(monkeypatch):
    import experiments.pipeline

    def broken(argv):
        raise ZeroDivisionError("a bug, not a user's mistake")

    monkeypatch.setattr(experiments.pipeline, "demo_main", broken)
    with pytest.raises(ZeroDivisionError):
        main(["demo"], friendly_errors=True)


def test_one_line_keeps_the_constructor_message_of_a_jsonargparse_listing():
    err = ValueError("Does not validate against any of the Union subtypes\nSubtypes: [A, None]\nErrors:\n"
                     "  - unknown backbone 'x'; known backbones: ['a']\n  - Expected a <class 'NoneType'>\n"
                     "Given value type: <class 'Namespace'>\nGiven value: Namespace(a=1)")
    assert one_line(err) == "unknown backbone 'x'; known backbones: ['a']"
    assert one_line(FileNotFoundError("config file not found: x.yaml")) == "config file not found: x.yaml"


def test_framework_noise_is_silenced_and_other_warnings_are_not(caplog):
    quiet_frameworks()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_frameworks()  # the filters survive a reset of the warning filters by a later call
        warnings.warn("'pin_memory' argument is set as true but no accelerator is found, then device pinned memory "
                      "won't be used.", UserWarning)
        warnings.warn("LightningCLI's args parameter is intended to run from within Python like if it were from the "
                      "command line.", UserWarning)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and "
                      "treespec.is_leaf()` instead.", FutureWarning)
        warnings.warn("something a user should read", UserWarning)
    assert [str(w.message) for w in caught] == ["something a user should read"]
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    with caplog.at_level(logging.INFO):
        rank_zero_info("💡 Tip: For seamless cloud logging, try installing [litlogger]")
        rank_zero_info("GPU available: False")
    messages = [r.getMessage() for r in caplog.records]
    assert "GPU available: False" in messages and not any("Tip" in m for m in messages)


def test_default_logger_does_not_ask_wandb_for_the_deprecated_anonymous_setting(tmp_path):
    from callbacks.safe_logging import SafeWandbLogger

    logger = SafeWandbLogger(project="p", save_dir=str(tmp_path), offline=True)
    assert "anonymous" not in logger._wandb_init and logger._wandb_init["dir"] == str(tmp_path)
    # a relative folder is made absolute: W&B's service process resolves paths against its own working folder
    relative = SafeWandbLogger(project="p", save_dir="runs/x", offline=True)
    assert relative._wandb_init["dir"] == os.path.abspath("runs/x") and relative.save_dir == os.path.abspath("runs/x")


def _requirements() -> set[str]:
    from setuptools.config.setupcfg import read_configuration

    reqs = read_configuration(str(ROOT / "setup.cfg"))["options"]["install_requires"]
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def test_every_import_of_the_package_is_an_install_requirement():
    """``pip install listen-to-interpret`` then any verb (the demo included, whose benchmark runs Captum) finds
    every module it imports: each third-party import of the installed packages is in install_requires (the speed
    scripts of experiments/benchmarks, run by hand with the ``bench`` extra, are not installed verbs)."""
    from importlib.metadata import packages_distributions

    ours = {"l2i", "datamodules", "lightning_modules", "callbacks", "experiments"}
    dists = packages_distributions()
    needed: dict[str, set[str]] = {}
    for package in ours:
        for path in (ROOT / package).rglob("*.py"):
            if "benchmarks" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
                for name in names:
                    top = name.split(".")[0]
                    if top in ours or top in sys.stdlib_module_names:
                        continue
                    needed.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    requirements = _requirements()
    missing = {}
    for top, files in needed.items():
        candidates = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
        if not candidates & requirements:
            missing[top] = sorted(files)[:3]
    assert "captum" in needed and "captum" in requirements
    assert not missing, f"imported but not in install_requires: {missing}"


@pytest.mark.parametrize("verb", ["demo", "benchmark", "crossval", "nmf"])
def test_every_option_has_help_text(verb, capsys):
    """``l2i <verb> --help``: every top-level option says what it does (beyond its type and default)."""
    with pytest.raises(SystemExit) as info:
        main([verb, "--help"])
    assert info.value.code in (0, None)
    text = capsys.readouterr().out
    blocks = re.split(r"\n(?=\s{2}(?:-\w, )?--)", text)
    missing = []
    for block in blocks[1:]:
        m = re.match(r"\s+(?:-\w, )?(--[\w.]+)", block)
        if not m or "." in m.group(1) or m.group(1) in ("--help", "--print_config"):
            continue
        rest = block[m.end():]
        rest = re.sub(r"^\s*(\S+)?", "", rest, count=1) if not rest.startswith("\n") else rest  # the metavar
        rest = re.sub(r"\((?:required, )?type: [^)]*\)|\(default: [^)]*\)", "", rest)
        if not rest.strip():
            missing.append(m.group(1))
    assert not missing, f"l2i {verb}: options without help: {missing}"
    if verb == "demo":
        assert "classifier, dictionary, posthoc, evaluation, bydesign, lmac, benchmark" in " ".join(text.split())
    if verb == "benchmark":
        assert "classifier, dictionary, posthoc, bydesign, lmac" in " ".join(text.split())


def test_progress_bars_only_on_a_terminal(tmp_path):
    from experiments.cli import lightning_cli

    assert not sys.stderr.isatty()  # pytest captures it, as a log file would
    cli = lightning_cli(["--config", "experiments/synthetic/classifier.yaml", "--trainer.logger", "false",
                         "--trainer.default_root_dir", str(tmp_path)], run=False)
    assert cli.trainer.progress_bar_callback is None
    cli = lightning_cli(["--config", "experiments/synthetic/classifier.yaml", "--trainer.logger", "false",
                         "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "true"], run=False)
    assert cli.trainer.progress_bar_callback is not None
