"""End-to-end: the notebooks in a real JupyterLab in headless Chromium (sections 14.2 and 14.3).

A kernel-only test cannot see a widget that shows "Error displaying widget" or ignores a drag;
these tests open the notebooks in JupyterLab's own UI, run all cells, move sliders with the
keyboard and the mouse, and check the displayed numbers against a real ``nn.Conv2d``.
Screenshots of the widget notebooks go to ``build/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from .conftest import NOTEBOOK_DIR, ROOT, SCREENSHOTS, LabServer, open_lab

try:
    from playwright.sync_api import expect
except ImportError:  # the fixtures skip (or fail in CI) with the reason
    expect = None

CONV_NOTEBOOK = f"{NOTEBOOK_DIR}/14_02_stride_padding_dilation.ipynb"
RF_NOTEBOOK = f"{NOTEBOOK_DIR}/14_03_receptive_fields.ipynb"
KERNEL_START_TIMEOUT_MS = 120_000
RUN_ALL_TIMEOUT_MS = 240_000
WIDGET_UPDATE_TIMEOUT_MS = 30_000


def _all_notebooks() -> list[str]:
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / NOTEBOOK_DIR).glob("*.ipynb"))


def _needs(path: str) -> None:
    if not (ROOT / path).is_file():
        pytest.skip(f"{path} does not exist yet")


# ------------------------------------------------------------------------ references (torch)


def conv2d_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int | None:
    """Side of a real ``nn.Conv2d``'s output on a ``(1, 1, size, size)`` input; ``None`` if refused."""
    conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation)
    try:
        with torch.no_grad():
            return int(conv(torch.zeros(1, 1, size, size)).shape[-1])
    except RuntimeError:
        return None


def conv2d_receptive_field(layers: list[tuple[int, int, int]]) -> int:
    """Receptive field of one output unit of a real ``nn.Conv2d`` stack, measured by gradient.

    Args:
        layers: ``(kernel, stride, dilation)`` per layer, input side first.

    Returns:
        The width in input pixels of the non-zero gradient of one central output unit.
    """
    bound, jump = 1, 1
    for k, s, d in layers:
        bound += (k - 1) * d * jump
        jump *= s
    n = 2 * bound + 2 * jump + 1
    net = nn.Sequential(*[nn.Conv2d(1, 1, k, s, dilation=d) for k, s, d in layers])
    for conv in net:
        nn.init.ones_(conv.weight)
    x = torch.zeros(1, 1, n, n, requires_grad=True)
    y = net(x)
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
    return int(cols.max() - cols.min() + 1)


def test_references_agree_with_known_values() -> None:
    # Pure torch, no browser: guards the references the browser checks rely on.
    assert conv2d_output_size(9, 3, 2, 0, 1) == 4
    assert conv2d_output_size(3, 5, 1, 0, 1) is None
    assert conv2d_receptive_field([(3, 1, 1)] * 3) == 7
    assert conv2d_receptive_field([(3, 2, 1), (3, 1, 1), (3, 1, 2)]) == 3 + 2 * 2 + 4 * 2


# --------------------------------------------------------------------------- driving the UI


# Shared by the page scripts: sleeping, a deadline on any promise, and failing fast on a dialog.
_JS_HELPERS = """
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const dialogText = () => {
        const d = document.querySelector('.jp-Dialog');
        return d ? d.innerText.replace(/\\s+/g, ' ').trim() : null;
    };
    // Wait for a promise, but give up at the deadline or as soon as a dialog appears.
    const within = async (promise, deadline, what, dialogsFail = true) => {
        let done = false;
        const watch = (async () => {
            while (!done) {
                if (dialogsFail && dialogText()) throw new Error(`${what}: dialog: ${dialogText()}`);
                if (Date.now() > deadline) throw new Error(`${what}: timed out`);
                await sleep(200);
            }
        })();
        try {
            return await Promise.race([promise, watch]);
        } finally {
            done = true;
            watch.catch(() => {});
        }
    };
"""

_OPEN_JS = (
    """async ([path, timeoutMs, viaCommand]) => {"""
    + _JS_HELPERS
    + """
    const app = window.jupyterapp;
    const deadline = Date.now() + timeoutMs;
    let panel = viaCommand
        ? await within(app.commands.execute('docmanager:open', {path}), deadline, `open ${path}`)
        : null;
    while (!panel) {
        for (const w of app.shell.widgets('main')) {
            if (w.context && w.context.path === path && w.content && w.sessionContext) panel = w;
        }
        if (!panel) {
            if (dialogText()) throw new Error(`dialog while opening ${path}: ${dialogText()}`);
            if (Date.now() > deadline) throw new Error(`${path} did not open`);
            await sleep(100);
        }
    }
    await within(panel.context.ready, deadline, `load ${path}`);
    await within(panel.sessionContext.ready, deadline, `session for ${path}`);
    app.shell.activateById(panel.id);
    while (true) {
        const kernel = panel.sessionContext.session?.kernel;
        if (kernel && kernel.status === 'idle' && kernel.connectionStatus === 'connected') {
            return kernel.name;
        }
        if (dialogText()) throw new Error(`dialog while opening ${path}: ${dialogText()}`);
        if (Date.now() > deadline) {
            throw new Error(`kernel for ${path} not idle: ${kernel ? kernel.status : 'none'}`);
        }
        await sleep(200);
    }
}"""
)


