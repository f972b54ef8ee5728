"""The repository's nbval hooks (root ``conftest.py``): a cell that floods the kernel's output
channel fails with an explanation instead of a random timeout, and quiet cells pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def run_nbval(tmp_path: Path, *cells: str) -> subprocess.CompletedProcess:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    path = tmp_path / "probe.ipynb"
    nbformat.write(nb, path)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(path),
            "-p",
            "conftest",
            "--nbval-lax",
            "--nbval-current-env",
            "-p",
            "no:cacheprovider",
            "-q",
            "--rootdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )


def test_flooding_cell_fails_with_an_explanation_and_quiet_cells_pass(tmp_path: Path) -> None:
    import conftest

    flood = conftest.MAX_IOPUB_MESSAGES + 50
    proc = run_nbval(
        tmp_path,
        "x = 1\nprint(x)",
        f"for i in range({flood}):\n    display(i)",
        "import os\nprint(os.environ['TQDM_MININTERVAL'])",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 failed, 2 passed" in out, out
    for part in ("Cell 1 sent", "output messages", "progress=False"):
        assert part in out, out
    assert "notebook execution times" in out, out
