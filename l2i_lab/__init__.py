"""Where ``pip install`` puts the project's glue, so that it claims no generic top-level name.

In the repository the glue lives in four top-level folders: ``experiments/``, ``datamodules/``,
``lightning_modules/`` and ``callbacks/``. An installed copy (wheel or ``pip install -e``) puts them under
this package instead (``site-packages/l2i_lab/experiments/`` …), so site-packages holds only ``l2i`` and
``l2i_lab``: another distribution that ships an ``experiments`` or ``callbacks`` package cannot overwrite
ours (nor we theirs), and a user's own ``experiments/`` folder is never shadowed by ours.

The code, the YAML configs (``class_path: datamodules.ESC50DataModule``) and every checkpoint saved so far
(``hyper_parameters._class_path``) name the glue by its short names. :func:`use_short_names` makes those
names importable, loaded from this package's folders, in a process that runs the glue: the ``l2i`` command
calls it first (``python -m l2i_lab`` too), and so does importing this package. A process that never imports
``l2i_lab`` (a user's own script) sees no ``experiments`` of ours at all.

In Python, import the glue by its short names after ``import l2i_lab``::

    import l2i_lab  # noqa: F401  (the short names now resolve to the installed glue)
    from lightning_modules import PostHocInterpreterModule

From a checkout (``python -m experiments.cli`` at the repository's root, the tests) the folders are found
on ``sys.path`` directly and nothing here is needed.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys

#: the glue packages, importable by these names in a process that runs the glue
SHORT_NAMES = ("experiments", "datamodules", "lightning_modules", "callbacks")


class _ShortNameFinder(importlib.abc.MetaPathFinder):
    """Finds ``experiments`` (and the other :data:`SHORT_NAMES`) in ``l2i_lab``'s installed folders and loads
    it under the short name; submodules (``experiments.cli``) then follow the package's ``__path__`` as usual,
    so each module exists once, under its short name."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102 - the MetaPathFinder protocol
        if fullname not in SHORT_NAMES:
            return None
        installed = importlib.util.find_spec(f"{__name__}.{fullname}")
        if installed is None or not installed.submodule_search_locations or not installed.origin:
            return None  # a checkout without an install: the folder is found on sys.path as usual
        return importlib.util.spec_from_file_location(
            fullname, installed.origin, submodule_search_locations=list(installed.submodule_search_locations))

    def __eq__(self, other):  # one finder per process, even if this module is reloaded
        return type(other).__name__ == type(self).__name__

    __hash__ = object.__hash__


def use_short_names() -> None:
    """Let ``import experiments`` (and the other :data:`SHORT_NAMES`) load the glue installed here, ahead of
    any other package of that name on ``sys.path``. Idempotent."""
    finder = _ShortNameFinder()
    if finder not in sys.meta_path:
        sys.meta_path.insert(0, finder)


def main() -> int | None:
    """The ``l2i`` command: the short names, then :func:`experiments.cli.main` (its exit status)."""
    use_short_names()
    from experiments.cli import main as cli_main

    return cli_main()


use_short_names()