def open_notebook(page, lab: LabServer, path: str) -> str:
    """Load JupyterLab on ``path`` in a fresh workspace and wait for an idle kernel.

    Returns:
        The name of the kernel JupyterLab started for the notebook.
    """
    open_lab(page, lab, path)
    return page.evaluate(_OPEN_JS, [path, KERNEL_START_TIMEOUT_MS, False])


def open_in_lab(page, path: str) -> str:
    """Open ``path`` in the JupyterLab already loaded in ``page``; wait for an idle kernel."""
    return page.evaluate(_OPEN_JS, [path, KERNEL_START_TIMEOUT_MS, True])


def close_notebook(page, path: str) -> None:
    """Shut down the notebook's kernel and close its tab (no save)."""
    page.evaluate(
        """async ([path, timeoutMs]) => {"""
        + _JS_HELPERS
        + """
        for (const w of [...window.jupyterapp.shell.widgets('main')]) {
            if (w.context && w.context.path === path) {
                await within(w.sessionContext.shutdown(), Date.now() + timeoutMs, `close ${path}`);
                w.dispose();
            }
        }
    }""",
        [path, 30_000],
    )


def run_all_cells(page) -> list[str]:
    """Run every cell through JupyterLab's ``notebook:run-all-cells`` command.

    Returns:
        One ``"cell N: ename: evalue"`` line per error output (empty when all cells ran cleanly).
    """
    page.set_default_timeout(RUN_ALL_TIMEOUT_MS)
    try:
        return page.evaluate(
            """async (timeoutMs) => {"""
            + _JS_HELPERS
            + """
                const app = window.jupyterapp;
                const panel = app.shell.currentWidget;
                const ok = await within(app.commands.execute('notebook:run-all-cells'),
                                        Date.now() + timeoutMs, 'run all cells');
                const errors = [];
                const cells = panel.content.model.cells;
                for (let i = 0; i < cells.length; i++) {
                    const cell = cells.get(i);
                    if (cell.type !== 'code') continue;
                    for (let j = 0; j < cell.outputs.length; j++) {
                        const out = cell.outputs.get(j).toJSON();
                        if (out.output_type === 'error') {
                            errors.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
                        }
                    }
                }
                if (!ok && errors.length === 0) errors.push('run-all-cells reported failure');
                return errors;
            }""",
            RUN_ALL_TIMEOUT_MS,
        )
    finally:
        page.set_default_timeout(30_000)


def assert_no_error_ui(page) -> None:
    """No error dialog, no widget error, no uncaught page error."""
    dialogs = page.locator(".jp-Dialog")
    assert dialogs.count() == 0, f"dialog shown: {dialogs.first.inner_text()!r}"
    errors = page.get_by_text("Error displaying widget").all_inner_texts()
    errors += page.locator(".jupyter-widgets-error-widget").all_inner_texts()
    assert not errors, f"widget error shown: {errors}"
    assert not page.console_errors, f"uncaught errors in the page: {page.console_errors}"


def slider(scope, description: str):
    """The ipywidgets slider whose description label is exactly ``description``."""
    label = scope.page.locator(".widget-label", has_text=re.compile(rf"^\s*{re.escape(description)}\s*$"))
    found = scope.locator(".widget-slider").filter(has=label)
    assert found.count() == 1, f"expected one slider labelled {description!r}, found {found.count()}"
    return found


_HIDDEN_JS = """(e) => {
    const name = (n) => n ? `${n.tagName.toLowerCase()}.${[...n.classList].join('.')}` : 'nothing';
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return 'it has zero size';
    for (let a = e.parentElement; a && !a.classList.contains('jp-OutputArea-output');
         a = a.parentElement) {
        const s = getComputedStyle(a);
        if (s.overflowX === 'visible' && s.overflowY === 'visible') continue;
        const b = a.getBoundingClientRect();
        if (r.left < b.left - 1 || r.right > b.right + 1 || r.top < b.top - 1 || r.bottom > b.bottom + 1) {
            return `it (${Math.round(r.width)} px wide) is clipped by ${name(a)} ` +
                   `(${Math.round(b.width)} px wide, overflow ${s.overflowX})`;
        }
    }
    const top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
    return top && e.contains(top) ? '' : `the point at its centre shows ${name(top)}`;
}"""


