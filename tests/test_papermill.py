"""Papermill injects parameters after the `parameters` cell, and they change what runs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _stdout(nb: nbformat.NotebookNode) -> str:
    return "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "stream"
    )


@pytest.mark.slow
def test_injected_parameter_changes_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNBOOK_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    src = ROOT / "notebooks" / "14_01_convolution.ipynb"
    out = tmp_path / "executed.ipynb"
    pm.execute_notebook(
        str(src),
        str(out),
        parameters={"PHOTO_SIZE": 40, "PHOTO": "coffee"},
        cwd=str(src.parent),
        progress_bar=False,
    )
    nb = nbformat.read(out, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert "PHOTO_SIZE = 40" in injected[0].source
    text = _stdout(nb)
    assert "photo size: 40px" in text  # the fast-mode default would be 96px
    assert "photo size: 96px" not in text
    assert "edge-strength map: (40, 40)" in text  # the photo really was 40x40 downstream
