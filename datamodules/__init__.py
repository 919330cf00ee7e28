"""DataModules: one per data set, all yielding the same batch dictionary (see ``SyntheticDataModule`` and
:mod:`datamodules.files` for the contract)."""

from datamodules.esc50 import ESC50DataModule
from datamodules.folder import AudioFolderDataModule
from datamodules.instruments import InstrumentDataModule
from datamodules.magnatagatune import MagnaTagATuneDataModule, MTGJamendoDataModule
from datamodules.sonyc_ust import SONYCUSTDataModule
from datamodules.synthetic import SyntheticDataModule

__all__ = [
    "SyntheticDataModule",
    "ESC50DataModule",
    "InstrumentDataModule",
    "SONYCUSTDataModule",
    "MagnaTagATuneDataModule",
    "MTGJamendoDataModule",
    "AudioFolderDataModule",
]
