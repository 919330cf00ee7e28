"""What ``pip install`` puts in a user's environment: the wheel holds only ``l2i`` and ``l2i_lab`` at the top
level (the glue folders ``experiments/``, ``datamodules/``, ``lightning_modules/`` and ``callbacks/`` install
under ``l2i_lab``), every module and run config of the checkout is in it, and the installed ``l2i`` command
finds its own glue even from a folder that holds a user's own ``experiments/`` and ``callbacks/`` packages,
whose scripts keep seeing their own."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GLUE = ("experiments", "datamodules", "lightning_modules", "callbacks")
BUILD_FILES = ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "LICENSE")


def _packaged_files(folder: str) -> set[str]:
    """The checkout's files that belong in the wheel from ``folder``: the ``.py`` files of its packages
    (folders with an ``__init__.py`` all the way down; ``experiments/benchmarks/`` holds scripts run from a
    checkout, not a package) and, for ``experiments``, every YAML run config."""
    out = set()
    for path in (ROOT / folder).rglob("*"):
        rel = path.relative_to(ROOT)
        if "__pycache__" in rel.parts or not path.is_file():
            continue
        chain = [ROOT.joinpath(*rel.parts[:i]) for i in range(1, len(rel.parts))]
        in_package = all((d / "__init__.py").is_file() for d in chain)
        if (path.suffix == ".py" and in_package) or (folder == "experiments" and path.suffix == ".yaml"):
            out.add(rel.as_posix())
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout (the build leaves nothing in the checkout)."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("l2i", "l2i_lab", *GLUE):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in BUILD_FILES:
        shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("*.whl")
    return whl


def test_the_wheel_claims_only_the_projects_own_top_level_names(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert top - dist_info == {"l2i", "l2i_lab"}, sorted(top)
    assert len(dist_info) == 1
    entry_points = configparser.ConfigParser()
    entry_points.read_string(zipfile.ZipFile(wheel).read(f"{dist_info.pop()}/entry_points.txt").decode())
    assert entry_points.get("console_scripts", "l2i").strip() == "l2i_lab:main"


def test_the_wheel_holds_every_module_and_run_config_of_the_checkout(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _packaged_files("l2i") | _packaged_files("l2i_lab")
    for folder in GLUE:
        expected |= {f"l2i_lab/{rel}" for rel in _packaged_files(folder)}
    assert "l2i_lab/experiments/demo.yaml" in expected and "l2i/nmf/streaming.py" in expected
    assert len(expected) > 100
    missing = sorted(expected - names)
    assert not missing, missing[:20]


def test_the_installed_command_finds_its_glue_next_to_a_users_own_packages(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # a pure-Python wheel, installed = unpacked
    user = tmp_path / "user"
    for name in ("experiments", "callbacks"):
        (user / name).mkdir(parents=True)
        (user / name / "__init__.py").write_text("WHO = 'user'\n")
    # the installed copy first; the checkout (and any editable install of it) must not be what is found
    env = {**os.environ, "PYTHONPATH": str(site), "WANDB_MODE": "offline"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=user, env=env, capture_output=True, text=True, timeout=120)

    # a user's script in that folder sees the user's packages: installing the project shadows nothing
    mine = run("-c", "import experiments, callbacks; print(experiments.WHO, callbacks.WHO)")
    assert mine.returncode == 0 and mine.stdout.split() == ["user", "user"], mine.stderr[-2000:]
    # the l2i command (python -m l2i_lab = the console script's l2i_lab:main) runs the installed glue there
    usage = run("-m", "l2i_lab", "--help")
    assert usage.returncode == 0 and usage.stdout.startswith("usage: l2i "), usage.stderr[-2000:]
    # the glue is the installed copy, each module loaded once, under its short name (the name configs and
    # checkpoints store), none again as l2i_lab.<name>
    probe = run("-c", "import l2i_lab, experiments.cli, callbacks, datamodules, lightning_modules, sys; "
                      "print('\\n'.join(sys.modules[n].__file__ for n in "
                      "('experiments.cli', 'callbacks', 'datamodules', 'lightning_modules'))); "
                      "print(sum(n.startswith('l2i_lab.') for n in sys.modules))")
    assert probe.returncode == 0, probe.stderr[-2000:]
    *files, twice = probe.stdout.split()
    assert [Path(f) for f in files] == [site / "l2i_lab" / "experiments" / "cli.py", *(
        site / "l2i_lab" / n / "__init__.py" for n in ("callbacks", "datamodules", "lightning_modules"))]
    assert twice == "0"
