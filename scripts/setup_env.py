"""Create ``.venv`` and install cnnbook into it, on Windows, macOS or Linux, with or without make.

What ``make lab`` and ``make env`` run, and what to run where there is no ``make``:

    python scripts/setup_env.py          # students: the notebooks and JupyterLab (the `lab` extra)
    python scripts/setup_env.py --cpu    # the same with PyTorch's CPU build (Linux without NVIDIA GPU)
    python scripts/setup_env.py --dev    # contributors: also the tests and linters (the `dev` extra)
    python scripts/setup_env.py --lab    # set up if needed, then open JupyterLab on the start page
    python scripts/setup_env.py --torch-index URL   # PyTorch from another index (a CUDA build)

(``py scripts\\setup_env.py`` in Windows PowerShell or cmd.) Steps: check the Python version,
create the virtual environment with the interpreter running this script, upgrade pip, install
the package in editable mode with the exact versions of ``constraints.txt``, and register the
``cnnbook`` Jupyter kernel. A stamp file in the environment records what was installed from which
``pyproject.toml`` and ``constraints.txt``: running the script again does nothing until they
change (``--force`` reinstalls). Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIN_PYTHON = (3, 11)
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Stamp per extra; the Makefile names the same files (`dev` includes `lab`, so it writes both).
STAMPS = {"lab": ".cnnbook-lab", "dev": ".cnnbook-installed"}


def venv_python(env: Path, windows: bool | None = None) -> Path:
    """The environment's interpreter: ``Scripts\\python.exe`` on Windows, ``bin/python`` elsewhere.

    Args:
        env: The virtual environment's folder.
        windows: Which layout (default: this machine's).

    Returns:
        The interpreter's path.
    """
    windows = os.name == "nt" if windows is None else windows
    return env / "Scripts" / "python.exe" if windows else env / "bin" / "python"


def pinned(name: str, constraints: Path = ROOT / "constraints.txt") -> str:
    """The exact version ``constraints.txt`` pins for package ``name``.

    Raises:
        SystemExit: When the file pins no version of it.
    """
    for line in constraints.read_text(encoding="utf-8").splitlines():
        spec = line.split("#", 1)[0].strip()
        if spec.lower().startswith(f"{name.lower()}=="):
            return spec.split("==", 1)[1].strip()
    raise SystemExit(f"{constraints.name} pins no version of {name}")


def install_commands(
    python: Path, extra: str, torch_index: str | None = None, constraints: Path = ROOT / "constraints.txt"
) -> list[list[str]]:
    """The commands that install cnnbook into the environment whose interpreter is ``python``.

    Args:
        python: The environment's interpreter (:func:`venv_python`).
        extra: ``"lab"`` (students) or ``"dev"`` (contributors; includes ``lab``).
        torch_index: Install the pinned torch and torchvision from this package index first
            (:data:`CPU_INDEX` for the CPU build); the rest then comes from PyPI.
        constraints: The pip constraints file with the exact versions.

    Returns:
        Argument lists, run in order from the repository root.
    """
    py = str(python)
    cmds = [[py, "-m", "pip", "install", "--upgrade", "pip"]]
    if torch_index:
        cmds.append(
            [py, "-m", "pip", "install", "--force-reinstall", "--no-deps", "--index-url", torch_index]
            + [f"{name}=={pinned(name, constraints)}" for name in ("torch", "torchvision")]
        )
    cmds.append([py, "-m", "pip", "install", "-c", str(constraints), "-e", f".[{extra}]"])
    cmds.append([py, "-m", "cnnbook", "kernel"])
    return cmds


def fingerprint(extra: str) -> str:
    """What a stamp records: the extra and the contents of ``pyproject.toml`` and ``constraints.txt``."""
    digest = hashlib.sha256(extra.encode())
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def up_to_date(env: Path, extra: str) -> bool:
    """Whether ``env`` holds an install of ``extra`` (or of ``dev``, which includes it) from today's files."""
    for have in ("dev",) if extra == "dev" else ("lab", "dev"):
        stamp = env / STAMPS[have]
        if stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == fingerprint(have):
            return True
    return False


def _has_cpu_torch(python: Path) -> bool:
    probe = "import torch, sys; sys.exit(0 if torch.version.cuda is None else 1)"
    return (
        python.is_file() and subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0
    )


def _run(cmd: list[str]) -> None:
    print("+", subprocess.list2cmdline(cmd), flush=True)
    done = subprocess.run(cmd, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(
            f"setup stopped: this command failed (exit status {done.returncode}):\n  "
            f"{subprocess.list2cmdline(cmd)}\nFix what it printed above, then run the setup again."
        )


def setup(
    env: Path, extra: str = "lab", cpu: bool = False, force: bool = False, torch_index: str | None = None
) -> Path:
    """Create ``env`` if needed and install ``extra`` into it; returns its interpreter."""
    if sys.version_info < MIN_PYTHON:
        raise SystemExit(
            "cnnbook needs Python {}.{} or newer; this is {}. Install a newer Python from "
            "python.org and run this script with it.".format(*MIN_PYTHON, sys.version.split()[0])
        )
    python = venv_python(env)
    if not python.is_file():
        print(f"creating the virtual environment {env} with Python {sys.version.split()[0]}", flush=True)
        try:
            venv.create(env, with_pip=True, symlinks=os.name != "nt")  # as `python -m venv`
        except (OSError, subprocess.CalledProcessError) as exc:
            raise SystemExit(
                f"could not create {env} ({exc}). On Debian or Ubuntu install the venv module first: "
                "sudo apt install python3-venv"
            ) from exc
    if cpu and not sys.platform.startswith("linux"):
        print("--cpu changes nothing here: PyTorch from PyPI is already the CPU (and Apple MPS) build.")
    elif cpu and not _has_cpu_torch(python):
        torch_index = CPU_INDEX
    if not force and not torch_index and up_to_date(env, extra):
        print(f"{env} is up to date ({extra}); `--force` reinstalls.")
    else:
        for cmd in install_commands(python, extra, torch_index):
            _run(cmd)
    for have in ("lab", "dev") if extra == "dev" else ("lab",):
        (env / STAMPS[have]).write_text(fingerprint(have) + "\n", encoding="utf-8")
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv", help="where (default: .venv)")
    parser.add_argument("--dev", action="store_true", help="also the tests and linters (contributors)")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="PyTorch's CPU build (Linux without an NVIDIA GPU: skips several GB of CUDA libraries)",
    )
    parser.add_argument(
        "--torch-index",
        metavar="URL",
        help="install torch and torchvision (versions of constraints.txt) from this index first, "
        "e.g. the CUDA index pytorch.org names for Windows with an NVIDIA GPU",
    )
    parser.add_argument("--force", action="store_true", help="reinstall even if up to date")
    parser.add_argument("--lab", action="store_true", help="then open JupyterLab on the start page")
    args = parser.parse_args(argv)
    env = args.venv if args.venv.is_absolute() else Path.cwd() / args.venv
    extra = "dev" if args.dev else "lab"
    python = setup(env, extra, cpu=args.cpu, force=args.force, torch_index=args.torch_index)
    rel = os.path.relpath(python, Path.cwd())
    if args.lab:
        return subprocess.call([str(python), "-m", "cnnbook", "lab"], cwd=ROOT)
    print(f"\nReady. Open the notebooks with:  {rel} -m cnnbook lab")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
