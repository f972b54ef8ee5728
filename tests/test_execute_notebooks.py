"""scripts/execute_notebooks.py: headline figures and the run-time table."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import nbformat
import pytest

from cnnbook.sections import SECTIONS

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "scripts" / "execute_notebooks.py")
assert spec is not None
assert spec.loader is not None
execute_notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(execute_notebooks)


def _literal_prefix(pattern: str) -> str:
    """The text a pattern starts with, up to its first regex construct."""
    out = []
    i = 1 if pattern.startswith("^") else 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and not pattern[i + 1].isalnum():
            out.append(pattern[i + 1])
            i += 2
        elif ch in ".^$*+?{}[]()|\\":
            break
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@pytest.mark.parametrize("section", SECTIONS, ids=[s.number for s in SECTIONS])
def test_every_section_names_a_headline_its_notebook_prints(section) -> None:
    assert section.headline, f"{section.number} has no headline pattern"
    re.compile(section.headline)
    prefix = _literal_prefix(section.headline)
    assert len(prefix) >= 5, f"{section.headline!r} should start with some literal text"
    source = (ROOT / section.notebook).read_text(encoding="utf-8")
    assert prefix in source, f"{section.notebook} no longer prints {prefix!r} (update cnnbook/sections.py)"


def _executed(tmp_path: Path, lines: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(...)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="\n".join(lines))]
    nb.cells = [cell]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_headline_is_the_first_matching_printed_line(tmp_path: Path) -> None:
    path = _executed(
        tmp_path,
        [
            "loading",
            "test accuracy, measured once:   82.61% (10,000 images)",
            "test accuracy, measured once: 1%",
        ],
    )
    assert execute_notebooks.headline("14_15_training_pipeline", path) == (
        "test accuracy, measured once:   82.61% (10,000 images)"
    )


def test_missing_headline_is_reported_not_hidden(tmp_path: Path) -> None:
    path = _executed(tmp_path, ["nothing to see"])
    assert execute_notebooks.headline("14_15_training_pipeline", path).startswith("(no line matched")
    assert execute_notebooks.headline("not_a_section", path) == ""


def test_table_lists_each_notebook_and_the_total() -> None:
    rows = [("notebooks/a.ipynb", 12.0, "x = 1 | y", "0.50"), ("notebooks/b.ipynb", 200.0, "acc 80%", "1.00")]
    table = execute_notebooks.markdown_table("full mode, laptop profile", rows, 212.0)
    lines = table.splitlines()
    assert lines[0] == "full mode, laptop profile"
    assert "| notebooks/a.ipynb | 12 s | x = 1 \\| y |" in lines  # a bare '|' would end the cell
    assert "| notebooks/b.ipynb | 3.3 min (200 s) | acc 80% |" in lines
    assert "| **total** | **3.5 min (212 s)** | |" in lines
    assert lines[-1] == "Load average before each notebook: 0.50, 1.00."


def test_load_average_on_a_system_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has no ``os.getloadavg``: the table says "n/a" instead of stopping."""
    monkeypatch.delattr(os, "getloadavg", raising=False)
    assert execute_notebooks._load() == "n/a"


def test_the_script_uses_the_installed_package(tmp_path: Path) -> None:
    """With cnnbook installed (`make env`), the script does not put the checkout on sys.path."""
    import subprocess
    import sys

    root, script = str(ROOT), str(ROOT / "scripts" / "execute_notebooks.py")
    probe = (
        f"import runpy, sys; n = sys.path.count({root!r}); "
        f"runpy.run_path({script!r}, run_name='probe'); print(sys.path.count({root!r}) - n)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert out.stdout.strip() == "0", out.stdout + out.stderr
