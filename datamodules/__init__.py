"""DataModules: one per data set, all yielding the same batch dictionary (see ``SyntheticDataModule``)."""

from datamodules.synthetic import SyntheticDataModule

__all__ = ["SyntheticDataModule"]
