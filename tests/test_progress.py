"""``python -m cnnbook progress``: exercise progress from real exercise and solution notebooks."""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from cnnbook import progress

ROOT = Path(__file__).resolve().parents[1]
NAME = "14_04_pooling.ipynb"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_wrong_answer(tmp_path: Path) -> Path:
    """The solution notebook with its first checked answer replaced by one that returns None."""
    nb = nbformat.read(ROOT / "solutions" / NAME, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and re.search(r"\bcheck_\w+\s*\(", cell.source):
            call = next(
                n
                for n in ast.walk(ast.parse(cell.source))
                if isinstance(n, ast.Call)
                and getattr(n.func, "attr", getattr(n.func, "id", "")).startswith("check_")
            )
            names = [a.id for a in call.args if isinstance(a, ast.Name)]
            wrong = "\n".join(f"{n} = lambda *args, **kwargs: None" for n in names)
            nb.cells.insert(i, nbformat.v4.new_code_cell(wrong))
            break
    path = tmp_path / NAME
    nbformat.write(nb, path)
    return path


def test_untouched_exercises_are_not_attempted_and_solutions_pass() -> None:
    before = _digest(ROOT / "exercises" / NAME)
    untouched = progress.run_notebook(ROOT / "exercises" / NAME)
    solved = progress.run_notebook(ROOT / "solutions" / NAME)
    assert untouched.run == solved.run == "ok"
    assert len(untouched.exercises) >= 3
    assert len(solved.exercises) == len(untouched.exercises)
    assert [e.status for e in untouched.exercises] == [progress.NOT_ATTEMPTED] * len(untouched.exercises)
    assert [e.status for e in solved.exercises] == [progress.PASSED] * len(solved.exercises)
    assert _digest(ROOT / "exercises" / NAME) == before  # the student's file is never written


def test_one_wrong_answer_is_exactly_one_failure(tmp_path: Path) -> None:
    path = _one_wrong_answer(tmp_path)
    before = _digest(path)
    report = progress.run_notebook(path)
    assert report.run == "ok"
    assert report.count(progress.FAILED) == 1, report.exercises
    assert report.count(progress.PASSED) == len(report.exercises) - 1
    failed = next(e for e in report.exercises if e.status == progress.FAILED)
    assert failed.title.startswith("Exercise 1")
    assert "❌" in failed.detail
    assert _digest(path) == before


def _notebook(tmp_path: Path, name: str, *sources: str) -> Path:
    path = tmp_path / name
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("## Exercise 1: x"), *map(nbformat.v4.new_code_cell, sources)]
    )
    nbformat.write(nb, path)
    return path


def test_crash_and_hang_are_reported_and_the_rest_still_runs(tmp_path: Path) -> None:
    crash = _notebook(tmp_path, "14_98_crash.ipynb", "import os\nos._exit(1)", "check_x(1)")
    hang = _notebook(tmp_path, "14_99_hang.ipynb", "import time\ntime.sleep(600)")
    ok = _notebook(
        tmp_path,
        "14_97_ok.ipynb",
        "def check_x(v):\n    print('✅ Correct: fine' if v == 1 else '❌ wrong')",
        "check_x(1)",
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnbook",
            "progress",
            str(crash),
            str(hang),
            str(ok),
            "--timeout",
            "30",  # generous: a kernel starts in a few seconds, a crash is noticed late on a busy machine
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.returncode == 1, out.stderr  # not every notebook ran to the end
    rows = {Path(r["notebook"]).name: r for r in json.loads(out.stdout)["notebooks"]}
    assert rows["14_98_crash.ipynb"]["run"] == "crashed"
    assert "kernel died" in rows["14_98_crash.ipynb"]["message"]
    assert rows["14_99_hang.ipynb"]["run"] == "timed out"
    assert rows["14_97_ok.ipynb"]["run"] == "ok"
    assert rows["14_97_ok.ipynb"]["passed"] == 1
    assert rows["14_97_ok.ipynb"]["section"] == "14.97"


@pytest.mark.parametrize(
    ("outputs", "status"),
    [
        ([{"output_type": "stream", "name": "stdout", "text": "✅ Correct: yes\n"}], progress.PASSED),
        (
            [
                {"output_type": "stream", "name": "stdout", "text": "❌ max_pool2d: no\n"},
                {"output_type": "error", "ename": "CheckFailed", "evalue": "no", "traceback": []},
            ],
            progress.FAILED,
        ),
        (
            [
                {"output_type": "stream", "name": "stdout", "text": "⏳ f is not implemented yet\n"},
                {"output_type": "error", "ename": "NotImplementedError", "evalue": "", "traceback": []},
            ],
            progress.NOT_ATTEMPTED,
        ),
        (
            [{"output_type": "error", "ename": "SyntaxError", "evalue": "bad", "traceback": []}],
            progress.FAILED,
        ),
        ([], progress.NOT_ATTEMPTED),
    ],
)
def test_grading_rules(outputs: list, status: str) -> None:
    cells = [
        {"cell_type": "markdown", "source": "## Exercise 2 (compute): heads"},
        {"cell_type": "code", "source": "def f(): ...", "outputs": []},
        {"cell_type": "code", "source": "checks.check_f(f)", "outputs": outputs},
        {"cell_type": "markdown", "source": "## Exercise 3: explain only"},
        {"cell_type": "markdown", "source": "*YOUR ANSWER HERE*"},
    ]
    (ex,) = progress.grade_cells(cells)
    assert ex.title == "Exercise 2 (compute): heads"
    assert ex.status == status


def test_table_totals() -> None:
    reports = [
        progress.NotebookReport(
            "a/14_01_x.ipynb",
            "14.1",
            "ok",
            [
                progress.Exercise("Exercise 1", progress.PASSED),
                progress.Exercise("Exercise 2", progress.FAILED, "❌ wrong"),
            ],
        ),
        progress.NotebookReport("a/14_02_y.ipynb", "14.2", "timed out", message="stopped"),
    ]
    table = progress.format_table(reports)
    assert re.search(r"^all\s+2 notebooks\s+1\s+1\s+0\s+2\s+1 did not run", table, re.M), table
    assert "TIMED OUT: stopped" in table
    assert "Exercise 2: ❌ wrong" in table


def _err(ename: str, evalue: str = "") -> dict:
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}


