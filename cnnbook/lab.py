"""How ``make lab`` (``python -m cnnbook lab``) starts JupyterLab for a student (all sections).

JupyterLab serves the repository root, so ``notebooks/``, ``exercises/`` and ``solutions/`` are
all reachable from the file browser and the relative links between them work, and it opens on
``START_HERE.ipynb``. Everything a student first sees is set here and in the settings folder
``cnnbook/lab_settings/`` that ships with the package (never in the user's home):

* no "get notified about official Jupyter news?" pop-up and no update check
  (``lab_settings/overrides.json``);
* a file browser without generated or maintainer-only files (:data:`HIDE_GLOBS`): the start
  page, ``README.md`` and the ``notebooks``, ``exercises``, ``solutions`` and ``cnnbook``
  folders are what is left;
* one kernel, ``Python (cnnbook)``, in the launcher, started for every new notebook without a
  "Select Kernel" question; developer tools' launcher entries (Jupytext) switched off
  (``lab_settings/page_config.json``).

JupyterLab runs as ``python -m jupyterlab`` with this interpreter, so no ``jupyter`` executable
has to be found (it is ``Scripts\\jupyter.exe`` on Windows, ``bin/jupyter`` elsewhere). On Windows
it runs as a child process whose exit code is returned (``os.execv`` neither replaces the process
there nor quotes arguments); elsewhere it replaces this process. The browser tests start
JupyterLab through this very function.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path, PurePath

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_DIR = Path(__file__).resolve().parent / "lab_settings"
START_PAGE = "START_HERE.ipynb"
KERNEL_NAME = "cnnbook"

# Names hidden from the file browser (fnmatch on each file or folder name, at every depth). Files
# stay reachable by link (README -> MAINTAINING.md still opens); they are only not listed.
HIDE_GLOBS: tuple[str, ...] = (
    # JupyterLab's defaults
    "__pycache__",
    "*.pyc",
    "*.pyo",
    ".DS_Store",
    "*~",
    # generated: builds, executed notebooks, screenshots, package metadata, tool caches
    "build",
    "dist",
    "*.egg-info",
    ".ipynb_checkpoints",
    "htmlcov",
    # for maintainers and contributors, not for working through the chapter
    "benchmarks",
    "scripts",
    "tests",
    "conftest.py",
    "constraints.txt",
    "environment.yml",
    "pyproject.toml",
    "Makefile",
    "MAINTAINING.md",
    "CONTRIBUTING.md",
)


def lab_arguments(root: PurePath = ROOT, settings: PurePath = SETTINGS_DIR) -> list[str]:
    """Arguments after ``python -m jupyterlab``: serve ``root``, land on the start page.

    Args:
        root: The repository root.
        settings: The folder holding ``overrides.json`` and ``page_config.json``.

    Returns:
        Command-line arguments, one list item per argument (paths with spaces stay whole).
    """
    return [
        f"--ServerApp.root_dir={root}",
        f"--LabApp.default_url=/lab/tree/{START_PAGE}",
        f"--LabApp.app_settings_dir={settings}",
        *(f"--ContentsManager.hide_globs={glob}" for glob in HIDE_GLOBS),
        f"--KernelSpecManager.allowed_kernelspecs={KERNEL_NAME}",
        f"--MultiKernelManager.default_kernel_name={KERNEL_NAME}",
        # Jupytext (a maintainer's tool) would open .md and .py files as notebooks; off here
        "--ServerApp.jpserver_extensions=jupyterlab_jupytext=False",
        str(root / START_PAGE),
    ]


def lab_command(
    extra: Sequence[str] = (),
    python: str | None = None,
    root: PurePath = ROOT,
    settings: PurePath = SETTINGS_DIR,
    as_root: bool | None = None,
) -> list[str]:
    """The whole command that starts JupyterLab, as an argument list.

    Args:
        extra: More arguments for JupyterLab (a leading ``--`` separator is dropped).
        python: The interpreter to run JupyterLab with (default: this one, ``sys.executable``).
        root: The repository root.
        settings: The lab settings folder.
        as_root: Whether this runs as the superuser (``--allow-root`` is then added, as
            containers need); ``None`` asks the operating system.

    Returns:
        ``[python, "-m", "jupyterlab", ...]``.
    """
    extra = list(extra)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    if as_root is None:
        as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    args = [python or sys.executable, "-m", "jupyterlab", *lab_arguments(root, settings), *extra]
    if as_root and "--allow-root" not in extra:
        args.append("--allow-root")
    return args


def _has_cnnbook_kernel() -> bool:
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL_NAME in KernelSpecManager().find_kernel_specs()


def main(extra: Sequence[str] = ()) -> int:
    """Start JupyterLab on the start page (``python -m cnnbook lab [jupyterlab options]``).

    Returns:
        JupyterLab's exit code (on Windows; elsewhere this process becomes JupyterLab), or 1 when
        JupyterLab is not installed.
    """
    if importlib.util.find_spec("jupyterlab") is None:
        print(
            "JupyterLab is not installed in this environment: run `make lab`, or "
            '`python -m pip install -e ".[lab]"` with this environment\'s Python, first.',
            file=sys.stderr,
        )
        return 1
    if not _has_cnnbook_kernel():
        print("the notebooks' kernel 'cnnbook' is not registered yet; registering it now", flush=True)
        subprocess.call([sys.executable, "-m", "cnnbook", "kernel"])
    args = lab_command(extra)
    print("starting:", subprocess.list2cmdline(args), flush=True)
    if _is_windows():
        return _run_child(args)
    os.execv(args[0], args)
    return 0  # pragma: no cover - execv does not return


def _is_windows() -> bool:
    return os.name == "nt"


def _run_child(args: list[str]) -> int:
    """Run JupyterLab as a child (Windows) and return its exit code; Ctrl+C lets it shut down."""
    proc = subprocess.Popen(args)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # the console sent Ctrl+C to the child too: let it finish
            continue
