"""End-to-end: the path a student walks, in JupyterLab started the way ``make lab`` starts it.

The first minutes: JupyterLab opens on the start page with no pop-up (no "get notified about
official Jupyter news?" prompt), a file browser that shows the start page and the notebook folders
and nothing generated, a launcher whose only kernel is ``Python (cnnbook)`` (no Jupytext entries),
and a new notebook gets the cnnbook kernel without asking. Then the path: the student clicks a
section, follows the section's link to its exercises, answers the first exercise wrongly (a
function that forgets to ``return``), runs its check and sees ❌, then answers it correctly (the
worked solution) and sees ✅. Screenshots go to ``build/screenshots/student-*.png``.
"""

from __future__ import annotations

import re
import shutil
import time

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

# What a student sees in the file browser at the repository root (folders first, then files).
STUDENT_VIEW = [
    "cnnbook",
    "exercises",
    "notebooks",
    "solutions",
    "LICENSE",
    "LICENSE-notebooks",
    "README.md",
    "START_HERE.ipynb",
]
NOT_FOR_STUDENTS = [
    "build",
    "cnnbook.egg-info",
    "scripts",
    "benchmarks",
    "tests",
    "conftest.py",
    "constraints.txt",
    "MAINTAINING.md",
    "Makefile",
    "pyproject.toml",
    "__pycache__",
]
NEWS_PROMPT = "official Jupyter news"
SCRATCH = "build/browser-scratch"  # a new notebook goes here (git-ignored, hidden), removed after
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


def bring_to_front(page, path: str) -> str:
    """Activate ``path``'s tab, check that it stays in front for half a second; return its DOM id.

    A link click can hand the focus back to the page it was clicked on after the new tab opened,
    so one ``activateById`` is not enough.
    """
    return page.evaluate(
        """async (p) => {
        const app = window.jupyterapp;
        const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
        const panel = [...app.shell.widgets('main')].find((w) => w.context && w.context.path === p);
        if (!panel) throw new Error(`${p} is not open`);
        let stable = 0;
        for (let i = 0; i < 100 && stable < 5; i++) {
            if (app.shell.currentWidget === panel && panel.isVisible) {
                stable++;
            } else {
                stable = 0;
                app.shell.activateById(panel.id);
            }
            await sleep(100);
        }
        if (stable < 5) throw new Error(`${p} did not stay in front`);
        return panel.id;
    }""",
        path,
    )


def scroll_to_end(page) -> None:
    """Scroll the current notebook to its last cell (JupyterLab renders cells lazily)."""
    page.evaluate("""async () => {
        const nb = window.jupyterapp.shell.currentWidget.content;
        nb.activeCellIndex = nb.widgets.length - 1;
        await nb.scrollToItem(nb.widgets.length - 1);
    }""")


def click_link(page, target: str, last: bool = False, panel: str | None = None) -> None:
    """Click the link to ``target`` in the visible notebook's rendered markdown.

    ``last=True`` clicks the last such link, the one a student who has scrolled to the end of
    a section sees (JupyterLab may no longer render the cells far above it). ``panel``: the DOM
    id of the notebook the link must be in (``None``: any visible notebook).
    """
    if panel:  # in that notebook's DOM, even while JupyterLab re-renders the cells around it
        page.evaluate(
            """([id, target, last]) => {
            const links = [...document.querySelectorAll(`#${CSS.escape(id)} .jp-RenderedMarkdown a`)]
                .filter((a) => (a.getAttribute('href') || '').includes(target));
            if (!links.length) throw new Error(`no link to ${target} in the notebook`);
            const link = last ? links[links.length - 1] : links[0];
            link.scrollIntoView({block: 'center'});
            link.click();
        }""",
            [panel, target, last],
        )
        return
    links = page.locator(f'.jp-NotebookPanel:visible .jp-RenderedMarkdown a[href*="{target}"]')
    link = links.last if last else links.first
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


