"""The static HTML galleries' page parts: cards that wrap to the window (no horizontal scrolling on a
1,280 px laptop screen), audio players that show their duration, and a record of load errors.

Used by :class:`~callbacks.interpretation_logger.InterpretationLogger` (one section per clip, one card per
column) and by the benchmark's listening table (:mod:`experiments.listening`: one section per clip, one card
per interpreter). Every card carries ``data-col="<column>"`` so a headless browser can check that each
column is on screen. Pages open from the file system, no server.
"""

from __future__ import annotations

import html

__all__ = ["STYLE", "PAGE_SCRIPT", "player", "image", "card", "page"]

#: records load errors, audio durations and where each column's card ends (``data-right``; the window's width
#: and the page's scroll width on ``#layout``) into the page, so a headless browser (tests) reads them with
#: --dump-dom
PAGE_SCRIPT = """
<script>
window.galleryErrors = [];
window.addEventListener('error', function (e) {
  var t = e.target || {};
  var what = (t.tagName ? t.tagName + ' ' + (t.currentSrc || t.src || '') : (e.message || 'error'));
  window.galleryErrors.push(what);
  var box = document.getElementById('errors');
  box.textContent = window.galleryErrors.join('\\n');
  box.setAttribute('data-count', String(window.galleryErrors.length));
}, true);
document.addEventListener('DOMContentLoaded', function () {
  document.querySelectorAll('audio').forEach(function (a) {
    function show() {
      if (!isFinite(a.duration)) return;
      a.setAttribute('data-duration', a.duration.toFixed(3));
      var label = document.getElementById(a.id + '-duration');
      if (label) label.textContent = a.duration.toFixed(2) + ' s';
    }
    a.addEventListener('loadedmetadata', show);
    if (a.readyState >= 1) show();
  });
});
window.addEventListener('load', function () {  // where every column's card ends, against the window's width
  var right = 0, n = 0;
  document.querySelectorAll('[data-col]').forEach(function (el) {
    var r = el.getBoundingClientRect();
    el.setAttribute('data-right', String(Math.ceil(r.right)));
    right = Math.max(right, r.right);
    n += 1;
  });
  var box = document.getElementById('layout');
  box.setAttribute('data-viewport', String(window.innerWidth));
  box.setAttribute('data-scroll-width', String(document.documentElement.scrollWidth));
  box.setAttribute('data-max-right', String(Math.ceil(right)));
  box.setAttribute('data-columns', String(n));
});
</script>
"""

STYLE = """
<style>
body { font-family: sans-serif; margin: 1em 1.5em; max-width: 100%; box-sizing: border-box; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin: 0.2em 0; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; font-size: 13px; }
.clip { border-top: 2px solid #999; margin: 1em 0; padding-top: 0.4em; }
.meta { font-size: 13px; color: #333; margin-bottom: 0.4em; overflow-wrap: anywhere; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 8px; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 6px; min-width: 0; background: #fafafa; }
@media (min-width: 700px) { .card.wide { grid-column: span 2; } }  /* wide images: two grid columns */
.card h3 { font-size: 13px; margin: 0 0 4px 0; overflow-wrap: anywhere; }
.card audio { width: 100%; height: 32px; }
.card img { display: block; max-width: 100%; height: auto; margin-top: 4px; }
.figs { font-size: 12px; color: #333; overflow-wrap: anywhere; }
.dur { color: #666; font-size: 11px; }
#errors, #layout { display: none; }
</style>
"""


def player(aid: str, src: str) -> str:
    """An audio player of ``src`` (relative path) with a duration label filled in by :data:`PAGE_SCRIPT`."""
    esc = html.escape
    return (f"<audio id='{esc(aid)}' controls preload='metadata' src='{esc(src)}'></audio>"
            f"<div class='dur' id='{esc(aid)}-duration'></div>")


def image(src: str, alt: str) -> str:
    return f"<img src='{html.escape(src)}' alt='{html.escape(alt)}'>"


def card(column: str, title: str, body: str, wide: bool = False) -> str:
    """One card: ``column`` names it for tests (``data-col``), ``title`` (escaped) heads it, ``body`` is HTML;
    ``wide`` cards take two grid columns where the window has room (a multi-panel image)."""
    cls = "card wide" if wide else "card"
    return f"<div class='{cls}' data-col='{html.escape(column)}'><h3>{html.escape(title)}</h3>{body}</div>"


def page(title: str, body: str) -> str:
    """A whole page: ``title`` (escaped), ``body`` (HTML), the style, the error box and the script."""
    return ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title>{STYLE}{PAGE_SCRIPT}</head><body>"
            f"<h1>{html.escape(title)}</h1><div id='errors' data-count='0'></div><div id='layout'></div>\n{body}\n"
            "</body></html>\n")
