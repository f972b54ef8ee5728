"""Exercise progress for a student or a class (every section's exercise notebooks).

``python -m cnnbook progress [NOTEBOOKS...]`` runs exercise notebooks and reports, per section,
how many exercises pass, fail or are not attempted yet. It reads each notebook and executes an
in-memory copy in a fresh kernel of the current environment, so the student's files are never
changed. Each notebook runs in its own process with a time limit: a notebook that hangs or
crashes its kernel is reported as such, and the others still run.

An *exercise* is the part of a notebook under a ``## Exercise N ...`` heading. Its verdict comes
from the check cells in it (cells that call a ``check_...`` function), which print one line:
``✅`` (passed), ``❌`` (failed) or ``⏳`` (the answer is still ``raise NotImplementedError()``).

The report is a table, ``--json`` or ``--csv`` (one row per folder and exercise, for a class
spreadsheet), always written as UTF-8 whatever the console's or the redirect's encoding. The
same code runs on Windows, macOS and Linux (a timed-out notebook's process tree is ended with
a process group on POSIX and by walking the tree on Windows).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parents[1]
PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"
_HEADING = re.compile(r"^#{1,3}\s*Exercise\s+(\d+[a-z]?)\b[^\n]*", re.IGNORECASE | re.MULTILINE)
_CHECK_CALL = re.compile(r"(?<!def )\bcheck_\w+\s*\(")
_SECTION = re.compile(r"(\d\d)_(\d\d)_")


@dataclass
class Exercise:
    """Verdict for one exercise.

    Attributes:
        title: The exercise's heading, without the ``#`` marks.
        status: ``"passed"``, ``"failed"`` or ``"not attempted"``.
        detail: For a failure, the check's first line or the error that stopped it.
    """

    title: str
    status: str
    detail: str = ""


@dataclass
class NotebookReport:
    """Result of running one exercise notebook.

    Attributes:
        notebook: The notebook's path, as given.
        section: Its section number (``"14.4"``), from the file name.
        run: ``"ok"``, ``"timed out"``, ``"crashed"`` or ``"unreadable"``.
        exercises: One entry per checked exercise (empty unless ``run`` is ``"ok"``).
        message: What went wrong when ``run`` is not ``"ok"``.
        seconds: Wall time of the run.
    """

    notebook: str
    section: str
    run: str
    exercises: list[Exercise] = field(default_factory=list)
    message: str = ""
    seconds: float = 0.0

    def count(self, status: str) -> int:
        """Number of exercises with ``status``."""
        return sum(e.status == status for e in self.exercises)


def section_of(path: str | Path) -> str:
    """``"14.4"`` for ``.../14_04_pooling.ipynb``; ``"?"`` when the name has no section."""
    m = _SECTION.search(Path(path).name)
    return f"{int(m.group(1))}.{int(m.group(2))}" if m else "?"


def _text_outputs(cell: dict) -> tuple[str, list[dict]]:
    text, errors = [], []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            text.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            text.append(out.get("data", {}).get("text/plain", ""))
        elif out.get("output_type") == "error":
            errors.append(out)
    return "".join(text), errors


def grade_cells(cells: Sequence[dict]) -> list[Exercise]:
    """Verdicts for the exercises of an executed notebook.

    Args:
        cells: The notebook's cells (dicts in nbformat 4 layout) with their outputs.

    Returns:
        One :class:`Exercise` per ``## Exercise`` heading whose part holds at least one check.
    """
    exercises: list[tuple[str, list[dict]]] = []
    for cell in cells:
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if cell.get("cell_type") == "markdown":
            m = _HEADING.search(source)
            if m:
                exercises.append((m.group(0).lstrip("# ").strip(), []))
        elif cell.get("cell_type") == "code" and exercises:
            exercises[-1][1].append(cell)
    verdicts = []
    for title, code_cells in exercises:
        checks = [
            c
            for c in code_cells
            if _CHECK_CALL.search("".join(c["source"]) if isinstance(c["source"], list) else c["source"])
        ]
        if not checks:
            continue
        verdicts.append(_grade(title, code_cells, checks, cells))
    return verdicts


def _grade(
    title: str, code_cells: list[dict], checks: list[dict], all_cells: Sequence[dict] = ()
) -> Exercise:
    results: list[str | tuple[str, dict]] = []  # a status, or ("error", error output)
    for cell in checks:
        text, errors = _text_outputs(cell)
        if "❌" in text:
            line = next(ln for ln in text.splitlines() if "❌" in ln)
            return Exercise(title, FAILED, line.strip())
        if "⏳" in text:
            results.append(NOT_ATTEMPTED)
        elif "✅" in text and not errors:
            results.append(PASSED)
        elif errors:
            results.append(("error", errors[0]))
        else:
            results.append(NOT_ATTEMPTED)  # the check never ran (e.g. the kernel stopped before)
    if all(r == PASSED for r in results):
        return Exercise(title, PASSED)
    # An error in a check cell means "not attempted" when it comes from an answer that is still
    # the placeholder: NotImplementedError in this exercise, or a name whose defining cell (here
    # or in an earlier exercise) stopped at the placeholder. Any other error is a failure.
    placeholder = any(
        err.get("ename") == "NotImplementedError" for c in code_cells for err in _text_outputs(c)[1]
    )
    for r in results:
        if isinstance(r, tuple):
            err = r[1]
            if err.get("ename") == "NotImplementedError" or (
                err.get("ename") == "NameError"
                and (placeholder or _defined_by_placeholder(err.get("evalue", ""), all_cells))
            ):
                continue
            return Exercise(title, FAILED, f"{err.get('ename')}: {err.get('evalue', '')}".strip())
    return Exercise(title, NOT_ATTEMPTED)


def _defined_by_placeholder(evalue: str, cells: Sequence[dict]) -> bool:
    """Whether the name in ``name 'X' is not defined`` belongs to an answer still to write.

    True when the cell defining it raised ``NotImplementedError``, or when no cell defines it and
    some answer cell still raises ``NotImplementedError`` (the definition is the answer).
    """
    m = re.search(r"name '(\w+)' is not defined", evalue)
    if not m:
        return False
    defines = re.compile(rf"^\s*(?:(?:def|class)\s+{m.group(1)}\b|{m.group(1)}\s*[:=])", re.MULTILINE)
    unfinished = [
        c
        for c in cells
        if c.get("cell_type") == "code"
        and any(e.get("ename") == "NotImplementedError" for e in _text_outputs(c)[1])
    ]
    definers = [
        c for c in cells if c.get("cell_type") == "code" and defines.search("".join(c.get("source", "")))
    ]
    if not definers:  # the whole definition is the answer to write (a `# YOUR CODE HERE` cell)
        return bool(unfinished)
    return any(c in unfinished for c in definers)


def _execute(path: Path, cell_timeout: int) -> list[dict]:
    """Execute an in-memory copy of ``path`` (never written back); returns its cells."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=cell_timeout,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    client.execute()
    return [dict(c) for c in nb.cells]


