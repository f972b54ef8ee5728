"""environment.yml (conda), pyproject.toml (pip) and constraints.txt (CI's exact versions) agree.

environment.yml is the students' environment: the package's dependencies and the ``lab`` extra,
as ``make lab`` installs. Conda cannot be installed here, so what a conda solve could give is
checked from the file: no channel known to stop below CI's versions, and every range admits the
version CI runs. The students' install holds no developer tool (jupytext adds launcher entries).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# conda package name -> PyPI name where they differ
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}
SELF = "cnnbook"
# What a student's environment (environment.yml, `make lab`) installs.
STUDENT_EXTRAS = ("lab",)


def _requirements(extras: tuple[str, ...] | None = None) -> list[Requirement]:
    """The package's requirements plus those of ``extras`` (default: every extra).

    A self-reference such as ``cnnbook[lab]`` in an extra stands for that extra's requirements.
    """
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    optional = meta["optional-dependencies"]
    todo, seen = list(optional if extras is None else extras), set()
    reqs = [Requirement(r) for r in meta["dependencies"]]
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for r in map(Requirement, optional[extra]):
            if canonicalize_name(r.name) == SELF:
                todo.extend(r.extras)
            else:
                reqs.append(r)
    return reqs


def _pyproject(extras: tuple[str, ...] | None = None) -> dict[str, str]:
    return {canonicalize_name(r.name): str(r.specifier) for r in _requirements(extras)}


def _environment(env: dict | None = None) -> dict[str, str]:
    env = env if env is not None else yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
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
    pip, conda = _pyproject(STUDENT_EXTRAS), _environment()
    assert sorted(pip) == sorted(conda), (
        f"only in pyproject.toml: {sorted(set(pip) - set(conda))}; "
        f"only in environment.yml: {sorted(set(conda) - set(pip))}"
    )


def test_same_version_ranges() -> None:
    pip, conda = _pyproject(STUDENT_EXTRAS), _environment()
    differ = {n: (pip[n], conda[n]) for n in pip if n in conda and pip[n] != conda[n]}
    assert not differ, f"ranges differ (pyproject, environment.yml): {differ}"


def test_ranges_admit_the_ci_versions() -> None:
    pip = _pyproject()
    from packaging.specifiers import SpecifierSet

    assert "2.14.1" in SpecifierSet(pip["torch"])
    assert "0.29.1" in SpecifierSet(pip["torchvision"])
    assert "8.1.5" in SpecifierSet(pip["ipywidgets"])
    assert "9.0" not in SpecifierSet(pip["ipywidgets"])
    assert "4.2.0" in SpecifierSet(pip["jupyterlab"])
    assert "5.0" not in SpecifierSet(pip["jupyterlab"])
    assert "3.0.13" in SpecifierSet(pip["jupyterlab-widgets"])


# Conda channels that stopped publishing, with the last version they have of a package.
FROZEN_CHANNELS = {"pytorch": {"pytorch": "2.5.1", "torchvision": "0.20.1", "torchaudio": "2.5.1"}}


def _constraints() -> dict[str, str]:
    """Package -> exact version from constraints.txt (what `make env` installs)."""
    out = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            r = Requirement(line)
            (spec,) = r.specifier
            assert spec.operator == "==", f"constraints.txt must pin exactly: {line!r}"
            out[canonicalize_name(r.name)] = spec.version
    return out


def _conda_problems(env: dict) -> list[str]:
    """Channels or ranges in a conda environment that cannot give CI's pinned versions."""
    from packaging.specifiers import SpecifierSet

    pins, problems = _constraints(), []
    conda_names = {
        Requirement(d.replace("=", "==", 1) if re.match(r"^[\w.-]+=[^=<>]", d) else d).name
        for d in env["dependencies"]
        if isinstance(d, str)
    }
    for channel in env.get("channels", []):
        for name, last in FROZEN_CHANNELS.get(channel, {}).items():
            pypi = canonicalize_name(CONDA_TO_PYPI.get(name, name))
            if name in conda_names and pypi in pins and Version(pins[pypi]) > Version(last):
                problems.append(
                    f"channel {channel!r} stops at {name} {last}, CI runs "
                    f"{pins[pypi]}: take {name} from conda-forge or pip"
                )
    for name, spec in _environment(env).items():
        if name in pins and pins[name] not in SpecifierSet(spec, prereleases=True):
            problems.append(f"{name}{spec} excludes CI's {pins[name]}")
    return problems


