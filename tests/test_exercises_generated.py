"""The committed exercises are exactly what scripts/make_exercises.py generates from solutions/.

Also unit tests of the generator itself (stubbing answers, tagging the cells that will raise)
and of the exercise collection's structure.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import nbformat
import pytest

from cnnbook.sections import SECTIONS

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))
SECTION_FILES = [s.stem for s in SECTIONS]  # 14.1 ... 14.17, in order (cnnbook/sections.py)


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_exercises", ROOT / "scripts" / "make_exercises.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_exercises"] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def _nb(*cells: tuple[str, str] | tuple[str, str, list[str]]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    for kind, source, *tags in cells:
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        if tags:
            cell.metadata["tags"] = tags[0]
        nb.cells.append(cell)
    return nb


def _tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


# ---------------------------------------------------------------- the committed collection


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_committed_exercise_is_up_to_date(path: Path) -> None:
    target = ROOT / "exercises" / path.name
    assert target.exists(), f"exercises/{path.name} is missing: run python scripts/make_exercises.py"
    expected = gen.render(gen.make_exercise(nbformat.read(path, as_version=4), path.name))
    assert target.read_text(encoding="utf-8") == expected, (
        f"exercises/{path.name} differs from what solutions/{path.name} generates: "
        f"run python scripts/make_exercises.py and commit the result"
    )


def test_script_check_mode_agrees(capsys) -> None:
    assert gen.main(["--check"]) == 0, capsys.readouterr()


def _load_stripper():
    spec = importlib.util.spec_from_file_location("strip_jupytext", ROOT / "scripts" / "strip_jupytext.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stripper = _load_stripper()


def test_no_committed_notebook_carries_jupytext_metadata() -> None:
    """A percent-format round trip leaves ``metadata.jupytext``; the committed notebooks drop it."""
    carrying = [
        str(p.relative_to(ROOT))
        for p in stripper.collection()
        if stripper.carries_jupytext(nbformat.read(p, as_version=4))
    ]
    assert not carrying, (
        f"jupytext metadata in {len(carrying)} notebooks: run `python scripts/strip_jupytext.py`, then "
        f"`python scripts/make_exercises.py`: {carrying}"
    )


def test_strip_jupytext_removes_only_jupytext_metadata(tmp_path: Path) -> None:
    nb = _nb(("code", "x = 1", ["parameters"]))
    nb.metadata["jupytext"] = {"cell_metadata_filter": "tags,-all"}
    nb.metadata["kernelspec"] = {"name": "cnnbook", "display_name": "Python (cnnbook)", "language": "python"}
    path = tmp_path / "14_99_x.ipynb"
    nbformat.write(nb, path)
    assert stripper.main(["--check", str(path)]) == 1
    assert stripper.main([str(path)]) == 0
    after = nbformat.read(path, as_version=4)
    assert "jupytext" not in after.metadata
    assert after.metadata["kernelspec"]["name"] == "cnnbook"
    assert _tags(after.cells[0]) == ["parameters"]
    assert stripper.main(["--check", str(path)]) == 0


def test_every_section_has_exercises_and_solutions() -> None:
    assert [p.name for p in EXERCISES] == [p.name for p in SOLUTIONS]
    assert [p.stem for p in SOLUTIONS] == SECTION_FILES, (
        "solutions/ needs exactly one notebook per section, named like the section notebook"
    )


def test_exercises_readme_lists_every_section() -> None:
    readme = (ROOT / "exercises" / "README.md").read_text(encoding="utf-8")
    for stem in SECTION_FILES:
        assert f"({stem}.ipynb)" in readme, stem
        assert f"(../solutions/{stem}.ipynb)" in readme, stem


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_structure(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    exercises = re.findall(r"^## Exercise \d+ \(([^)]+)\)", md, flags=re.M)  # kind: "predict, then check"
    assert 2 <= len(exercises) <= 6, f"{path.name}: expected 2-6 '## Exercise N (kind)' headings"
    code = [c for c in nb.cells if c.cell_type == "code"]
    blocks = sum(c.source.count(gen.BEGIN) for c in code)
    checks = sum(bool(re.search(r"\bcheck_\w+\(", c.source)) for c in code)
    assert blocks >= len(exercises), f"{path.name}: every exercise needs a solution block"
    assert checks >= len(exercises), f"{path.name}: every exercise needs a check cell"
    raising = [i for i, c in enumerate(nb.cells) if gen.RAISES in _tags(c)]
    assert not raising, (
        f"{path.name}: cells {raising} are tagged {gen.RAISES}; solutions must "
        f"run cleanly so CI catches a broken answer"
    )
    assert f"../notebooks/{path.name}" in md, f"{path.name}: link the section notebook"


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.name)
def test_exercise_has_no_answers_and_stubs_are_tagged(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        assert gen.BEGIN not in cell.source
        assert gen.END not in cell.source
        if cell.cell_type != "code":
            continue
        top_stub = re.search(r"^raise NotImplementedError\(\)", cell.source, flags=re.M)
        if top_stub or re.search(r"\bcheck_\w+\(", cell.source):
            assert gen.RAISES in _tags(cell), f"{path.name} cell {i} must be tagged {gen.RAISES}"


# ---------------------------------------------------------------- the generator


def test_code_block_is_replaced_at_its_indentation() -> None:
    src = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n"
    out, top = gen.strip_solutions(src, code=True)
    assert out == "def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    assert not top


def test_top_level_block_and_markdown_block() -> None:
    out, top = gen.strip_solutions("a = 1\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION", code=True)
    assert out == "a = 1\n# YOUR CODE HERE\nraise NotImplementedError()"
    assert top
    out, top = gen.strip_solutions("Why?\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION", code=False)
    assert out == "Why?\n\n*YOUR ANSWER HERE*"
    assert not top


@pytest.mark.parametrize(
    ("src", "match"),
    [
        ("### END SOLUTION", "without a matching"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "nested"),
        ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ],
)
def test_unbalanced_markers_are_errors(src: str, match: str) -> None:
    with pytest.raises(gen.SolutionMarkerError, match=match):
        gen.strip_solutions(src, code=True, where="nb, cell 3")


def test_tags_follow_missing_answers_through_the_notebook() -> None:
    nb = _nb(
        ("code", "SEED = 0", ["parameters"]),
        ("code", "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION"),
        ("code", "checks.check_f(f)"),  # calls a check
        ("code", "g = lambda x: f(x)\ndef h(x):\n    return f(x) + 1"),  # defines only
        ("code", "y = h(3)"),  # calls a stub indirectly
        ("code", "print(y)"),  # uses a missing value
        ("code", "### BEGIN SOLUTION\nz = 2\n### END SOLUTION"),  # top-level answer
        ("code", "w = z * 2\nimport math"),  # uses it
        ("code", "print(math.pi, SEED)"),  # math was bound by a raising cell
        ("code", "print(SEED)"),  # independent
        ("markdown", "hidden", ["solution-only"]),
        ("code", "class A:\n    ### BEGIN SOLUTION\n    x = 1\n    ### END SOLUTION"),  # class body runs
        ("code", "if SEED == 0:\n    ### BEGIN SOLUTION\n    v = 1\n    ### END SOLUTION"),
        (
            "code",
            "class B:\n    def m(self):\n        ### BEGIN SOLUTION\n        return 1\n"
            "        ### END SOLUTION",
        ),  # method: runs later
    )
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="x")]
    nb.cells[1].execution_count = 3
    ex = gen.make_exercise(nb)
    raising = [gen.RAISES in _tags(c) for c in ex.cells]
    assert raising == [False, False, True, False, True, True, True, True, True, False, True, True, False]
    assert _tags(ex.cells[0]) == ["parameters"]
    assert ex.cells[1].outputs == []
    assert ex.cells[1].execution_count is None
    assert len(ex.cells) == 13  # the solution-only cell is gone
    assert gen.BEGIN in nb.cells[1].source  # the solution notebook is left untouched


def test_generate_and_check_mode_on_a_temporary_tree(tmp_path: Path, capsys) -> None:
    sol, ex = tmp_path / "solutions", tmp_path / "exercises"
    sol.mkdir()
    nb = _nb(
        ("code", "X = 1", ["parameters"]),
        ("code", "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"),
    )
    nbformat.write(nb, sol / "14_99_demo.ipynb")
    args = ["--solutions", str(sol), "--exercises", str(ex)]
    assert gen.main([*args, "--check"]) == 1
    assert gen.main(args) == 0
    assert gen.main([*args, "--check"]) == 0
    text = (ex / "14_99_demo.ipynb").read_text(encoding="utf-8")
    assert "raise NotImplementedError()" in text
    assert "return 1" not in text
    (ex / "14_99_demo.ipynb").write_text(text.replace("YOUR CODE HERE", "edited by hand"), encoding="utf-8")
    assert gen.main([*args, "--check"]) == 1
    assert "stale" in capsys.readouterr().out
