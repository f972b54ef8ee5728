"""The set-up without make (``scripts/setup_env.py``) on Windows, macOS and Linux, and its README.

The script is what ``make lab`` and ``make env`` run and what a Windows student runs in
PowerShell or cmd. Here it creates a real virtual environment with this Python (the install
commands themselves are recorded, not run: they would download PyTorch), and the Windows layout
(``Scripts\\python.exe``) is checked by path.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path, PureWindowsPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _load_setup():
    spec = importlib.util.spec_from_file_location("setup_env", ROOT / "scripts" / "setup_env.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


setup_env = _load_setup()


def test_the_interpreter_path_follows_the_platform() -> None:
    env = Path(".venv")
    assert PureWindowsPath(setup_env.venv_python(env, windows=True)) == PureWindowsPath(
        r".venv\Scripts\python.exe"
    )
    assert setup_env.venv_python(env, windows=False).as_posix() == ".venv/bin/python"


def test_install_commands_use_the_constraints_and_the_extra() -> None:
    python = Path("env") / "Scripts" / "python.exe"
    cmds = setup_env.install_commands(python, "lab")
    assert all(c[0] == str(python) for c in cmds), "every step runs the environment's own Python"
    assert [str(ROOT / "constraints.txt"), "-e", ".[lab]"] == cmds[-2][-3:]
    assert cmds[-1][-2:] == ["cnnbook", "kernel"]
    assert not any("--index-url" in c for c in cmds)


def test_cpu_build_comes_first_with_the_pinned_versions(tmp_path: Path) -> None:
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# pins\ntorch==2.14.1\ntorchvision==0.29.1\n", encoding="utf-8")
    cmds = setup_env.install_commands(Path("py"), "dev", setup_env.CPU_INDEX, constraints)
    (torch_step,) = (c for c in cmds if "--index-url" in c)
    assert torch_step[torch_step.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert torch_step[-2:] == ["torch==2.14.1", "torchvision==0.29.1"]
    assert cmds.index(torch_step) < next(i for i, c in enumerate(cmds) if ".[dev]" in c)


def test_the_pins_it_reads_are_those_of_constraints_txt() -> None:
    text = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    for name in ("torch", "torchvision"):
        assert f"\n{name}=={setup_env.pinned(name)}\n" in text


def test_a_real_environment_is_created_and_installed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(setup_env, "_run", ran.append)
    env = tmp_path / "student env"  # a space in the path, as in C:\Users\Jane Doe
    python = setup_env.setup(env, "lab")
    assert python == setup_env.venv_python(env)
    assert python.is_file(), "venv.create made no interpreter where the script looks for it"
    assert [c[-1] for c in ran] == ["pip", ".[lab]", "kernel"]
    assert (env / ".cnnbook-lab").is_file()
    assert not (env / ".cnnbook-installed").exists()
    ran.clear()
    setup_env.setup(env, "lab")
    assert ran == [], "a second run with unchanged pyproject.toml and constraints.txt installs nothing"
    setup_env.setup(env, "dev")
    assert [c[-1] for c in ran] == ["pip", ".[dev]", "kernel"], "the dev extra is not installed yet"
    ran.clear()
    setup_env.setup(env, "lab")
    assert ran == [], "dev includes lab"


def test_the_makefile_runs_the_script_and_names_its_stamps() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^SETUP\s*:=\s*\$\(PYTHON\) scripts/setup_env\.py", makefile, re.M)
    for extra, stamp in setup_env.STAMPS.items():
        assert f"$(VENV)/{stamp}" in makefile, f"the Makefile does not know the {extra} stamp"
    assert "$(VENV)/Scripts/python.exe" in makefile
    phony = re.search(r"^\.PHONY:(.*?)(?<!\\)\n", makefile, re.M | re.S)
    assert phony
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    assert targets <= set(phony.group(1).replace("\\", " ").split()), ".PHONY misses a target"


@pytest.mark.parametrize(
    ("heading", "python"),
    [
        ("### Windows", r".venv\Scripts\python"),
        ("### macOS", ".venv/bin/python"),
        ("### Linux", ".venv/bin/python"),
    ],
)
def test_readme_has_a_setup_per_platform_without_make(heading: str, python: str) -> None:
    assert heading in README, f"README has no {heading} section"
    section = README.split(heading, 1)[1].split("\n##", 1)[0]
    assert "scripts/setup_env.py" in section.replace("\\", "/")
    for command in ("-m cnnbook lab", "-m cnnbook progress", "-m pytest"):
        assert f"{python} {command}" in section, f"{heading}: no `{python} {command}` line"
    if heading == "### Windows":
        assert ".venv/bin/" not in section, "a POSIX path in the Windows instructions"


def test_the_script_runs_with_a_python_that_has_nothing_installed() -> None:
    """Standard library only: it runs before the environment exists."""
    source = (ROOT / "scripts" / "setup_env.py").read_text(encoding="utf-8")
    imports = set(re.findall(r"^(?:from|import) (\w+)", source, re.M))
    assert imports <= set(sys.stdlib_module_names) | {"__future__"}, imports


def test_readme_cpu_build_command_names_the_pinned_versions() -> None:
    found = re.findall(r"\b(torch|torchvision)==([\w.+]+)", README)
    assert {name for name, _ in found} == {"torch", "torchvision"}, "README lost its CPU-build command"
    for name, version in found:
        assert version == setup_env.pinned(name), (
            f"README installs {name}=={version}; constraints.txt pins another"
        )


def test_the_command_offline_stops_with_a_message_that_says_what_failed(tmp_path: Path) -> None:
    """`python scripts/setup_env.py` as a student runs it, with no package index reachable."""
    import os
    import subprocess

    env_dir = tmp_path / "Jane Doe" / ".venv"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "setup_env.py"), "--venv", str(env_dir)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1"),
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert setup_env.venv_python(env_dir).is_file(), "the environment was not created"
    assert "setup stopped: this command failed" in done.stderr
    assert "-e .[lab]" in done.stderr, "the message names the command that failed"
    assert not (env_dir / ".cnnbook-lab").exists(), "a failed install must not be stamped as done"