def assert_slider_usable(out, sl, description: str) -> None:
    """A student sees the whole slider row, its handle and its value: nothing clipped or covered.

    Only the page scrolls (to bring the output into view); inner boxes are left as they are, so
    a slider that fits only after scrolling a too-narrow box sideways counts as hidden.
    """
    out.evaluate("(e) => e.scrollIntoView({block: 'start'})")
    for part, el in (
        ("row", sl),
        ("handle", sl.locator(".noUi-handle")),
        ("value", sl.locator(".widget-readout")),
    ):
        hidden = el.evaluate(_HIDDEN_JS)
        assert not hidden, f"{part} of slider {description!r} is not fully visible: {hidden}"


def slider_value(sl) -> int:
    return int(sl.locator(".widget-readout").inner_text().strip())


def slider_range(sl) -> tuple[int, int]:
    handle = sl.locator(".noUi-handle")
    lo, hi = (handle.get_attribute(f"aria-value{end}") for end in ("min", "max"))
    return int(float(lo)), int(float(hi))


def press_to(sl, target: int) -> None:
    """Move a slider to ``target`` with the arrow keys on its focused handle."""
    handle = sl.locator(".noUi-handle")
    handle.focus()
    now = slider_value(sl)
    key = "ArrowRight" if target > now else "ArrowLeft"
    for _ in range(abs(target - now)):
        handle.press(key)
    _wait_readout(sl, target)


def drag_to(sl, target: int) -> None:
    """Move a slider to ``target`` by dragging its handle with the mouse."""
    lo, hi = slider_range(sl)
    sl.scroll_into_view_if_needed()
    track = sl.locator(".noUi-target").bounding_box()
    handle = sl.locator(".noUi-handle").bounding_box()
    page = sl.page
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    x = track["x"] + track["width"] * (target - lo) / (hi - lo)
    y = handle["y"] + handle["height"] / 2
    page.mouse.move(x, y, steps=8)
    page.mouse.up()
    _wait_readout(sl, target)


def _wait_readout(sl, target: int) -> None:
    expect(sl.locator(".widget-readout")).to_have_text(re.compile(rf"^\s*{target}\s*$"))


def widget_output(page, summary_class: str):
    """The output area holding the explorer whose summary has CSS class ``summary_class``."""
    summary = page.locator(f".{summary_class}")
    expect(summary.first).to_be_visible(timeout=WIDGET_UPDATE_TIMEOUT_MS)
    out = page.locator(".jp-OutputArea-output").filter(has=page.locator(f".{summary_class}")).last
    out.scroll_into_view_if_needed()
    return out


def run_explorer_notebook(page, lab: LabServer, path: str, summary_class: str):
    """Open ``path``, run all its cells, and return the explorer's output area and summary."""
    _needs(path)
    assert open_notebook(page, lab, path) == "cnnbook"
    assert run_all_cells(page) == []
    out = widget_output(page, summary_class)
    assert_no_error_ui(page)
    return out, out.locator(f".{summary_class}")


def image_src(scope) -> str:
    img = scope.locator(".widget-image").first
    src = img.get_attribute("src")
    assert src, "the drawing has no image source"
    return src


def expect_new_image(scope, before: str) -> str:
    expect(scope.locator(".widget-image").first).not_to_have_attribute(
        "src", before, timeout=WIDGET_UPDATE_TIMEOUT_MS
    )
    return image_src(scope)


