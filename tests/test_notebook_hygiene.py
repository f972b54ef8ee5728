"""Every committed notebook is valid nbformat, has no outputs, and follows the conventions."""

from __future__ import annotations

import re
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


# ------------------------------------------------------------------ headings and link texts
# Every student-facing notebook: one H1 (its title), headings that never skip a level, and link
# texts that say where they go (a screen reader lists links and headings out of context).

STUDENT_NOTEBOOKS = [*NOTEBOOKS, ROOT / "START_HERE.ipynb"]
STUDENT_IDS = [str(p.relative_to(ROOT)) for p in STUDENT_NOTEBOOKS]

_FENCE = re.compile(r"^\s*(```|~~~)")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*#*[ \t]*$")
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_AUTOLINK = re.compile(r"<(https?://[^>\s]+)>")
_BARE_URL = re.compile(r"(?<![(<\[\"'=/])\b(https?://[^\s)>\]]+|www\.[^\s)>\]]+)")
_VAGUE = {"here", "this", "link", "this link", "click here", "here.", "more", "read more", "this page"}


def _prose_lines(markdown: str) -> list[str]:
    """The markdown's lines outside fenced code blocks (inline code spans blanked)."""
    lines, fenced = [], False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", "``", line))
    return lines


def heading_problems(cells: list[str]) -> list[str]:
    """Problems with the headings of a notebook's markdown cells, in order (empty when fine)."""
    problems: list[str] = []
    levels: list[tuple[int, int, str]] = []
    for index, source in enumerate(cells):
        for line in _prose_lines(source):
            m = _ATX.match(line)
            if m:
                levels.append((index, len(m.group(1)), (m.group(2) or "").strip()))
    h1 = [(i, t) for i, lvl, t in levels if lvl == 1]
    if len(h1) != 1:
        where = ", ".join(f"cell {i} {t!r}" for i, t in h1) or "none"
        problems.append(f"{len(h1)} H1 headings (need exactly one, the title): {where}")
    previous = 0
    for index, level, text in levels:
        if level > previous + 1:
            problems.append(
                f"cell {index}: H{level} {text!r} follows H{previous or '(nothing)'}; "
                f"use H{previous + 1} (headings never skip a level)"
            )
        previous = level
    return problems


def link_problems(cells: list[str]) -> list[str]:
    """Links whose text does not say where they go, bare URLs, and images without alt text."""
    problems: list[str] = []
    for index, source in enumerate(cells):
        for line in _prose_lines(source):
            for bang, text, target in _LINK.findall(line):
                shown = text.strip()
                if bang:
                    if not shown:
                        problems.append(f"cell {index}: image {target!r} has no alt text")
                    continue
                if shown.lower().strip(" .:!") in _VAGUE:
                    problems.append(
                        f"cell {index}: link text {shown!r} (to {target}) does not say where it goes"
                    )
                elif re.match(r"(https?://|www\.)", shown):
                    problems.append(f"cell {index}: link text is a bare URL {shown!r}; name the page instead")
            for url in _AUTOLINK.findall(line):
                problems.append(f"cell {index}: bare URL <{url}>; write [what it is]({url})")
            rest = _AUTOLINK.sub("", _LINK.sub("", line))
            for url in _BARE_URL.findall(rest):
                problems.append(f"cell {index}: bare URL {url}; write [what it is]({url})")
    return problems


def test_heading_and_link_checks_catch_problems() -> None:
    good = ["# Title\n\n## Part\n\n### Detail\n\n```python\n# a comment, not a heading\n```", "## Next"]
    assert heading_problems(good) == []
    assert any("2 H1" in p for p in heading_problems(["# One", "# Two"]))
    assert any("0 H1" in p for p in heading_problems(["## Only a subtitle"]))
    skipped = heading_problems(["# Title\n\n### Too deep"])
    assert len(skipped) == 1
    assert "H3" in skipped[0]
    assert "use H2" in skipped[0]
    assert link_problems(["See [the pooling exercises](exercises/14_04_pooling.ipynb)."]) == []
    assert link_problems(["[ResNet paper](https://arxiv.org/abs/1512.03385) and `https://in.code`"]) == []
    for bad in (
        "Click [here](a.ipynb).",
        "[this](a.ipynb)",
        "[link](https://x.org)",
        "[https://x.org](https://x.org)",
        "<https://x.org>",
        "see https://x.org for more",
        "![](figure.png)",
    ):
        assert link_problems([bad]), bad


def _markdown_cells(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [c.source if c.cell_type == "markdown" else "" for c in nb.cells]


@pytest.mark.parametrize("path", STUDENT_NOTEBOOKS, ids=STUDENT_IDS)
def test_headings_and_link_texts(path: Path) -> None:
    cells = _markdown_cells(path)
    problems = heading_problems(cells) + link_problems(cells)
    assert not problems, f"{path.relative_to(ROOT)}:\n  " + "\n  ".join(problems)


# ------------------------------------------------------------------------ text alternatives
# JupyterLab 4 does not put an image output's alt metadata on the <img> (the browser test checks
# this), so the text next to a figure is what a screen reader, or a reader who cannot tell its
# colours apart, gets: a caption cell right after it starting with "*Figure:*", or a printed
# sentence in the figure's own cell that states what it shows.

_DRAWS = re.compile(
    r"plt\.show\(|\.imshow\(|plt\.subplots\(|plt\.figure\(|\.plot\(|\.semilogy\(|\.bar\(|\.scatter\("
    r"|\b(image_grid|plot_filters|plot_feature_maps|plot_heatmaps|plot_history|plot_confusion_matrix)\("
)


def figures_without_text(cells: list[tuple[str, str]]) -> list[int]:
    """Indices of code cells that draw a figure with neither a caption cell nor a printed sentence.

    Args:
        cells: ``(cell_type, source)`` per cell, in order.
    """
    missing = []
    for i, (kind, source) in enumerate(cells):
        if kind != "code" or not _DRAWS.search(source) or "print(" in source:
            continue
        following = cells[i + 1] if i + 1 < len(cells) else ("", "")
        if not (following[0] == "markdown" and following[1].lstrip().startswith("*Figure:*")):
            missing.append(i)
    return missing


def test_figure_text_check_catches_a_bare_figure() -> None:
    drawn = ("code", "plots.image_grid(x);")
    assert figures_without_text([drawn, ("markdown", "## Next")]) == [0]
    assert figures_without_text([drawn, ("markdown", "*Figure:* ten images, one per class.")]) == []
    assert figures_without_text([("code", 'plt.plot(y)\nprint("loss falls from 2.3 to 0.4")')]) == []
    assert figures_without_text([("code", "x = 1")]) == []


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("14_*.ipynb")), ids=lambda p: p.name)
def test_figures_have_a_text_description(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    missing = figures_without_text([(c.cell_type, c.source) for c in nb.cells])
    assert not missing, (
        f"{path.relative_to(ROOT)}: cells {missing} draw a figure with no text description; add a "
        "markdown cell right after each, starting with '*Figure:*', that says what it shows"
    )