def run_notebook(path: str | Path, timeout: float = 300.0, fast: bool = True) -> NotebookReport:
    """Run one exercise notebook in a child process with a wall-clock limit and grade it.

    Args:
        path: The notebook.
        timeout: Seconds the whole notebook may take; past it the run is stopped.
        fast: Run with ``CNNBOOK_FAST=1`` (smaller examples; the checks are the same).

    Returns:
        A :class:`NotebookReport`.
    """
    path = Path(path)
    report = NotebookReport(str(path), section_of(path), "ok")
    if not path.is_file():
        report.run, report.message = "unreadable", f"no such notebook: {path}"
        return report
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONIOENCODING="utf-8")
    if fast:
        env["CNNBOOK_FAST"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "cnnbook.progress",
        "--_one",
        str(path),
        "--cell-timeout",
        str(max(1, int(timeout))),
    ]
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        encoding="utf-8",  # the child writes UTF-8 (PYTHONIOENCODING), whatever the locale says
        errors="replace",
        **_new_group_options(),
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        report.run = "timed out"
        report.message = f"stopped after {timeout:g} s (a cell may loop forever or wait for input)"
        report.seconds = time.monotonic() - start
        return report
    except KeyboardInterrupt:  # Ctrl+C or "interrupt kernel" reaches only this process: the
        _kill_tree(proc)  # runner has a process group of its own, so it is ended here
        raise
    report.seconds = time.monotonic() - start
    if proc.returncode != 0:
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        report.run = "crashed"
        report.message = _crash_reason(lines)
        return report
    try:
        cells = json.loads(out)
    except json.JSONDecodeError:
        report.run, report.message = "crashed", "the runner printed no result"
        return report
    report.exercises = grade_cells(cells)
    return report


