"""Every recipe's resolved settings, to check that reorganising the config files changes none of them.

    python -m experiments.benchmarks.resolved_configs --out new.json              # this checkout
    python -m experiments.benchmarks.resolved_configs --before HEAD~3             # compare with a revision

A recipe is resolved the way its verb resolves it: ``l2i fit --print_config`` for the LightningCLI recipes
(classifier, post-hoc, by-design, L-MAC, with their ``*_blocks.yaml`` overlays), the ``l2i nmf`` parser for the
dictionary recipes, and the benchmark configs' stages as the benchmark reads them. The settings are flattened
to ``key.path = value`` leaves; the ``data`` group's ``loader`` sub-group is flattened into ``data.init_args``
(the keys it groups sat there before), so two checkouts on either side of that change compare equal when the
values are; an option that is new and left at None sets nothing and is not listed. ``--before REV`` runs the same resolution in a copy of ``REV`` (``git archive``) and prints every
leaf that differs, per recipe; exit status 1 when something differs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: overlays and the files they are composed on, in order (an overlay is resolved on top of them)
NMF_OVERLAYS = {"nmf_blocks.yaml": ["nmf.yaml"]}
FIT_OVERLAYS = {"posthoc_blocks.yaml": ["posthoc.yaml"], "bydesign_blocks.yaml": ["bydesign.yaml"],
                "bydesign_distilled.yaml": ["bydesign.yaml", "bydesign_blocks.yaml"]}
SKIP_FOLDERS = ("benchmark",)
SKIP_FILES = ("demo.yaml", "demo_instruments.yaml")


def recipes(root: Path) -> dict[str, list[str]]:
    """``{name: [config files in order]}`` of every fit / nmf recipe under ``root/experiments``."""
    out: dict[str, list[str]] = {}
    exp = root / "experiments"
    for path in sorted(exp.rglob("*.yaml")):
        rel = path.relative_to(exp)
        if rel.parts[0] in SKIP_FOLDERS or rel.name in SKIP_FILES or len(rel.parts) != 2:
            continue
        text = path.read_text()
        is_nmf = rel.name.startswith("nmf") or rel.name.endswith("_nmf.yaml")
        is_run = is_nmf or "\nmodel:" in f"\n{text}" or rel.name in FIT_OVERLAYS
        if not is_run:
            continue  # a shared part (data.yaml, a front-end, callbacks): not a recipe by itself
        bases = (NMF_OVERLAYS if is_nmf else FIT_OVERLAYS).get(rel.name, [])
        files = [str(path.with_name(base)) for base in bases] + [str(path)]
        out[str(rel)] = files
    return out


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: value}


def _normalise(config: dict) -> dict:
    """The loader group's keys back in ``data.init_args`` (where they were before it existed)."""
    data = config.get("data")
    if isinstance(data, dict) and isinstance(data.get("init_args"), dict):
        init = dict(data["init_args"])
        loader = init.pop("loader", None)
        if isinstance(loader, dict):
            init.update(loader)
        config = {**config, "data": {**data, "init_args": init}}
    return config


def resolve_fit(files: list[str]) -> dict:
    import yaml

    from experiments.cli import lightning_cli

    args = ["fit"] + [a for f in files for a in ("--config", f)] + ["--print_config"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            lightning_cli(args)
        except SystemExit:
            pass
    return yaml.safe_load(buf.getvalue()) or {}


def resolve_nmf(files: list[str]) -> dict:
    import yaml

    from experiments.nmf import build_parser

    parser = build_parser()
    cfg = parser.parse_args([a for f in files for a in ("--config", f)])
    return yaml.safe_load(parser.dump(cfg))


def resolve_all(root: Path) -> dict[str, dict]:
    os.chdir(root)
    out = {}
    for name, files in recipes(root).items():
        is_nmf = Path(files[-1]).name.startswith("nmf") or files[-1].endswith("_nmf.yaml")
        try:
            config = resolve_nmf(files) if is_nmf else resolve_fit(files)
        except Exception as exc:  # noqa: BLE001 - reported per recipe
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        out[name] = _flatten(_normalise(config))
    return out


def _compare(before: dict, after: dict) -> list[str]:
    lines = []
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        if a is None or b is None:
            lines.append(f"{name}: only {'after' if a is None else 'before'}")
            continue
        for key in sorted(set(a) | set(b)):
            if key not in a and b[key] is None:
                continue  # an option added since, left at its default (None): nothing set
            if a.get(key, "<absent>") != b.get(key, "<absent>"):
                lines.append(f"{name}: {key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(REPO), help="the checkout whose recipes are resolved (default: this one)")
    p.add_argument("--out", default=None, help="write the resolved settings here (JSON)")
    p.add_argument("--before", default=None, help="a git revision to compare with (resolved in a copy of it)")
    args = p.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    if args.before:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(f"git -C {REPO} archive {args.before} | tar -x -C {tmp}", shell=True, check=True)
            old_json = Path(tmp) / "resolved.json"
            env = {**os.environ, "PYTHONPATH": tmp}
            # this file, run on the old checkout's code (which may not have it)
            subprocess.run([sys.executable, __file__, "--root", tmp, "--out", str(old_json)], cwd=tmp, env=env,
                           check=True)
            before = json.loads(old_json.read_text())
        after = resolve_all(Path(args.root))
        diff = _compare(before, after)
        print(f"{len(after)} recipes resolved; {len(diff)} differing settings")
        for line in diff:
            print("  " + line)
        return 1 if diff else 0
    resolved = resolve_all(Path(args.root))
    if args.out:
        Path(args.out).write_text(json.dumps(resolved, indent=1, sort_keys=True, default=str))
    print(f"{len(resolved)} recipes resolved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
