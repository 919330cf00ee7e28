"""Lightning callbacks of the project (imported lazily, so ``import callbacks`` stays cheap):

* :class:`~callbacks.interpretation_logger.InterpretationLogger` — listenable interpretations of a fixed clip set
  to a W&B table and a static HTML gallery in the run folder;
* :class:`~callbacks.metrics.MetricsCallback` — fidelity / faithfulness summaries per epoch;
* :class:`~callbacks.safe_logging.SafeWandbLogger` — W&B logger whose failures never stop training (CSV mirror);
* :class:`~callbacks.checkpoint.RunCheckpoint` — best by metric + ``last.ckpt`` every N steps, in a fixed folder;
* :class:`~callbacks.resume.ExactResume` — RNG states and in-epoch position in checkpoints (exact resume);
* :class:`~callbacks.guards.NaNGuard` — a non-finite loss stops the run, naming stage and step, after saving.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "InterpretationLogger": "callbacks.interpretation_logger",
    "MetricsCallback": "callbacks.metrics",
    "SafeWandbLogger": "callbacks.safe_logging",
    "safe_loggers": "callbacks.safe_logging",
    "RunCheckpoint": "callbacks.checkpoint",
    "ExactResume": "callbacks.resume",
    "NaNGuard": "callbacks.guards",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'callbacks' has no attribute {name!r}")


__all__ = list(_LAZY)