def _on_windows() -> bool:
    return os.name == "nt"


def _new_group_options() -> dict:
    """``Popen`` options that let :func:`_kill_tree` end the runner and the kernel it starts."""
    if _on_windows():
        return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
    return {"start_new_session": True}  # its own process group: killpg reaches the kernel too


def _kill_tree(proc: subprocess.Popen) -> None:
    """Stop ``proc`` and every process it started (the notebook's kernel), then reap it.

    POSIX: ``SIGKILL`` to the process group :func:`_new_group_options` made. Windows has neither
    ``killpg`` nor ``SIGKILL``: the tree is walked with psutil (installed with IPython) and, when
    psutil is missing, ended with ``taskkill /T /F``.
    """
    if not _on_windows():
        with contextlib.suppress(ProcessLookupError):  # the group has already gone
            os.killpg(proc.pid, signal.SIGKILL)
    else:
        try:
            import psutil
        except ImportError:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, timeout=30
                )
            with contextlib.suppress(OSError):
                proc.kill()  # in case taskkill could not run
        else:
            children = []
            with contextlib.suppress(psutil.Error):
                children = psutil.Process(proc.pid).children(recursive=True)
            with contextlib.suppress(OSError):
                proc.kill()  # first the runner, so that it cannot start another kernel
            for child in children:
                with contextlib.suppress(psutil.Error):
                    child.kill()
            psutil.wait_procs(children, timeout=10)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=30)


def _crash_reason(lines: list[str]) -> str:
    for ln in reversed(lines):
        if "DeadKernelError" in ln or "Kernel died" in ln:
            return "the kernel died (a cell crashed Python or ran out of memory)"
    for ln in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception)\b", ln):
            return ln[:200]
    return lines[-1][:200] if lines else "the runner stopped without a message"


def _clip(text: str, limit: int = 150) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def format_table(reports: Sequence[NotebookReport]) -> str:
    """A plain-text table: section, passed, failed, not attempted, total, note."""
    head = ("section", "notebook", "passed", "failed", "not attempted", "total", "note")
    rows = []
    for r in reports:
        note = (
            r.message
            if r.run != "ok"
            else "; ".join(
                f"{e.title.split(':')[0]}: {_clip(e.detail)}" for e in r.exercises if e.status == FAILED
            )
        )
        counts = (
            ("-", "-", "-", "-")
            if r.run != "ok"
            else (r.count(PASSED), r.count(FAILED), r.count(NOT_ATTEMPTED), len(r.exercises))
        )
        status = "" if r.run == "ok" else f"{r.run.upper()}: "
        rows.append((r.section, r.notebook, *map(str, counts), status + note))
    ok = [r for r in reports if r.run == "ok"]
    rows.append(
        (
            "all",
            f"{len(reports)} notebooks",
            *(str(sum(r.count(s) for r in ok)) for s in (PASSED, FAILED, NOT_ATTEMPTED)),
            str(sum(len(r.exercises) for r in ok)),
            f"{len(reports) - len(ok)} did not run to the end" if len(ok) < len(reports) else "",
        )
    )
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(6)]
    lines = [
        "  ".join(str(v).ljust(w) for v, w in zip(row[:6], widths, strict=True)) + "  " + row[6]
        for row in [head, *rows]
    ]
    lines.insert(1, "-" * (sum(widths) + 2 * 6 + 4))
    lines.insert(-1, lines[1])
    return "\n".join(ln.rstrip() for ln in lines)


