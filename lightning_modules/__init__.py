"""Thin Lightning glue around the pure-torch core in :mod:`l2i`."""

from lightning_modules.bydesign import ByDesignModule
from lightning_modules.classifier import ClassifierModule
from lightning_modules.lmac import LMACModule
from lightning_modules.posthoc import PostHocInterpreterModule

__all__ = ["ClassifierModule", "PostHocInterpreterModule", "ByDesignModule", "LMACModule"]
