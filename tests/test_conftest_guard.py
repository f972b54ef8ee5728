"""conftest.py's nbval guard, driven directly: it explains a flood also when nbval timed out,
and says it is off when nbval's internals no longer match."""

from __future__ import annotations

import pytest

import conftest


class IPyNbCell:  # the class name nbval uses
    def __init__(self, parent, name: str = "Cell 3") -> None:
        self.parent, self.name = parent, name
        self.nodeid = "notebooks/x.ipynb::" + name


class Notebook:
    def get_kernel_message(self, *args, **kwargs) -> dict:
        return {"msg_type": "stream"}


def _drive(received: int, error: Exception | None):
    item = IPyNbCell(Notebook())
    gen = conftest.pytest_runtest_call(item)
    next(gen)
    for _ in range(received):
        item.parent.get_kernel_message(timeout=1)
    if error is None:
        with pytest.raises(StopIteration):
            gen.send(None)
    else:
        gen.throw(error)


def test_flood_then_nbval_timeout_still_explains() -> None:
    with pytest.raises(
        AssertionError,
        match=r"Cell 3 sent 900 output messages.*nbval then "
        r"failed: Timeout waiting",
    ):
        _drive(900, RuntimeError("Timeout waiting for IOPub output"))


def test_quiet_cell_errors_pass_through_unchanged() -> None:
    with pytest.raises(RuntimeError, match="^boom$"):
        _drive(10, RuntimeError("boom"))
    _drive(10, None)  # a quiet passing cell passes


def test_flood_without_error_fails_with_the_explanation() -> None:
    with pytest.raises(AssertionError, match="reuse one bar, or pass progress=False"):
        _drive(conftest.MAX_IOPUB_MESSAGES + 1, None)


def test_guard_says_it_is_off_when_nbval_changes() -> None:
    class RenamedCell:  # what a future nbval might call its items
        nodeid = "notebooks/x.ipynb::Cell 0"
        parent = object()

    with pytest.warns(pytest.PytestConfigWarning, match="nbval guard in conftest.py is OFF"):
        conftest.pytest_collection_modifyitems([RenamedCell()])
