"""The data sets' official classification metrics as ``torchmetrics.Metric`` subclasses (pure torch/numpy; no
Lightning): what the classifiers are scored with. Everything that scores an *interpreter* (fidelity,
faithfulness, mask metrics, the ground-truth report) is in :mod:`l2i.evaluation`.

Import the submodules directly, e.g. ``from l2i.metrics.sonyc import SONYCUSTMetric``.
"""
