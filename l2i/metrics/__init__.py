"""Evaluation metrics as ``torchmetrics.Metric`` subclasses (pure torch/numpy; no Lightning).

Import the submodules directly, e.g. ``from l2i.metrics.sonyc import SONYCUSTMetric``.
"""
