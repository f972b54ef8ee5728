"""Write ``START_HERE.ipynb``, the page ``make lab`` opens, from ``cnnbook.sections``.

Usage::

    python scripts/make_start_page.py           # (re)write START_HERE.ipynb
    python scripts/make_start_page.py --check   # exit 1 if the committed page is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cnnbook.sections import SECTIONS  # noqa: E402

INTRO = """# Chapter 14: Convolutional Neural Networks, the companion notebooks

**Start here.** This page lists the chapter's sections in reading order. For each one there is:

- a **section notebook** that builds the ideas in code and checks every claim it makes (a shape,
  a parameter count, a speed-up) with an `assert` or a printed figure;
- an **exercise notebook**: write your answer where it says `# YOUR CODE HERE`, run the check
  cell under it, and it prints `✅ Correct` or `❌` with what it expected, what it got and a hint;
- **solutions**, worked answers to compare with once you have tried.

How to work: open a section, run its cells from top to bottom (`Shift`+`Enter`), change things
and run them again, then do its exercises. Every section notebook ends with links to its
exercises and to the next section."""

TIMES = """**Times** are rough full-mode run times of the section notebook. The CPU column was measured
on a 2-core x86 CPU that computes bfloat16 natively; on a laptop CPU without it (most of them)
the notebooks that train (14.5, 14.6, 14.9, 14.13 to 14.16) take several times longer: 14.15 took
about 17 minutes on a 2-core AVX2 laptop profile. Every notebook prints how long its training
cells expect to take before they start. The GPU column is "not measured" until the notebooks have
been timed on a GPU. To run a notebook in a few seconds instead, set `FAST = True` in its first
cell (smaller data, fewer epochs; the lessons are the same, the accuracies lower)."""

PROGRESS = """## Your progress

The cell below runs your exercise notebooks (copies in memory: your files are not changed) and
prints, for each section, how many exercises pass, fail or are not attempted yet. It takes a few
seconds per notebook. From a terminal the same report is `make progress`."""

HELP = """## If something does not work

- `python -m cnnbook doctor` (or `make doctor` in a terminal) checks versions, the device it will
  train on, the datasets and the pretrained weights, and says how to fix what is missing.
- The README's *Troubleshooting* section covers working offline, no GPU, a missing kernel and
  where data and weights are stored: [README.md](README.md)."""


def _link(path: str, text: str) -> str:
    return f"[{text}]({path})"


def build() -> nbformat.NotebookNode:
    """The start page as a notebook."""
    rows = ["| section | read | practise | compare | CPU | GPU |",
            "| --- | --- | --- | --- | --- | --- |"]
    for s in SECTIONS:
        rows.append(f"| {s.number} | {_link(s.notebook, s.title)} | {_link(s.exercises, 'exercises')} "
                    f"| {_link(s.solutions, 'solutions')} | {s.cpu} | {s.gpu} |")
    cells = [
        nbformat.v4.new_markdown_cell(INTRO),
        nbformat.v4.new_markdown_cell("## The sections\n\n" + "\n".join(rows)),
        nbformat.v4.new_markdown_cell(TIMES),
        nbformat.v4.new_markdown_cell(PROGRESS),
        nbformat.v4.new_code_cell("from cnnbook import progress\n\nprogress.main([\"exercises\"]);"),
        nbformat.v4.new_markdown_cell(HELP),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "cnnbook", "display_name": "Python (cnnbook)",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell.id = f"start-{i:02d}"  # stable ids: regenerating gives the same file
    return nb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if START_HERE.ipynb is stale")
    args = parser.parse_args()
    text = nbformat.writes(build()) + "\n"
    target = ROOT / "START_HERE.ipynb"
    if args.check:
        if not target.is_file() or target.read_text() != text:
            print("START_HERE.ipynb is stale: run `python scripts/make_start_page.py`.")
            return 1
        return 0
    target.write_text(text)
    print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
