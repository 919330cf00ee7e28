"""Thin Lightning glue around the pure-torch core in :mod:`l2i`."""

from lightning_modules.classifier import ClassifierModule

__all__ = ["ClassifierModule"]