def no_popups(page) -> list[str]:
    """Texts of any toast notification or dialog on the page (empty when there is none)."""
    return page.evaluate("""() => [...document.querySelectorAll(
        '.Toastify__toast, .jp-Notification-Toast, .jp-Dialog')].map((e) => e.innerText.trim())""")


def file_browser_items(page) -> list[str]:
    """Names listed in the file browser, top to bottom."""
    items = page.locator(".jp-FileBrowser .jp-DirListing-item .jp-DirListing-itemText")
    expect(items.first).to_be_visible(timeout=30_000)
    return [t.strip() for t in items.all_inner_texts()]


_LAUNCHER_JS = """async () => {
    const app = window.jupyterapp;
    await app.commands.execute('launcher:create');
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    for (let i = 0; i < 100 && !document.querySelector('.jp-LauncherCard'); i++) await sleep(100);
    await sleep(500);
    const launcher = [...document.querySelectorAll('.jp-Launcher')].pop();
    return [...launcher.querySelectorAll('.jp-Launcher-section')].map((s) => ({
        title: (s.querySelector('.jp-Launcher-sectionTitle') || {innerText: ''}).innerText.trim(),
        cards: [...s.querySelectorAll('.jp-LauncherCard')].map((c) => c.innerText.trim()),
    }));
}"""

_NEW_NOTEBOOK_JS = """async ([cwd, timeoutMs]) => {
    // File > New > Notebook, as a student does; reports the kernel it gets, or the dialog shown.
    const app = window.jupyterapp;
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const deadline = Date.now() + timeoutMs;
    const dialog = () => {
        const d = document.querySelector('.jp-Dialog');
        return d ? d.innerText.replace(/\\s+/g, ' ').trim() : null;
    };
    let panel = null;
    app.commands.execute('notebook:create-new', {cwd}).then((p) => { panel = p; }, (e) => { panel = e; });
    while (true) {
        if (dialog()) return {path: null, kernel: null, problem: `dialog: ${dialog()}`};
        if (panel instanceof Error) return {path: null, kernel: null, problem: String(panel)};
        const kernel = panel?.sessionContext?.session?.kernel;
        if (kernel && kernel.status === 'idle') {
            app.shell.activateById(panel.id);
            return {path: panel.context.path, kernel: kernel.name, problem: null};
        }
        if (Date.now() > deadline) {
            return {path: panel?.context?.path ?? null, kernel: kernel?.name ?? null,
                    problem: `no idle kernel after ${timeoutMs} ms (status ${kernel?.status})`};
        }
        await sleep(200);
    }
}"""

# A small figure displayed with alt text in its output metadata.
_ALT_CELL = """import base64, io
import matplotlib.pyplot as plt
from IPython.display import display
fig = plt.figure(figsize=(1, 1))
buf = io.BytesIO()
fig.savefig(buf, format="png")
plt.close(fig)
png = base64.b64encode(buf.getvalue()).decode()
display({"image/png": png}, raw=True, metadata={"image/png": {"alt": "an empty white square"}})
"""


