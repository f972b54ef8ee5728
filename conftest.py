"""Repository-wide pytest hooks: per-notebook execution times printed at the end of a run."""

from __future__ import annotations

from collections import defaultdict

import pytest

_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)
_NOTEBOOK_FAILED: set[str] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    if not path.endswith(".ipynb"):
        return
    _NOTEBOOK_SECONDS[path] += report.duration
    if report.failed:
        _NOTEBOOK_FAILED.add(path)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
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
