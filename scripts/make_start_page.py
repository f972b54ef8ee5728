"""Write ``START_HERE.ipynb``, ``exercises/README.md`` and MAINTAINING.md's table of modules.

The first two come from ``cnnbook.sections`` and are read by students, so their text never
mentions how the collection is made or checked; the exercise table lists each solution notebook's
``## Exercise N (kind): title`` headings, so it never drifts from the notebooks. The table of
modules in ``MAINTAINING.md`` comes from the modules' own docstrings.

Usage::

    python scripts/make_start_page.py           # (re)write all three
    python scripts/make_start_page.py --check   # exit 1 if a committed file is stale
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
try:
    from cnnbook.sections import SECTIONS
except ImportError:  # run with a Python where cnnbook is not installed: use this checkout's
    sys.path.insert(0, str(ROOT))
    from cnnbook.sections import SECTIONS

INTRO = """# Chapter 14: Convolutional Neural Networks, the companion notebooks

**Start here.** This page lists the chapter's sections in reading order. For each one there is:

- a **section notebook** that builds the ideas in code and checks its claims as it goes (a shape,
  a parameter count, a speed-up) with an `assert` or a printed figure, and says so where a
  result is something to observe in your own run;
- an **exercise notebook**: write your answer where it says `# YOUR CODE HERE`, run the check
  cell under it, and it prints `✅ Correct` or `❌` with what it expected, what it got and a hint;
- **solutions**, worked answers to compare with once you have tried.

How to work: open a section, run its cells from top to bottom (`Shift`+`Enter`), change things
and run them again, then do its exercises. Every section notebook ends with links to its
exercises and to the next section."""

TIMES = """**Times** are how long each section notebook takes to run in full mode (the default) on a
laptop with a 2-core CPU computing in float32. A faster CPU or a GPU takes less. Every training
cell prints how long it expects to take before it starts. To run a notebook in seconds instead,
set `FAST = True` in its first cell (smaller data, fewer epochs; the lessons are the same, the
accuracies lower)."""

PROGRESS = """## Your progress

The cell below runs your exercise notebooks (copies in memory: your files are not changed) and
prints, for each section, how many exercises pass, fail or are not attempted yet. It takes a few
seconds per notebook. From a terminal the same report is `python -m cnnbook progress` (or
`make progress`)."""

HELP = """## If something does not work

- `python -m cnnbook doctor` (or `make doctor` in a terminal) checks versions, the device it will
  train on, the datasets and the pretrained weights, and says how to fix what is missing.
- The README's *Troubleshooting* section covers working offline, no GPU, a missing kernel and
  where data and weights are stored: [README.md](README.md)."""


def _link(path: str, text: str) -> str:
    return f"[{text}]({path})"


def build() -> nbformat.NotebookNode:
    """The start page as a notebook."""
    rows = [
        "| section | read | practise | compare | time on a laptop CPU |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in SECTIONS:
        rows.append(
            f"| {s.number} | {_link(s.notebook, s.title)} | {_link(s.exercises, 'exercises')} "
            f"| {_link(s.solutions, 'solutions')} | {s.cpu} |"
        )
    cells = [
        nbformat.v4.new_markdown_cell(INTRO),
        nbformat.v4.new_markdown_cell("## The sections\n\n" + "\n".join(rows)),
        nbformat.v4.new_markdown_cell(TIMES),
        nbformat.v4.new_markdown_cell(PROGRESS),
        nbformat.v4.new_code_cell('from cnnbook import progress\n\nprogress.main(["exercises"]);'),
        nbformat.v4.new_markdown_cell(HELP),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "cnnbook", "display_name": "Python (cnnbook)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell.id = f"start-{i:02d}"  # stable ids: regenerating gives the same file
    return nb


TABLE_BEGIN, TABLE_END = "<!-- BEGIN TABLE (scripts/make_start_page.py) -->", "<!-- END TABLE -->"
_EXERCISE = re.compile(r"^##\s*Exercise\s+\d+\s*\(([^)]*)\)\s*:?\s*(.*)$", re.MULTILINE)


def exercises_table() -> str:
    """The markdown table of ``exercises/README.md``: one row per section, its exercises' titles."""
    rows = ["| section | exercises | solutions | what you practise |", "| --- | --- | --- | --- |"]
    for s in SECTIONS:
        nb = nbformat.read(ROOT / s.solutions, as_version=4)
        md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        practise = "; ".join(f"{title.strip()} ({kind.strip()})" for kind, title in _EXERCISE.findall(md))
        rows.append(f"| {s.number} | [{s.stem}]({s.stem}.ipynb) | [answers](../{s.solutions}) | {practise} |")
    return "\n".join(rows)


EXERCISES_INTRO = """# Exercises

Every section of the chapter has an exercise notebook here and the same notebook with worked
answers in [the solutions folder](../solutions/). Write your answer where it says
`# YOUR CODE HERE`, run the cell, then run the check below it: it tries your code on fixed edge
cases and on fresh random inputs, compares it with a reference and prints `✅ Correct` or `❌`
with what it expected, what it got and a hint. To see where you stand in every section, run the
last cell of the [start page](../START_HERE.ipynb)."""


def exercises_readme() -> str:
    """``exercises/README.md``: a short guide for students and the table of exercises."""
    return f"{EXERCISES_INTRO}\n\n{TABLE_BEGIN}\n{exercises_table()}\n{TABLE_END}\n"


LAYOUT_BEGIN, LAYOUT_END = "<!-- BEGIN PACKAGE LAYOUT -->", "<!-- END PACKAGE LAYOUT -->"


def package_layout() -> str:
    """MAINTAINING.md's table of the package: every module with its docstring's first paragraph."""
    package = ROOT / "cnnbook"
    rows = ["| module | holds |", "| --- | --- |"]
    for f in sorted(package.glob("*.py")) + sorted(package.glob("models/*.py")):
        if f.name == "__init__.py" and f.parent == package:
            continue
        doc = ast.get_docstring(ast.parse(f.read_text(encoding="utf-8"))) or ""
        first = re.sub(r":\w+:", "", " ".join(doc.split("\n\n")[0].split()).replace("``", "`"))
        rows.append(f"| `{f.relative_to(ROOT).as_posix()}` | {first} |")
    checkers = sorted(p.stem for p in package.glob("checks/*.py") if p.stem not in ("__init__", "core"))
    rows.append(
        "| `cnnbook/checks/` | the exercise checks: `core.py` (the checker framework) and one module "
        f"per section's exercises ({', '.join(checkers)}) |"
    )
    return "\n".join(rows)


def maintaining() -> str:
    """``MAINTAINING.md`` with its package table regenerated."""
    text = (ROOT / "MAINTAINING.md").read_text(encoding="utf-8")
    start, end = text.index(LAYOUT_BEGIN) + len(LAYOUT_BEGIN), text.index(LAYOUT_END)
    return text[:start] + "\n" + package_layout() + "\n" + text[end:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if START_HERE.ipynb is stale")
    args = parser.parse_args()
    outputs = {
        ROOT / "START_HERE.ipynb": nbformat.writes(build()) + "\n",
        ROOT / "exercises" / "README.md": exercises_readme(),
        ROOT / "MAINTAINING.md": maintaining(),
    }
    stale = [p for p, text in outputs.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    if args.check:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is stale: run `python scripts/make_start_page.py`.")
        return 1 if stale else 0
    for p in stale:
        p.write_text(outputs[p], encoding="utf-8", newline="\n")
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