def format_json(reports: Sequence[NotebookReport]) -> str:
    """The reports as JSON: every field of each report plus its counts."""
    rows = [
        asdict(r)
        | {
            "passed": r.count(PASSED),
            "failed": r.count(FAILED),
            "not_attempted": r.count(NOT_ATTEMPTED),
            "total": len(r.exercises),
        }
        for r in reports
    ]
    return json.dumps({"notebooks": rows}, indent=2, ensure_ascii=False)


CSV_COLUMNS = ("folder", "notebook", "section", "exercise", "status", "detail", "seconds")


def format_csv(reports: Sequence[NotebookReport]) -> str:
    """The reports as CSV for a spreadsheet: one row per folder (student) and exercise.

    A notebook that did not run to the end gets one row whose ``exercise`` is empty and whose
    ``status`` says what happened (``timed out``, ``crashed``, ``unreadable``).
    Columns: :data:`CSV_COLUMNS`.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in reports:
        path = Path(r.notebook)
        where = (str(path.parent), path.name, r.section)
        if r.run != "ok":
            writer.writerow((*where, "", r.run, r.message, f"{r.seconds:.1f}"))
        for e in r.exercises:
            writer.writerow((*where, e.title, e.status, e.detail, f"{r.seconds:.1f}"))
    return out.getvalue()


def write_utf8(text: str, stream: TextIO | None = None) -> None:
    """Write ``text`` (and a newline) to ``stream`` as UTF-8, whatever encoding the stream has.

    A Windows console redirected to a file encodes as cp1252, which has no ✅ or ❌: there the
    bytes go to the stream's binary buffer. A stream without one (a notebook's output) takes text.

    Args:
        text: What to write.
        stream: Where (default: ``sys.stdout``).
    """
    stream = sys.stdout if stream is None else stream
    encoding = (getattr(stream, "encoding", None) or "utf-8").lower().replace("-", "").replace("_", "")
    buffer = getattr(stream, "buffer", None)
    if encoding in ("utf8", "utf8sig") or buffer is None:
        stream.write(text + "\n")
        stream.flush()
        return
    stream.flush()  # anything written before goes out first
    buffer.write((text + "\n").encode("utf-8"))
    buffer.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cnnbook progress``: run exercise notebooks and print the table (or JSON, CSV)."""
    parser = argparse.ArgumentParser(
        prog="cnnbook progress",
        description="Run exercise notebooks (on in-memory copies) and report passed / failed / "
        "not attempted per section.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``progress`` command's options (shared with ``python -m cnnbook progress``)."""
    parser.add_argument(
        "notebooks",
        nargs="*",
        type=Path,
        help="exercise notebooks or folders (default: exercises/ of this repository)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds each notebook may run (default 300)"
    )
    parser.add_argument(
        "--full", action="store_true", help="run in full mode (default: fast mode; the checks are the same)"
    )
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON (for collecting a class)")
    fmt.add_argument(
        "--csv",
        action="store_true",
        help="print CSV, one row per folder and exercise (for a class spreadsheet)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the command; exit status 0 when every notebook ran (whatever its answers)."""
    paths: list[Path] = []
    for p in args.notebooks or [ROOT / "exercises"]:
        paths.extend(sorted(p.glob("14_*.ipynb")) if p.is_dir() else [p])
    if not paths:
        print(
            "No exercise notebooks found: pass notebook files or a folder holding 14_*.ipynb.",
            file=sys.stderr,
        )
        return 2
    machine = args.json or getattr(args, "csv", False)
    reports = []
    for path in paths:
        if not machine:
            print(f"running {path} ...", file=sys.stderr, flush=True)
        reports.append(run_notebook(path, timeout=args.timeout, fast=not args.full))
    if args.json:
        write_utf8(format_json(reports))
    elif getattr(args, "csv", False):
        write_utf8(format_csv(reports).rstrip("\n"))
    else:
        write_utf8(format_table(reports))
    return 0 if all(r.run == "ok" for r in reports) else 1


def _run_one(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--_one", type=Path, required=True)
    parser.add_argument("--cell-timeout", type=int, default=300)
    args = parser.parse_args(argv)
    cells = _execute(args._one, args.cell_timeout)
    sys.stdout.write(json.dumps(cells, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(_run_one(sys.argv[1:]) if "--_one" in sys.argv else main())
