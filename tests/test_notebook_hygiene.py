"""Every committed notebook is valid nbformat, has no outputs, and follows the conventions."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for d in ("notebooks", "solutions", "exercises") for p in (ROOT / d).glob("*.ipynb"))
IDS = [str(p.relative_to(ROOT)) for p in NOTEBOOKS]


SECTIONS = (
    "14_01_convolution",
    "14_02_stride_padding_dilation",
    "14_03_receptive_fields",
    "14_04_pooling",
    "14_05_basic_cnn",
    "14_06_landmark_architectures",
    "14_07_one_by_one_convolutions",
    "14_08_depthwise_separable",
    "14_09_transfer_learning",
    "14_10_visualizing_features",
    "14_11_batch_normalization",
    "14_12_modern_design",
    "14_13_beyond_classification",
    "14_14_cnn_vs_vit",
    "14_15_training_pipeline",
    "14_16_pitfalls",
    "14_17_summary",
)


@pytest.mark.parametrize("folder", ["notebooks", "solutions", "exercises"])
def test_exactly_the_expected_notebooks(folder: str) -> None:
    """16 sections plus the 14.17 summary, each with its exercises and worked solutions."""
    found = sorted(p.stem for p in (ROOT / folder).glob("*.ipynb"))
    assert found == sorted(SECTIONS), (
        f"{folder}/: missing {sorted(set(SECTIONS) - set(found))}, "
        f"unexpected {sorted(set(found) - set(SECTIONS))}"
    )


def test_start_page_exists() -> None:
    assert (ROOT / "START_HERE.ipynb").is_file(), "the start page START_HERE.ipynb is missing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_valid_and_clean(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_first_code_cell_is_parameters(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", []), (
        f"{path.name}: the first code cell must be tagged 'parameters' (papermill)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_uses_project_kernel(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "cnnbook", (
        f"{path.name}: kernelspec must be 'cnnbook' (see `python -m cnnbook kernel`)"
    )


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("14_*.ipynb")), ids=lambda p: p.name)
def test_section_notebook_structure(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown").lower()
    assert "what you will learn" in md, f"{path.name}: needs a 'What you will learn' section"
    assert "key takeaways" in md, f"{path.name}: needs a closing 'Key takeaways' section"
    assert f"exercises/{path.name}" in md, f"{path.name}: must link to exercises/{path.name}"


FIGURE_RETURNING = {
    "image_grid",
    "plot_filters",
    "plot_feature_maps",
    "plot_heatmaps",
    "plot_history",
    "plot_confusion_matrix",
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_figures_are_not_shown_twice(path: Path) -> None:
    """A cell ending in a bare call that returns a Figure shows it twice in JupyterLab (the inline
    backend's copy and the cell's result); end such a line with ``;`` or assign the figure."""
    import ast

    from cnnbook import plots

    assert all(callable(getattr(plots, name)) for name in FIGURE_RETURNING)
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or cell.source.rstrip().endswith(";"):
            continue
        try:
            body = ast.parse(cell.source).body
        except SyntaxError:  # IPython magics; nothing to check there
            continue
        last = body[-1] if body else None
        if isinstance(last, ast.Expr) and isinstance(last.value, ast.Call):
            func = last.value.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            assert name not in FIGURE_RETURNING, (
                f"cell {index} ends in {name}(...), which returns a Figure: JupyterLab would show "
                "it twice. End the line with ';' or assign the figure."
            )
