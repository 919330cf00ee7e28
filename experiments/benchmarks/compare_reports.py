"""Do two runs report the same figures? Compares two ``report.json`` files (``l2i demo``'s, or any JSON of
figures) key by key, timings and paths aside, and exits non-zero when a figure differs.

    python experiments/benchmarks/compare_reports.py runs/demo_old/report.json runs/demo_new/report.json
    python experiments/benchmarks/compare_reports.py old.json new.json --rtol 1e-3 --ignore 'benchmark.*'

What "the same" means:

* Nested objects and lists are flattened to dotted keys (``posthoc.fidelity``, ``rows[2].si_sdr``); a key
  present in one report only is a difference.
* Numbers are equal when ``|old - new| <= atol + rtol * |new|`` (defaults ``--rtol 1e-4 --atol 1e-6``; two
  NaNs are equal, a NaN and a number are not); booleans and other strings must match exactly, and a number
  never equals a string.
* Left aside: timings (a dotted part such as ``seconds``, ``train_seconds``, ``duration_s``, ``*_ms*``,
  ``*time*``, ``*per_s*``, ``*throughput*``, ``*speedup*``), paths and links (a string holding ``/`` or ``\\``,
  or a dotted part such as ``*path*``, ``*dir*``, ``*file*``, ``*url*``, ``*ckpt*``, ``*checkpoint*``,
  ``listening``, ``wandb*``) and the keys matched by ``--ignore`` (shell patterns, repeatable).

Prints one line per differing key (``key: old -> new``) and a summary line; exit status 0 when every compared
figure is equal, 1 when one differs, 2 when a file cannot be read as JSON.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

TIMING = re.compile(r"seconds|(^|_)s$|(^|_)ms(_|$)|time|per_s(ec)?(_|$)|per_second|throughput|speedup")
PATHLIKE = re.compile(r"path|dir|file|url|ckpt|checkpoint|^listening$|^wandb")
MISSING = object()


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": [1, 2]}}`` -> ``{"a.b[0]": 1, "a.b[1]": 2}``; leaves (numbers, strings, None) stay."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _parts(key: str) -> list[str]:
    return [p for p in re.split(r"[.\[\]]", key) if p and not p.isdigit()]


def aside(key: str, old: Any, new: Any, ignore: list[str]) -> str | None:
    """Why ``key`` is left out of the comparison (``"timing"``, ``"path"``, ``"ignored"``), or None."""
    if any(fnmatch.fnmatchcase(key, pattern) for pattern in ignore):
        return "ignored"
    parts = _parts(key)
    if any(TIMING.search(p) for p in parts):
        return "timing"
    if any(PATHLIKE.search(p) for p in parts) or any(
            isinstance(v, str) and ("/" in v or "\\" in v) for v in (old, new)):
        return "path"
    return None


def equal(old: Any, new: Any, rtol: float, atol: float) -> bool:
    """The rule of the module docstring for two leaves."""
    if isinstance(old, bool) or isinstance(new, bool):
        return type(old) is type(new) and old == new
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        if math.isnan(old) or math.isnan(new):
            return math.isnan(old) and math.isnan(new)
        if math.isinf(old) or math.isinf(new):
            return old == new
        return abs(old - new) <= atol + rtol * abs(new)
    return type(old) is type(new) and old == new


def compare(old: dict[str, Any], new: dict[str, Any], rtol: float = 1e-4, atol: float = 1e-6,
            ignore: list[str] | None = None) -> tuple[list[str], dict[str, int]]:
    """Compare two reports. Returns the lines of the differing keys (sorted by key) and the counts
    ``compared``, ``timing``, ``path``, ``ignored``, ``differ``."""
    flat_old, flat_new = flatten(old), flatten(new)
    counts = {"compared": 0, "timing": 0, "path": 0, "ignored": 0, "differ": 0}
    lines = []
    for key in sorted(set(flat_old) | set(flat_new)):
        a, b = flat_old.get(key, MISSING), flat_new.get(key, MISSING)
        why = aside(key, None if a is MISSING else a, None if b is MISSING else b, ignore or [])
        if why:
            counts[why] += 1
            continue
        counts["compared"] += 1
        if a is MISSING or b is MISSING:
            lines.append(f"{key}: {'(absent)' if a is MISSING else json.dumps(a)} -> "
                         f"{'(absent)' if b is MISSING else json.dumps(b)}")
        elif not equal(a, b, rtol, atol):
            lines.append(f"{key}: {json.dumps(a)} -> {json.dumps(b)}")
    counts["differ"] = len(lines)
    return lines, counts


def _read(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"compare_reports: error: {path}: cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SystemExit(f"compare_reports: error: {path}: holds a JSON {type(data).__name__}, not an object of figures")
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old", help="the reference report.json")
    p.add_argument("new", help="the report.json to check against it")
    p.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance on numbers (default 1e-4)")
    p.add_argument("--atol", type=float, default=1e-6, help="absolute tolerance on numbers (default 1e-6)")
    p.add_argument("--ignore", action="append", default=[], metavar="PATTERN",
                   help="leave out the keys matching this shell pattern (repeatable), e.g. 'benchmark.*'")
    args = p.parse_args(argv)
    try:
        old, new = _read(args.old), _read(args.new)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    lines, counts = compare(old, new, args.rtol, args.atol, args.ignore)
    for line in lines:
        print(line)
    verdict = "differ" if lines else "same figures"
    print(f"{verdict}: {counts['compared']} figures compared, {counts['differ']} differ "
          f"(left aside: {counts['timing']} timings, {counts['path']} paths, {counts['ignored']} ignored; "
          f"rtol {args.rtol:g}, atol {args.atol:g})")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
