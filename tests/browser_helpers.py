"""Headless Chromium for the gallery tests: the page's DOM after load (the pages record load errors, audio
durations and where each column's card ends) and a screenshot, at a given window width."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def require_chromium() -> str:
    browser = chromium()
    if browser is None:
        if os.environ.get("CI"):  # .ci/run installs Debian's chromium: a missing browser there is a failure
            pytest.fail("CI: no Chromium/Chrome found although .ci/run installs it")
        pytest.skip("no Chromium/Chrome installed (Debian: apt-get install chromium; .ci/run installs it)")
    return browser


def _cmd(browser: str, profile: Path, width: int, height: int) -> list[str]:
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
            f"--user-data-dir={profile}", "--allow-file-access-from-files", "--autoplay-policy=no-user-gesture-required",
            "--hide-scrollbars", f"--window-size={width},{height}", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=8000"]


def dump_dom(page: Path, tmp: Path, width: int = 1280, height: int = 800) -> tuple[str, str]:
    """``(DOM after load, Chromium's stderr)`` of ``page`` in a ``width`` px window."""
    browser = require_chromium()
    proc = subprocess.run(_cmd(browser, tmp / "profile", width, height) + ["--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert "<body" in proc.stdout, f"Chromium produced no DOM (rc={proc.returncode}): {proc.stderr[-2000:]}"
    return proc.stdout, proc.stderr


def screenshot(page: Path, out: Path, tmp: Path, width: int = 1280, height: int = 800) -> Path:
    browser = require_chromium()
    proc = subprocess.run(_cmd(browser, tmp / "profile-shot", width, height) + [f"--screenshot={out}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert out.is_file(), f"no screenshot (rc={proc.returncode}): {proc.stderr[-2000:]}"
    return out


def layout(dom: str) -> dict:
    """The page's own layout record: ``viewport``, ``scroll_width``, ``max_right`` and ``columns`` ({column:
    [right edge of each of its cards, px]})."""
    box = re.search(r'<div id="layout"([^>]*)>', dom)
    assert box, "the page has no layout record (not a gallery page?)"
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', box.group(1)))
    assert "viewport" in attrs, f"the page's load handler did not run: {box.group(0)}"
    columns: dict[str, list[int]] = {}
    for col, right in re.findall(r'<div class="card(?: wide)?" data-col="([^"]+)" data-right="(\d+)"', dom):
        columns.setdefault(col, []).append(int(right))
    return {"viewport": int(attrs["viewport"]), "scroll_width": int(attrs["scroll-width"]),
            "max_right": int(attrs["max-right"]), "cards": int(attrs["columns"]), "columns": columns}