@pytest.mark.browser
def test_first_minutes(page, lab_server: LabServer) -> None:
    # `make lab` lands on the start page: the server's default URL, no path typed by the student.
    page.goto(lab_server.url(""))
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
    wait_for_notebook(page, "START_HERE.ipynb")
    # JupyterLab asks its news question a moment after start-up; give it time to appear.
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        assert not no_popups(page), f"a pop-up greets the student: {no_popups(page)}"
        time.sleep(0.5)
    assert NEWS_PROMPT not in page.inner_text("body")

    items = file_browser_items(page)
    shot(page, "student-0-first-screen")
    assert not set(items) & set(NOT_FOR_STUDENTS), f"file browser shows {set(items) & set(NOT_FOR_STUDENTS)}"
    assert not [i for i in items if i.endswith(".egg-info")], items
    assert items == STUDENT_VIEW, f"the file browser lists {items}; a student should see {STUDENT_VIEW}"
    start = page.locator(".jp-FileBrowser .jp-DirListing-item", has_text="START_HERE.ipynb")
    assert start.is_visible()
    box = start.bounding_box()
    assert box is not None
    assert box["y"] + box["height"] <= page.viewport_size["height"], "start page is off screen"

    sections = page.evaluate(_LAUNCHER_JS)
    shot(page, "student-0-launcher")
    cards = {s["title"]: s["cards"] for s in sections}
    everything = [c for s in sections for c in s["cards"]]
    for kind in ("Notebook", "Console"):
        assert cards.get(kind) == ["Python (cnnbook)"], f"launcher {kind} entries: {cards.get(kind)}"
    unwanted = [c for c in everything if re.search(r"ipykernel|Python 3|Percent|MyST|Jupytext", c, re.I)]
    assert not unwanted, f"launcher offers {unwanted} (all entries: {cards})"

    (ROOT / SCRATCH).mkdir(parents=True, exist_ok=True)
    try:
        new = page.evaluate(_NEW_NOTEBOOK_JS, [SCRATCH, KERNEL_START_TIMEOUT_MS])
        assert new["problem"] is None, f"creating a notebook: {new}"
        assert new["kernel"] == "cnnbook", f"a new notebook got {new}"
        # Text alternatives: does JupyterLab put an image output's "alt" metadata on the <img>?
        run_cell(page, 0, _ALT_CELL)
        img = output_of(page, 0).locator("img")
        expect(img).to_have_count(1, timeout=60_000)
        shot(page, "student-0-new-notebook")
        alt = img.get_attribute("alt")
        # JupyterLab 4 (checked on 4.6) ignores it: the caption next to each figure is the text
        # alternative. When this fails, JupyterLab has started to use it: give figures alt metadata.
        assert alt is None, f"JupyterLab now shows image alt text ({alt!r}): use it for the figures"
        assert_no_error_ui(page)
    finally:
        lab_server.shutdown_sessions()
        shutil.rmtree(ROOT / SCRATCH, ignore_errors=True)


@pytest.mark.browser
def test_start_page_section_exercises_wrong_then_right(page, lab_server: LabServer) -> None:
    answer, check, wrong, right = first_checked_exercise()

    # `make lab` lands on the start page: the server's default URL, no path typed by the student.
    page.goto(lab_server.url(""))
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
    wait_for_notebook(page, "START_HERE.ipynb")
    assert not no_popups(page), f"a pop-up greets the student: {no_popups(page)}"
    shot(page, "student-1-start-page")

    click_link(page, SECTION)
    wait_for_notebook(page, SECTION)
    # the section's tab in front (a link click may hand the focus back to the start page)
    section_panel = bring_to_front(page, SECTION)
    scroll_to_end(page)
    shot(page, "student-2-section-end")

    # the exercises link in the section's own "Next" cell (the start page links there too)
    click_link(page, EXERCISES, last=True, panel=section_panel)
    wait_for_notebook(page, EXERCISES)

    run_cell(page, answer, wrong)
    run_cell(page, check)
    expect(output_of(page, check)).to_contain_text("❌", timeout=60_000)
    expect(output_of(page, check)).to_contain_text("return")  # the hint names the mistake
    # the student reads the hint, not a red traceback into cnnbook/checks
    expect(output_of(page, check)).not_to_contain_text("Traceback")
    output_of(page, check).scroll_into_view_if_needed()
    shot(page, "student-3-wrong-answer")

    run_cell(page, answer, right)
    run_cell(page, check)
    expect(output_of(page, check)).to_contain_text("✅ Correct", timeout=60_000)
    expect(output_of(page, check)).not_to_contain_text("❌")
    output_of(page, check).scroll_into_view_if_needed()
    shot(page, "student-4-right-answer")
    assert_no_error_ui(page)
