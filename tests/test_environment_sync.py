"""environment.yml (conda) and pyproject.toml (pip) must name the same packages and ranges."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# conda package name -> PyPI name where they differ
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def _pyproject() -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + list(meta["optional-dependencies"]["dev"])
    out = {}
    for r in map(Requirement, reqs):
        out[canonicalize_name(r.name)] = str(r.specifier)
    return out


def _environment() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            if re.match(r"^[A-Za-z0-9_.-]+=[^=<>]", item):  # conda's "name=version" pin
                item = item.replace("=", "==", 1)
            r = Requirement(item)
            name = CONDA_TO_PYPI.get(r.name, r.name)
            if name in NOT_PACKAGES:
                continue
            out[canonicalize_name(name)] = str(r.specifier)
    return out


def test_same_package_names() -> None:
    pip, conda = _pyproject(), _environment()
    assert sorted(pip) == sorted(conda), (
        f"only in pyproject.toml: {sorted(set(pip) - set(conda))}; "
        f"only in environment.yml: {sorted(set(conda) - set(pip))}"
    )


def test_same_version_ranges() -> None:
    pip, conda = _pyproject(), _environment()
    differ = {n: (pip[n], conda[n]) for n in pip if n in conda and pip[n] != conda[n]}
    assert not differ, f"ranges differ (pyproject, environment.yml): {differ}"


def test_ranges_admit_the_ci_versions() -> None:
    pip = _pyproject()
    from packaging.specifiers import SpecifierSet

    assert "2.14.1" in SpecifierSet(pip["torch"])
    assert "0.29.1" in SpecifierSet(pip["torchvision"])
    assert "8.1.5" in SpecifierSet(pip["ipywidgets"]) and "9.0" not in SpecifierSet(pip["ipywidgets"])
    assert "4.2.0" in SpecifierSet(pip["jupyterlab"]) and "5.0" not in SpecifierSet(pip["jupyterlab"])
    assert "3.0.13" in SpecifierSet(pip["jupyterlab-widgets"])
