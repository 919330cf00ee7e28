"""Two runs' ``report.json`` (``l2i demo`` / ``l2i benchmark``), figure by figure: the same values, timings aside.

    python -m experiments.benchmarks.compare_reports runs/demo-old/report.json runs/demo-new/report.json

A refactoring that keeps behaviour leaves every figure as it was. Timings (keys ending in ``seconds``, ``_s`` or
``ms_per_clip``) differ from run to run and are left out; paths are compared relative to each report's folder.
Prints the keys that differ (or are in one report only) and exits 1 when there is any, else 0.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

TIMING_SUFFIXES = ("seconds", "_s", "ms_per_clip")


def _comparable(value, folder: Path):
    """A figure as compared: a path inside the report's folder relative to it; numbers as they are."""
    if isinstance(value, str) and value.startswith(str(folder)):
        return value[len(str(folder)):].lstrip("/")
    return value


def differences(a: dict, b: dict, folder_a: Path, folder_b: Path, rel_tol: float = 0.0) -> list[str]:
    """One line per key whose value differs (beyond ``rel_tol`` for numbers) or that only one report has."""
    out = []
    for key in sorted(set(a) | set(b)):
        if key.rsplit(".", 1)[-1].endswith(TIMING_SUFFIXES):
            continue
        if key not in a or key not in b:
            out.append(f"{key}: only in {'the first' if key in a else 'the second'} report")
            continue
        va, vb = _comparable(a[key], folder_a), _comparable(b[key], folder_b)
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and not isinstance(va, bool):
            same = (math.isnan(va) and math.isnan(vb)) or math.isclose(va, vb, rel_tol=rel_tol, abs_tol=0.0)
        else:
            same = va == vb
        if not same:
            out.append(f"{key}: {va!r} vs {vb!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("first", type=Path)
    p.add_argument("second", type=Path)
    p.add_argument("--rel_tol", type=float, default=0.0, help="relative tolerance of numbers (default: exact)")
    args = p.parse_args(argv)
    a, b = (json.loads(path.read_text()) for path in (args.first, args.second))
    diff = differences(a, b, args.first.resolve().parent, args.second.resolve().parent, args.rel_tol)
    compared = sum(1 for k in set(a) & set(b) if not k.rsplit(".", 1)[-1].endswith(TIMING_SUFFIXES))
    print("\n".join(diff) if diff else f"the same: {compared} figures (timings aside)")
    return 1 if diff else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
