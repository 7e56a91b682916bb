"""Package discovery that follows the folders; everything else is in pyproject.toml.

segedge's import packages live in three top folders mapped onto one namespace
(`segedge.export` = export/, `segedge.runtime` = runtime/, `segedge.benchmarks` = benchmarks/).
pyproject.toml's `[tool.setuptools.packages.find]` cannot express that: it names a package after
its folder (`export.deploy`, not `segedge.export.deploy`). So the list is found here, from the
folders, on every build: a new sub-package (any folder with an `__init__.py`) is installed
without anyone editing a list, and tests/ and tools/ are never installed.
tests/packaging/ checks the result, in the checkout and in an installed wheel.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
TOP_FOLDERS = {"segedge.export": "export", "segedge.runtime": "runtime",
               "segedge.benchmarks": "benchmarks"}


def segedge_packages(root: Path = ROOT) -> list[str]:
    """Every segedge import package: the three top folders and each package folder below them."""
    names = []
    for name, folder in TOP_FOLDERS.items():
        names.append(name)
        names += [f"{name}.{sub}" for sub in find_packages(str(root / folder))]
    return sorted(names)


if __name__ == "__main__":  # the build backend runs this file as __main__; tests import it
    setup(package_dir=TOP_FOLDERS, packages=segedge_packages())
