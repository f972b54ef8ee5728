"""Repository-wide pytest hooks for the notebook runs (nbval).

* Per-notebook execution times, printed at the end of a run.
* nbval waits only 5 s (hard-coded) for each output message after a cell's reply; a loaded CI
  machine can need longer, so notebook cells get :data:`OUTPUT_TIMEOUT_S` instead.
* A cell that sends more than :data:`MAX_IOPUB_MESSAGES` output messages fails with a clear
  message. The kernel publishes on a ZeroMQ socket that drops messages past its high-water mark
  (1,000 by default) while nbval is still waiting for the cell to finish; when the final "idle"
  status is among those dropped, nbval times out at random. Widget progress bars created in a
  loop are the usual cause. Progress bars also refresh every :data:`TQDM_MININTERVAL_S` at most
  under test (tqdm reads ``TQDM_MININTERVAL``; the kernels inherit it), so a slow machine does
  not multiply their messages. The explanation is given also when the flood made nbval time
  out, and a run whose nbval no longer has the internals this relies on says the guard is off.
* ``@pytest.mark.pretend_device("mps")`` (or ``"cuda", capability=(7, 5)``) runs a test on the
  device stand-in of ``tests/device_standin.py``: tensors left on the CPU beside device tensors,
  and float64 on the training device (the "MPS rules"), raise as on the real hardware. The
  fixture ``pretend_device`` is the active stand-in (``None`` for unmarked tests).
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict

import pytest

OUTPUT_TIMEOUT_S = 60
MAX_IOPUB_MESSAGES = 800
TQDM_MININTERVAL_S = 1.0

os.environ.setdefault("TQDM_MININTERVAL", str(TQDM_MININTERVAL_S))

_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)
_NOTEBOOK_FAILED: set[str] = set()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "pretend_device(kind, capability=(8, 0)): run on the device stand-in (tests/device_standin.py); "
        "device mixes and float64 on the device raise",
    )


@pytest.fixture(autouse=True)
def pretend_device(request: pytest.FixtureRequest):
    """The device stand-in for tests marked ``pretend_device`` (``None`` otherwise)."""
    marker = request.node.get_closest_marker("pretend_device")
    if marker is None:
        yield None
        return
    from device_standin import PretendAccelerator  # tests/ is on sys.path for its tests

    with PretendAccelerator(*marker.args, **marker.kwargs) as accelerator:
        yield accelerator


def _is_nbval_cell(item: pytest.Item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item.parent, "get_kernel_message")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    cells = [item for item in items if _is_nbval_cell(item)]
    notebook_items = [item for item in items if item.nodeid.split("::", 1)[0].endswith(".ipynb")]
    if notebook_items and not cells:
        warnings.warn(
            pytest.PytestConfigWarning(
                "the nbval guard in conftest.py is OFF: this nbval has no IPyNbCell with "
                "get_kernel_message (its internals changed), so cells keep nbval's 5 s output wait "
                "and floods of output messages are not explained; update conftest.py"
            ),
            stacklevel=1,
        )
    if cells and not hasattr(cells[0], "output_timeout"):
        warnings.warn(
            pytest.PytestConfigWarning(
                "this nbval has no IPyNbCell.output_timeout; conftest.py cannot lengthen its wait "
                "for cell output"
            ),
            stacklevel=1,
        )
    for item in cells:
        item.output_timeout = OUTPUT_TIMEOUT_S


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    if not _is_nbval_cell(item):
        return (yield)
    notebook = item.parent
    receive = notebook.get_kernel_message
    received = 0

    def counting(*args, **kwargs):
        nonlocal received
        msg = receive(*args, **kwargs)
        received += kwargs.get("stream", "iopub") == "iopub"
        return msg

    notebook.get_kernel_message = counting

    def explanation() -> str:
        return (
            f"{item.name} sent {received} output messages (limit {MAX_IOPUB_MESSAGES}); past "
            "about 1,000 the kernel drops messages and nbval fails at random. Widget progress "
            "bars created in a loop are the usual cause: reuse one bar, or pass "
            "progress=False."
        )

    try:
        result = yield
    except Exception as exc:  # e.g. nbval's timeout after the kernel dropped the "idle" message
        if received > MAX_IOPUB_MESSAGES:
            raise AssertionError(f"{explanation()} (nbval then failed: {exc})") from exc
        raise
    finally:
        del notebook.get_kernel_message  # the class's method again
    if received > MAX_IOPUB_MESSAGES:
        raise AssertionError(explanation())
    return result


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    if not path.endswith(".ipynb"):
        return
    _NOTEBOOK_SECONDS[path] += report.duration
    if report.failed:
        _NOTEBOOK_FAILED.add(path)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _NOTEBOOK_SECONDS:
        return
    tr = terminalreporter
    tr.write_sep("=", "notebook execution times")
    total = 0.0
    for path, secs in sorted(_NOTEBOOK_SECONDS.items()):
        total += secs
        flag = "  FAILED" if path in _NOTEBOOK_FAILED else ""
        tr.write_line(f"{secs:8.1f} s  {path}{flag}")
    tr.write_line(f"{total:8.1f} s  total for {len(_NOTEBOOK_SECONDS)} notebooks")
