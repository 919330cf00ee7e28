"""Which folders become which installed packages (the rest of the metadata is in setup.cfg).

``l2i/`` installs as ``l2i``; the glue folders ``experiments/``, ``datamodules/``, ``lightning_modules/`` and
``callbacks/`` stay at the repository's top level but install under ``l2i_lab`` (``l2i_lab.experiments`` …),
so ``pip install`` adds no generic top-level name to a user's environment (see ``l2i_lab/__init__.py``).
The package lists are computed, so a new subpackage is installed without editing this file.
"""

from setuptools import find_packages, setup

GLUE = ("experiments", "datamodules", "lightning_modules", "callbacks")

packages = find_packages(include=["l2i", "l2i.*", "l2i_lab"])
package_dir = {}
for name in GLUE:
    packages += [f"l2i_lab.{pkg}" for pkg in find_packages(include=[name, f"{name}.*"])]
    package_dir[f"l2i_lab.{name}"] = name

setup(
    packages=packages,
    package_dir=package_dir,
    # the run configs ship with the code: `l2i demo` and `--config experiments/…` read them from the install
    package_data={"l2i_lab.experiments": ["**/*.yaml"]},
)