def shot(target, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    target.screenshot(path=str(path))
    return path


def _candidates(sl) -> list[int]:
    """The slider's other values, nearest first (upwards before downwards)."""
    lo, hi = slider_range(sl)
    now = slider_value(sl)
    return [*range(now + 1, hi + 1), *range(now - 1, lo - 1, -1)]


def plan_two_moves(first: list[int], second: list[int], result: Callable[[int | None, int | None], object]):
    """Targets ``(a, b)`` for two sliders such that each move changes a valid displayed result.

    Args:
        first: Candidate values of the slider moved first, preferred first.
        second: Candidate values of the slider moved second.
        result: ``result(a, b)`` is what the widget should show with the first slider at ``a`` and the
            second at ``b`` (``None`` for a slider means "unchanged"); ``None`` means "impossible".
    """
    before = result(None, None)
    for a in first:
        middle = result(a, None)
        if middle is None or middle == before:
            continue
        for b in second:
            after = result(a, b)
            if after is not None and after != middle:
                return a, b
    raise AssertionError(f"no pair of slider moves changes the result twice (from {before})")


# -------------------------------------------------------------------------------- the tests


@pytest.mark.browser
def test_conv_explorer_renders_and_responds(page, lab_server: LabServer) -> None:
    out, summary = run_explorer_notebook(page, lab_server, CONV_NOTEBOOK, "cnnbook-conv-summary")
    names = ["input size", "kernel", "stride", "padding", "dilation"]
    sliders = {n: slider(out, n) for n in names}

    def settings() -> dict[str, int]:
        return {n: slider_value(sl) for n, sl in sliders.items()}

    def check_summary(s: dict[str, int]) -> None:
        expected = conv2d_output_size(s["input size"], s["kernel"], s["stride"], s["padding"], s["dilation"])
        text = f"Output size: {expected} x {expected}" if expected is not None else "Impossible setting"
        expect(summary).to_contain_text(text, timeout=WIDGET_UPDATE_TIMEOUT_MS)
        if expected is not None:
            expect(summary).to_contain_text(f"nn.Conv2d gives {expected} (agrees)")
        for n, sl in sliders.items():
            assert_slider_usable(out, sl, n)

    shot(page, "14_02_stride_padding_dilation-page")
    shot(out, "14_02_conv_explorer-initial")
    check_summary(settings())
    src = image_src(out)

    # Dilation with a mouse drag, then stride with the keyboard, to the nearest values that each
    # change the output size to one nn.Conv2d accepts (so the text and the drawing must change).
    s = settings()

    def size_with(dilation: int | None, stride: int | None) -> int | None:
        return conv2d_output_size(
            s["input size"], s["kernel"], stride or s["stride"], s["padding"], dilation or s["dilation"]
        )

    dilation, stride = plan_two_moves(
        _candidates(sliders["dilation"]), _candidates(sliders["stride"]), size_with
    )
    for name, move, target in (("dilation", drag_to, dilation), ("stride", press_to, stride)):
        move(sliders[name], target)
        check_summary(settings())
        src = expect_new_image(out, src)
    shot(out, "14_02_conv_explorer-after")
    assert_no_error_ui(page)


@pytest.mark.browser
def test_receptive_field_explorer_renders_and_responds(page, lab_server: LabServer) -> None:
    out, summary = run_explorer_notebook(page, lab_server, RF_NOTEBOOK, "cnnbook-rf-summary")

    def layers() -> list[tuple[int, int, int]]:
        depth = slider_value(slider(out, "layers"))
        return [
            tuple(slider_value(slider(out, f"L{i} {p}")) for p in ("kernel", "stride", "dilation"))
            for i in range(1, depth + 1)
        ]

    def check_summary() -> None:
        stack = layers()
        expected = conv2d_receptive_field(stack)
        expect(summary).to_contain_text(f"Receptive field: {expected} px", timeout=WIDGET_UPDATE_TIMEOUT_MS)
        expect(summary).to_contain_text("agrees")
        expect(summary).not_to_contain_text("DISAGREES")
        names = ["layers"] + [
            f"L{i} {p}" for i in range(1, len(stack) + 1) for p in ("kernel", "stride", "dilation")
        ]
        for n in names:
            assert_slider_usable(out, slider(out, n), n)

    shot(page, "14_03_receptive_fields-page")
    shot(out, "14_03_rf_explorer-initial")
    check_summary()
    src = image_src(out)

    # The first layer's stride with the keyboard, then the top layer's dilation with a mouse drag,
    # to the nearest values that each change the receptive field.
    stack = [list(spec) for spec in layers()]
    top = len(stack)
    first, second = slider(out, "L1 stride"), slider(out, f"L{top} dilation")

    def rf_with(stride: int | None, dilation: int | None) -> int:
        changed = [list(spec) for spec in stack]
        changed[0][1] = stride or changed[0][1]
        changed[-1][2] = dilation or changed[-1][2]
        return conv2d_receptive_field([tuple(spec) for spec in changed])

    stride, dilation = plan_two_moves(_candidates(first), _candidates(second), rf_with)
    for sl, move, target in ((first, press_to, stride), (second, drag_to, dilation)):
        move(sl, target)
        check_summary()
        src = expect_new_image(out, src)
    shot(out, "14_03_rf_explorer-after")
    assert_no_error_ui(page)


@pytest.mark.browser
@pytest.mark.parametrize(
    "path",
    _all_notebooks()
    or [pytest.param(None, marks=pytest.mark.skip(reason=f"no notebooks in {NOTEBOOK_DIR}/ yet"))],
)
def test_notebook_opens_without_error(lab_page, path: str) -> None:
    assert open_in_lab(lab_page, path) == "cnnbook"
    n_cells = len(json.loads((ROOT / path).read_text(encoding="utf-8"))["cells"])
    # long notebooks render their cells progressively: allow a slow, shared CPU time to finish
    expect(lab_page.locator(".jp-NotebookPanel:visible .jp-Cell")).to_have_count(n_cells, timeout=60_000)
    assert_no_error_ui(lab_page)
    close_notebook(lab_page, path)
