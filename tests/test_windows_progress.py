"""``cnnbook progress`` on Windows: ending a timed-out notebook, and UTF-8 output under cp1252.

Windows has no ``os.killpg`` or ``signal.SIGKILL``, and a console redirected to a file encodes as
cp1252, which has no ✅ or ❌. These tests run the Windows branch here (``os.name`` mocked, the
POSIX-only ``os.killpg`` removed) and run the command as an instructor would, with
``PYTHONIOENCODING=cp1252`` and the output redirected to a file.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from cnnbook import progress

CHECK = "def check_x(v):\n    print('✅ Correct: fine' if v == 1 else '❌ wrong: expected 1, got ' + repr(v))"


def _notebook(path: Path, *sources: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("## Exercise 1: x"), *map(nbformat.v4.new_code_cell, sources)]
    )
    nbformat.write(nb, path)
    return path


def _gone(pid: int, within: float = 20.0) -> bool:
    """Whether process ``pid`` ends (or is only a zombie awaiting its reaper) within ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Windows branch of the runner, with ``os.killpg`` gone as it is there.

    (``signal.SIGKILL`` stays: this machine's ``Popen.kill`` needs it, as Windows' does not.)
    """
    monkeypatch.setattr(progress, "_on_windows", lambda: True)
    monkeypatch.delattr(os, "killpg")


@pytest.mark.usefixtures("windows")
def test_a_timeout_on_windows_ends_the_kernel_and_the_report_is_made(tmp_path: Path) -> None:
    pid_file = tmp_path / "kernel.pid"
    hang = _notebook(
        tmp_path / "14_99_hang.ipynb",
        f"import os, time\nopen({str(pid_file)!r}, 'w', encoding='utf-8').write(str(os.getpid()))\n"
        "time.sleep(600)",
    )
    report = progress.run_notebook(hang, timeout=30)  # the kernel must start and write its pid first
    assert report.run == "timed out", report
    assert "stopped after 30 s" in report.message
    kernel = int(pid_file.read_text(encoding="utf-8"))
    assert _gone(kernel), f"the notebook's kernel (pid {kernel}) outlived the timeout"


@pytest.mark.usefixtures("windows")
def test_without_psutil_windows_ends_the_tree_with_taskkill(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    real_run = subprocess.run

    def fake_run(cmd, *args, **kwargs):
        if cmd and cmd[0] == "taskkill":
            calls.append(list(cmd))
            raise FileNotFoundError("taskkill")  # not on this machine: the fallback must still stop it
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` raises ImportError
    monkeypatch.setattr(subprocess, "run", fake_run)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **progress._new_group_options(),
    )
    progress._kill_tree(proc)
    assert calls == [["taskkill", "/F", "/T", "/PID", str(proc.pid)]]
    assert proc.returncode is not None, "the runner is still alive"


def test_windows_starts_the_runner_in_a_new_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "_on_windows", lambda: True)
    monkeypatch.setattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200, raising=False)
    assert progress._new_group_options() == {"creationflags": 0x200}
    monkeypatch.setattr(progress, "_on_windows", lambda: False)
    assert progress._new_group_options() == {"start_new_session": True}


def _report() -> list[progress.NotebookReport]:
    return [
        progress.NotebookReport(
            "alice/14_01_x.ipynb",
            "14.1",
            "ok",
            [
                progress.Exercise("Exercise 1", progress.PASSED),
                progress.Exercise("Exercise 2", progress.FAILED, "❌ wrong: expected 1, got 2"),
                progress.Exercise("Exercise 3", progress.NOT_ATTEMPTED, "⏳"),
            ],
        )
    ]


@pytest.mark.parametrize("fmt", [progress.format_table, progress.format_json, progress.format_csv])
def test_a_cp1252_stream_receives_utf8(fmt) -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="cp1252")  # sys.stdout redirected on Windows
    text = fmt(_report())
    with pytest.raises(UnicodeEncodeError):
        text.encode("cp1252")  # what print() would have raised
    progress.write_utf8(text, stream)
    stream.flush()
    assert raw.getvalue().decode("utf-8") == text + "\n"


def test_a_utf8_stream_and_a_stream_without_buffer_receive_text() -> None:
    text = progress.format_table(_report())
    plain = io.StringIO()  # like a notebook's output stream: text only, no binary buffer
    progress.write_utf8(text, plain)
    assert plain.getvalue() == text + "\n"
    raw = io.BytesIO()
    utf8 = io.TextIOWrapper(raw, encoding="utf-8")
    progress.write_utf8(text, utf8)
    assert raw.getvalue().decode("utf-8") == text + "\n"


@pytest.mark.parametrize("fmt", ["", "--json"])
def test_the_command_redirected_under_cp1252_writes_utf8(tmp_path: Path, fmt: str) -> None:
    """``python -m cnnbook progress [--json] > report.txt`` in a cp1252 console."""
    nb = _notebook(tmp_path / "alice" / "14_97_x.ipynb", CHECK, "check_x(2)")
    out = tmp_path / "report.txt"
    with out.open("wb") as f:
        done = subprocess.run(
            [sys.executable, "-m", "cnnbook", "progress", str(nb), *([fmt] if fmt else [])],
            stdout=f,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONIOENCODING="cp1252"),
            timeout=240,
        )
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    text = out.read_bytes().decode("utf-8")
    assert "❌ wrong: expected 1, got 2" in text
    if fmt == "--json":
        (row,) = json.loads(text)["notebooks"]
        assert (row["failed"], row["total"]) == (1, 1)
    else:
        assert "Exercise 1: ❌ wrong" in text


@pytest.mark.parametrize("on_windows", [False, True], ids=["posix", "windows"])
def test_an_interrupt_ends_the_runner_and_its_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_windows: bool
) -> None:
    """Ctrl+C (or the start page's "interrupt kernel") leaves no runner or kernel behind.

    The runner has its own process group, so the interrupt reaches only the waiting process.
    """
    monkeypatch.setattr(progress, "_on_windows", lambda: on_windows)
    pid_file = tmp_path / "kernel.pid"
    hang = _notebook(
        tmp_path / "14_99_hang.ipynb",
        f"import os, time\nopen({str(pid_file)!r}, 'w', encoding='utf-8').write(str(os.getpid()))\n"
        "time.sleep(600)",
    )
    real = subprocess.Popen.communicate
    runners: list[subprocess.Popen] = []

    def interrupted(self, *args, **kwargs):
        if kwargs.get("timeout") == 300 and not runners:  # the wait for the notebook
            runners.append(self)
            deadline = time.monotonic() + 120
            while not pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.2)  # until the kernel runs the cell
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "communicate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        progress.run_notebook(hang, timeout=300)
    (runner,) = runners
    assert runner.returncode is not None, "the runner outlived the interrupt"
    kernel = int(pid_file.read_text(encoding="utf-8"))
    assert _gone(kernel), f"the notebook's kernel (pid {kernel}) outlived the interrupt"