def test_environment_can_give_the_ci_versions() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    assert not _conda_problems(env)
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python == "python={}.{}".format(*sys.version_info[:2]), (
        f"environment.yml pins {python}, CI runs Python {sys.version.split()[0]}"
    )


def test_the_check_catches_a_frozen_channel_and_a_bad_pin() -> None:
    """The old file (pytorch channel first, conda's pytorch) and a pin below CI's both fail."""
    old = {
        "channels": ["pytorch", "conda-forge"],
        "dependencies": ["python=3.11", "pytorch>=2.4,<2.15", "numpy<1.20"],
    }
    problems = _conda_problems(old)
    assert any("channel 'pytorch' stops at pytorch 2.5.1" in p for p in problems), problems
    assert any(p.startswith("numpy<1.20 excludes CI's") for p in problems), problems
    assert not _conda_problems({"channels": ["conda-forge"], "dependencies": ["numpy>=1.26"]})


def test_constraints_pin_every_declared_package_inside_its_range() -> None:
    from packaging.specifiers import SpecifierSet

    pins, declared = _constraints(), _pyproject()
    missing = sorted(set(declared) - set(pins))
    assert not missing, f"constraints.txt pins no version of {missing}"
    outside = {n: (pins[n], r) for n, r in declared.items() if pins[n] not in SpecifierSet(r)}
    assert not outside, f"pins outside pyproject's ranges: {outside}"


def test_installed_versions_are_the_pinned_ones() -> None:
    """`make env` installed exactly constraints.txt (a local build tag such as +cu130 aside)."""
    from importlib import metadata

    wrong = {}
    for name, pinned in _constraints().items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # platform-specific wheels (e.g. CUDA libraries) absent on this machine
        if Version(have).public != Version(pinned).public:
            wrong[name] = (have, pinned)
    assert not wrong, (
        f"installed != pinned (installed, pinned): {wrong}; run `make env` or "
        "refresh constraints.txt (CONTRIBUTING.md)"
    )
    for name in _pyproject():
        metadata.version(name)  # every declared package is installed


def test_dev_extra_takes_the_lab_extra_by_reference() -> None:
    """``dev`` = ``cnnbook[lab]`` + the tools: the student's packages are written once."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    dev = [Requirement(r) for r in meta["optional-dependencies"]["dev"]]
    assert any(canonicalize_name(r.name) == SELF and r.extras == {"lab"} for r in dev)
    student = set(_pyproject(STUDENT_EXTRAS))
    repeated = sorted(canonicalize_name(r.name) for r in dev if canonicalize_name(r.name) in student)
    assert not repeated, f"dev repeats what the lab extra or the package already require: {repeated}"
    assert set(_pyproject(("dev",))) == set(_pyproject()), "dev must include every other extra"


DEVELOPER_TOOLS = {"jupytext", "pytest", "nbval", "papermill", "ruff", "mypy", "playwright"}


def _closure(reqs: list[Requirement], extras: set[str]) -> set[str]:
    """Names of everything ``reqs`` pull in, following the installed packages' own requirements."""
    from importlib import metadata

    names: set[str] = set()
    todo = [(r, extras) for r in reqs]
    while todo:
        req, active = todo.pop()
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in active or {""}):
            continue
        name = canonicalize_name(req.name)
        if name in names:
            continue
        names.add(name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        todo.extend((Requirement(r), set(req.extras)) for r in dist.requires or [])
    return names


def test_the_students_install_holds_no_developer_tools() -> None:
    """``make lab`` installs no jupytext (its launchers), no test runner, no linter."""
    student = _closure(_requirements(STUDENT_EXTRAS), set())
    assert {"jupyterlab", "torch", "tornado"} <= student  # the walk followed requirements down
    assert not student & DEVELOPER_TOOLS, f"the lab install pulls in {sorted(student & DEVELOPER_TOOLS)}"
    everything = _closure(_requirements(), set())
    assert everything >= DEVELOPER_TOOLS, "the dev install should hold the tools (and this test sees them)"
