"""The installed segedge is the whole segedge: every module, every asset, every command.

One module, two places it runs:
- in the checkout (the normal suite): setup.py's discovery finds every package folder, and each
  non-Python file in a package folder is shipped by a package-data rule or listed in NOT_SHIPPED.
  No build, milliseconds.
- against an installed wheel: tools/check_wheel.sh copies this file outside the checkout and runs
  it with the venv's Python, SEGEDGE_WHEEL_SOURCE naming the clean source copy the wheel was built
  from and SEGEDGE_WHEEL_VENV the fresh virtual environment it was installed into (non-editable).
  Then every module of the installed package must exist, import from the venv and match the
  source's .py files one to one, and every asset must be there byte for byte. Elsewhere these
  tests skip with that reason: an editable install would pass them without proving anything.
"""

from __future__ import annotations

import filecmp
import importlib
import json
import os
import pkgutil
import runpy
import subprocess
import sys
from fnmatch import fnmatch
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

SOURCE = Path(os.environ.get("SEGEDGE_WHEEL_SOURCE") or Path(__file__).resolve().parents[2])
VENV = os.environ.get("SEGEDGE_WHEEL_VENV", "")
# Non-Python files in package folders that the installed package never reads (relative to the
# source root, fnmatch patterns). Anything else must be shipped by a package-data rule.
NOT_SHIPPED = ("benchmarks/RESULTS.md", "benchmarks/STREAMS.json", "benchmarks/STREAMS.md",
               "benchmarks/INT8_BUDGET*.md", "benchmarks/INT8_BUDGET*.json",
               "benchmarks/plots/*")

wheel_only = pytest.mark.skipif(
    not VENV, reason="checks an installed wheel: run by tools/check_wheel.sh (SEGEDGE_WHEEL_VENV "
                     "unset, so this is the checkout or an editable install)")


def top_folders() -> dict[str, str]:
    """setup.py's mapping, import name -> folder (read, not copied, so the two cannot drift)."""
    return dict(runpy.run_path(str(SOURCE / "setup.py"))["TOP_FOLDERS"])