@pytest.mark.parametrize(
    ("answer_source", "answer_outputs", "status"),
    [
        # the class is the answer and is still the placeholder: a later exercise cannot run yet
        (
            "# YOUR CODE HERE\nraise NotImplementedError()",
            [_err("NotImplementedError")],
            progress.NOT_ATTEMPTED,
        ),
        (
            "class Block:\n    raise NotImplementedError()",
            [_err("NotImplementedError")],
            progress.NOT_ATTEMPTED,
        ),
        # the student's own definition has a bug: that is a failure, not "not attempted"
        ("class Block:\n    x = 1 / 0", [_err("ZeroDivisionError")], progress.FAILED),
    ],
)
def test_a_later_exercise_waiting_for_an_earlier_answer(answer_source, answer_outputs, status) -> None:
    cells = [
        {"cell_type": "markdown", "source": "## Exercise 1: block"},
        {"cell_type": "code", "source": answer_source, "outputs": answer_outputs},
        {"cell_type": "markdown", "source": "## Exercise 2: use it"},
        {
            "cell_type": "code",
            "source": "checks.check_use(Block)",
            "outputs": [_err("NameError", "name 'Block' is not defined")],
        },
    ]
    verdicts = progress.grade_cells([{**c, "outputs": c.get("outputs", [])} for c in cells])
    assert verdicts[-1].status == status


def test_csv_has_one_row_per_student_folder_and_exercise(tmp_path: Path) -> None:
    """``python -m cnnbook progress alice bob --csv > class.csv``, as an instructor runs it."""
    check = "def check_x(v):\n    print('✅ Correct: fine' if v == 1 else '❌ wrong: expected 1')"
    for student, answer in (("alice", "1"), ("bob", "2")):
        path = tmp_path / "class" / student / "14_97_x.ipynb"
        path.parent.mkdir(parents=True)
        nb = nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_markdown_cell("## Exercise 1: first"),
                nbformat.v4.new_code_cell(check),
                nbformat.v4.new_code_cell(f"check_x({answer})"),
                nbformat.v4.new_markdown_cell("## Exercise 2: second"),
                nbformat.v4.new_code_cell("# YOUR CODE HERE\nraise NotImplementedError()"),
                nbformat.v4.new_code_cell("check_x(y)"),
            ]
        )
        nbformat.write(nb, path)
    out = tmp_path / "class.csv"
    with out.open("wb") as f:
        done = subprocess.run(
            [sys.executable, "-m", "cnnbook", "progress", "--csv"]
            + [str(tmp_path / "class" / s) for s in ("alice", "bob")],
            stdout=f,
            stderr=subprocess.PIPE,
            timeout=240,
        )
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(progress.CSV_COLUMNS)
    got = [(Path(r["folder"]).name, r["section"], r["exercise"], r["status"]) for r in rows]
    assert got == [
        ("alice", "14.97", "Exercise 1: first", progress.PASSED),
        ("alice", "14.97", "Exercise 2: second", progress.NOT_ATTEMPTED),
        ("bob", "14.97", "Exercise 1: first", progress.FAILED),
        ("bob", "14.97", "Exercise 2: second", progress.NOT_ATTEMPTED),
    ]
    assert rows[2]["detail"] == "❌ wrong: expected 1"


def test_csv_reports_a_notebook_that_did_not_run() -> None:
    reports = [
        progress.NotebookReport("bob/14_02_y.ipynb", "14.2", "timed out", message="stopped", seconds=3)
    ]
    (row,) = csv.DictReader(io.StringIO(progress.format_csv(reports)))
    assert row == {
        "folder": "bob",
        "notebook": "14_02_y.ipynb",
        "section": "14.2",
        "exercise": "",
        "status": "timed out",
        "detail": "stopped",
        "seconds": "3.0",
    }
