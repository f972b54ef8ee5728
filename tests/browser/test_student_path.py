"""End-to-end: the path a student walks, in JupyterLab started the way ``make lab`` starts it.

JupyterLab opens on the start page; the student clicks a section, follows the section's link to
its exercises, answers the first exercise wrongly (a function that forgets to ``return``), runs
its check and sees ❌, then answers it correctly (the worked solution) and sees ✅.
"""

from __future__ import annotations

import re

import nbformat
import pytest

from .conftest import ROOT, LabServer
from .test_jupyterlab_widgets import (
    _OPEN_JS,
    KERNEL_START_TIMEOUT_MS,
    RUN_ALL_TIMEOUT_MS,
    assert_no_error_ui,
    shot,
)

try:
    from playwright.sync_api import expect
except ImportError:  # the fixtures skip (or fail in CI) with the reason
    expect = None

SECTION = "notebooks/14_04_pooling.ipynb"
EXERCISES = "exercises/14_04_pooling.ipynb"
SOLUTIONS = "solutions/14_04_pooling.ipynb"
_CHECK = re.compile(r"\bcheck_\w+\s*\(")


def first_checked_exercise() -> tuple[int, int, str, str]:
    """``(answer cell, check cell, wrong source, right source)`` of the exercise notebook."""
    ex = nbformat.read(ROOT / EXERCISES, as_version=4).cells
    sol = nbformat.read(ROOT / SOLUTIONS, as_version=4).cells
    for i, cell in enumerate(ex):
        if (
            cell.cell_type == "code"
            and "# YOUR CODE HERE" in cell.source
            and cell.source.lstrip().startswith("def ")
        ):
            name = re.match(r"\s*def (\w+)", cell.source).group(1)
            check = next(
                j
                for j in range(i + 1, len(ex))
                if ex[j].cell_type == "code" and _CHECK.search(ex[j].source) and name in ex[j].source
            )
            right = next(
                c.source for c in sol if c.cell_type == "code" and re.match(rf"\s*def {name}\(", c.source)
            )
            wrong = cell.source.replace("raise NotImplementedError()", "pass  # forgot to return")
            return i, check, wrong, right
    raise AssertionError(f"no exercise with a function to write in {EXERCISES}")


def wait_for_notebook(page, path: str) -> None:
    """Wait until ``path`` is open in JupyterLab with an idle kernel (opened by a click)."""
    page.evaluate(_OPEN_JS, [path, KERNEL_START_TIMEOUT_MS, False])


def scroll_to_end(page) -> None:
    """Scroll the current notebook to its last cell (JupyterLab renders cells lazily)."""
    page.evaluate("""async () => {
        const nb = window.jupyterapp.shell.currentWidget.content;
        nb.activeCellIndex = nb.widgets.length - 1;
        await nb.scrollToItem(nb.widgets.length - 1);
    }""")


def click_link(page, target: str) -> None:
    """Click the link to ``target`` in the visible notebook's rendered markdown."""
    link = page.locator(f'.jp-NotebookPanel:visible .jp-RenderedMarkdown a[href*="{target}"]').first
    link.scroll_into_view_if_needed()
    link.click()


def run_cell(page, index: int, source: str | None = None) -> None:
    """Optionally replace cell ``index``'s source, then run every cell above it and it."""
    page.evaluate(
        """async ([index, source, timeoutMs]) => {
        const app = window.jupyterapp;
        const nb = app.shell.currentWidget.content;
        if (source !== null) nb.model.cells.get(index).sharedModel.setSource(source);
        nb.activeCellIndex = index;
        if (index > 0) await app.commands.execute('notebook:run-all-above');
        nb.activeCellIndex = index;
        await app.commands.execute('notebook:run-cell');
    }""",
        [index, source, RUN_ALL_TIMEOUT_MS],
    )


def output_of(page, index: int):
    return page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(index).locator(".jp-OutputArea")


@pytest.mark.browser
def test_start_page_section_exercises_wrong_then_right(page, lab_server: LabServer) -> None:
    answer, check, wrong, right = first_checked_exercise()

    # `make lab` lands on the start page: the server's default URL, no path typed by the student.
    page.goto(lab_server.url(""))
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
    wait_for_notebook(page, "START_HERE.ipynb")
    shot(page, "student-1-start-page")

    click_link(page, SECTION)
    wait_for_notebook(page, SECTION)
    scroll_to_end(page)
    shot(page, "student-2-section-end")

    click_link(page, EXERCISES)
    wait_for_notebook(page, EXERCISES)

    run_cell(page, answer, wrong)
    run_cell(page, check)
    expect(output_of(page, check)).to_contain_text("❌", timeout=60_000)
    expect(output_of(page, check)).to_contain_text("return")  # the hint names the mistake
    output_of(page, check).scroll_into_view_if_needed()
    shot(page, "student-3-wrong-answer")

    run_cell(page, answer, right)
    run_cell(page, check)
    expect(output_of(page, check)).to_contain_text("✅ Correct", timeout=60_000)
    expect(output_of(page, check)).not_to_contain_text("❌")
    output_of(page, check).scroll_into_view_if_needed()
    shot(page, "student-4-right-answer")
    assert_no_error_ui(page)