def source_files() -> list[Path]:
    """Files of the package folders as a fresh clone has them (git's view where there is one)."""
    folders = list(top_folders().values())
    if (SOURCE / ".git").exists():
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z", "--", *folders],
                             cwd=SOURCE, capture_output=True, text=True, check=True).stdout
        files = [SOURCE / p for p in out.split("\0") if p]
    else:
        files = [p for folder in folders for p in (SOURCE / folder).rglob("*") if p.is_file()]
    return sorted(p for p in files if p.is_file() and "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    """export/precision/modes/int8.py -> segedge.export.precision.modes.int8."""
    names = {folder: name for name, folder in top_folders().items()}
    parts = path.relative_to(SOURCE).with_suffix("").parts
    dotted = [names[parts[0]], *parts[1:]]
    return ".".join(dotted[:-1] if dotted[-1] == "__init__" else dotted)


def source_modules() -> set[str]:
    return {module_name(p) for p in source_files() if p.suffix == ".py"}


def package_folder(package: str) -> Path:
    """segedge.export.tensorrt -> SOURCE/export/tensorrt."""
    for name, folder in top_folders().items():
        if package == name or package.startswith(name + "."):
            return SOURCE / folder / Path(*package[len(name):].split(".")[1:])
    raise AssertionError(f"{package} is not under {sorted(top_folders())}")


def package_data() -> dict[str, list[str]]:
    project = tomllib.loads((SOURCE / "pyproject.toml").read_text())
    return project["tool"]["setuptools"].get("package-data", {})


def shipped_data() -> dict[Path, Path]:
    """Source file -> its path relative to site-packages, for every file a package-data rule
    ships; raises on a non-Python file that no rule ships and NOT_SHIPPED does not list."""
    shipped: dict[Path, Path] = {}
    for package, patterns in package_data().items():
        folder = package_folder(package)
        for pattern in patterns:
            for path in folder.glob(pattern):
                if path.is_file():
                    shipped[path] = Path(*package.split(".")) / path.relative_to(folder)
    orphans = [str(p.relative_to(SOURCE)) for p in source_files()
               if p.suffix != ".py" and p not in shipped
               and not any(fnmatch(str(p.relative_to(SOURCE)), pat) for pat in NOT_SHIPPED)]
    assert not orphans, (f"non-Python files in package folders that no [tool.setuptools."
                         f"package-data] rule ships (add a rule, or NOT_SHIPPED here): {orphans}")
    return shipped


# -- the checkout: discovery and package-data rules ---------------------------------------------

def test_discovery_finds_every_package_folder() -> None:
    folders_with_code = {module_name(p.parent / "__init__.py") for p in source_files()
                         if p.suffix == ".py"}
    found = set(runpy.run_path(str(SOURCE / "setup.py"))["segedge_packages"](SOURCE))
    assert found == folders_with_code, (
        "setup.py's discovery missed (each package folder needs an __init__.py): "
        f"{sorted(folders_with_code - found)}; extra: {sorted(found - folders_with_code)}")
    assert all(name.split(".")[:2] in (["segedge", "export"], ["segedge", "runtime"],
                                       ["segedge", "benchmarks"]) for name in found)


def test_pyproject_keeps_no_package_list() -> None:
    """A `packages` or `package-dir` table in pyproject.toml would silently replace setup.py's
    discovery with a hand list again (the bug this module exists for)."""
    setuptools_table = tomllib.loads((SOURCE / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {"packages", "package-dir"}.isdisjoint(setuptools_table)


def test_every_data_file_ships_or_is_listed_as_not_shipped() -> None:
    shipped = shipped_data()
    for name in ("runtime/assets/demo_clip.mp4", "runtime/assets/demo_fp32.onnx",
                 "export/models/checkpoints/demo.pt",
                 "export/tensorrt/data/tensorrt_onnx_ops.json"):
        assert SOURCE / name in shipped, name


# -- the installed wheel ------------------------------------------------------------------------

def venv_root() -> Path:
    return Path(VENV).resolve()


def inside_venv(path: str | os.PathLike[str]) -> bool:
    return Path(path).resolve().is_relative_to(venv_root())


@wheel_only
def test_segedge_comes_from_the_wheel_in_the_venv() -> None:
    assert Path(sys.prefix).resolve() == venv_root()
    editable = [f for f in sys.meta_path if "__editable__" in getattr(f, "__module__", "")]
    assert editable == [], "an editable install's finder is active: the wheel is not what runs"
    import segedge

    assert segedge.__path__ and all(inside_venv(p) for p in segedge.__path__), segedge.__path__
    dist = metadata.distribution("segedge")
    assert inside_venv(str(dist.locate_file(""))), dist.locate_file("")
    direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
    assert not direct_url.get("dir_info", {}).get("editable", False)


@wheel_only
def test_every_module_is_installed_and_imports_from_the_venv() -> None:
    installed = set(top_folders())
    for top in top_folders():
        package = importlib.import_module(top)
        installed |= {m.name for m in pkgutil.walk_packages(package.__path__, top + ".")}
    expected = source_modules()
    assert installed == expected, (f"missing from the wheel: {sorted(expected - installed)}; "
                                   f"not in the source: {sorted(installed - expected)}")
    for name in sorted(expected):
        module = importlib.import_module(name)
        assert module.__file__ and inside_venv(module.__file__), (name, module.__file__)


@wheel_only
def test_assets_are_installed_byte_for_byte() -> None:
    runtime_init = importlib.import_module("segedge.runtime").__file__
    assert runtime_init
    site = Path(runtime_init).resolve().parents[2]
    shipped = shipped_data()
    assert shipped
    missing = [str(rel) for src, rel in shipped.items()
               if not (site / rel).is_file() or not filecmp.cmp(src, site / rel, shallow=False)]
    assert not missing, f"package data missing or different in the wheel: {missing}"


@wheel_only
def test_console_scripts_are_pyprojects_and_in_the_venv() -> None:
    declared = tomllib.loads((SOURCE / "pyproject.toml").read_text())["project"]["scripts"]
    scripts = metadata.distribution("segedge").entry_points.select(group="console_scripts")
    assert {ep.name: ep.value for ep in scripts} == declared
    for name in declared:
        assert (venv_root() / "bin" / name).is_file(), name
