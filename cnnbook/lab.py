"""How ``make lab`` starts JupyterLab (the start page; every section's links rely on it).

JupyterLab serves the repository root, so ``notebooks/``, ``exercises/`` and ``solutions/`` are
all reachable from the file browser and the relative links between them work, and it opens on
``START_HERE.ipynb``. The browser test starts its server with the same arguments.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START_PAGE = "START_HERE.ipynb"


def lab_arguments(root: Path = ROOT) -> list[str]:
    """Arguments after ``jupyter lab``: serve ``root`` and land on the start page.

    Args:
        root: The repository root.

    Returns:
        Command-line arguments for ``jupyter lab``.
    """
    return [
        f"--ServerApp.root_dir={root}",
        f"--LabApp.default_url=/lab/tree/{START_PAGE}",
        str(root / START_PAGE),
    ]


def main(extra: Sequence[str] = ()) -> int:
    """Replace this process with JupyterLab on the start page (``python -m cnnbook lab``)."""
    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.is_file():
        found = shutil.which("jupyter")
        if found is None:
            print(
                "JupyterLab is not installed in this environment: run `make lab` (or "
                "`pip install -e '.[lab]'`) first.",
                file=sys.stderr,
            )
            return 1
        jupyter = Path(found)
    args = [str(jupyter), "lab", *lab_arguments(), *extra]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in extra:
        args.append("--allow-root")  # containers run as root
    print("starting:", " ".join(args), flush=True)
    os.execv(args[0], args)
    return 0  # pragma: no cover - execv does not return
