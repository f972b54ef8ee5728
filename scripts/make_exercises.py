"""Generate ``exercises/`` from ``solutions/`` (the solutions are the single source).

For every ``solutions/14_XX_<slug>.ipynb`` this writes ``exercises/14_XX_<slug>.ipynb`` where

* in code cells, each block between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (marker lines
  included) becomes ``# YOUR CODE HERE`` + ``raise NotImplementedError()`` at the marker's
  indentation (nbgrader's convention, without depending on nbgrader);
* in markdown cells, such a block becomes ``*YOUR ANSWER HERE*``;
* cells tagged ``solution-only`` are dropped;
* outputs and execution counts are cleared;
* every code cell that will raise while the answers are still missing is tagged
  ``raises-exception`` (so ``pytest --nbval-lax`` accepts the untouched exercises): cells with a
  top-level answer, cells that call a ``check_*`` function, and cells that use a name whose
  value depends on a missing answer (found by following names through the notebook).

Usage::

    python scripts/make_exercises.py            # (re)write every exercise notebook
    python scripts/make_exercises.py --check    # exit 1 if a committed exercise is stale
    python scripts/make_exercises.py --run      # also execute the exercises and list the errors
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
RAISES = "raises-exception"
SOLUTION_ONLY = "solution-only"
CODE_STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
MARKDOWN_STUB = "*YOUR ANSWER HERE*"
_MAGIC = re.compile(r"^\s*[%!]")


class SolutionMarkerError(ValueError):
    """A solution notebook has unbalanced or nested solution markers."""


def strip_solutions(source: str, code: bool, where: str = "cell") -> tuple[str, bool]:
    """Replace every solution block in ``source`` by the exercise stub.

    Args:
        source: Cell source.
        code: Whether the cell is a code cell (markdown cells get ``*YOUR ANSWER HERE*``).
        where: Cell description used in error messages.

    Returns:
        ``(new_source, top_level)``: the stubbed source and whether a code stub landed at
        indentation 0 (so the cell itself raises ``NotImplementedError`` when run).

    Raises:
        SolutionMarkerError: For an ``END`` without ``BEGIN``, a nested ``BEGIN``, or a missing
            ``END``.
    """
    out: list[str] = []
    inside = False
    top_level = False
    for number, line in enumerate(source.split("\n"), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise SolutionMarkerError(
                    f"{where}, line {number}: nested '{BEGIN}'; close the previous block with '{END}' first."
                )
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            if code:
                out.extend(indent + stub for stub in CODE_STUB)
                top_level = top_level or indent == ""
            else:
                out.append(indent + MARKDOWN_STUB)
        elif stripped == END:
            if not inside:
                raise SolutionMarkerError(f"{where}, line {number}: '{END}' without a matching '{BEGIN}'.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise SolutionMarkerError(f"{where}: '{BEGIN}' is never closed with '{END}'.")
    return "\n".join(out), top_level


def _parse(source: str) -> ast.Module | None:
    cleaned = "\n".join("" if _MAGIC.match(line) else line for line in source.split("\n"))
    try:
        return ast.parse(cleaned)
    except SyntaxError:
        return None


def _bound_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for stmt in tree.body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                names.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[0])
    return names


def _loads(nodes: list[ast.AST], deferred: bool) -> set[str]:
    """Names loaded in ``nodes``: run now (``deferred=False``) or inside function bodies."""
    found: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            # decorators and defaults run at definition time; the body runs later
            head = (
                list(getattr(node, "decorator_list", []))
                + list(node.args.defaults)
                + [d for d in node.args.kw_defaults if d is not None]
            )
            for child in head:
                visit(child, in_function)
            body = node.body if isinstance(node.body, list) else [node.body]
            for child in body:
                visit(child, True)
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and in_function == deferred:
            found.add(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child, in_function)

    for node in nodes:
        visit(node, False)
    return found


def _calls_check(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name.startswith("check_"):
                return True
    return False


def _is_stub_raise(node: ast.AST) -> bool:
    if not isinstance(node, ast.Raise) or node.exc is None:
        return False
    exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
    return getattr(exc, "id", "") == "NotImplementedError"


def _raises_when_run(tree: ast.Module) -> bool:
    """Whether a stub ``raise NotImplementedError()`` runs when the cell runs.

    True for a stub at module level or in a class body (class bodies run at definition time),
    also inside ``if``/``for``/``with``/``try`` blocks; false inside function bodies.
    """

    def visit(node: ast.AST) -> bool:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return False
        if _is_stub_raise(node):
            return True
        return any(visit(child) for child in ast.iter_child_nodes(node))

    return visit(tree)


def _stub_functions(tree: ast.Module) -> set[str]:
    """Top-level functions/classes whose body raises NotImplementedError (an answer stub)."""
    names = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and any(
            _is_stub_raise(node) for node in ast.walk(stmt)
        ):
            names.add(stmt.name)
    return names


def make_exercise(solution: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """Build the exercise notebook from a solution notebook (see the module docstring).

    Args:
        solution: The solution notebook (left unchanged).
        name: Its file name, for error messages.

    Returns:
        A new notebook.
    """
    return _make_exercise(solution, name)[0]


def _make_exercise(solution: nbformat.NotebookNode, name: str) -> tuple[nbformat.NotebookNode, set[str]]:
    """:func:`make_exercise`, plus the names that are missing while the answers are."""
    nb = copy.deepcopy(solution)
    cells = []
    tainted: set[str] = set()  # names whose value is missing or raises while answers are missing
    for index, cell in enumerate(nb.cells):
        tags = list(cell.get("metadata", {}).get("tags", []))
        if SOLUTION_ONLY in tags:
            continue
        answer = cell.source
        source, top_level = strip_solutions(answer, cell.cell_type == "code", f"{name}, cell {index}")
        cell.source = source
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            tree = _parse(source)
            if tree is not None:
                tainted |= _stub_functions(tree)
                raises = (
                    top_level
                    or _raises_when_run(tree)
                    or _calls_check(tree)
                    or bool(_loads(tree.body, deferred=False) & tainted)
                )
                if raises:  # what the answer would have defined is missing too
                    full = _parse(answer)
                    tainted |= _bound_names(tree) | (_bound_names(full) if full else set())
                else:
                    # a function that calls a stub raises when it is called, not when defined
                    for stmt in tree.body:
                        if (
                            isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                            and _loads([stmt], deferred=True) & tainted
                        ):
                            tainted.add(stmt.name)
                if raises and RAISES not in tags:
                    tags.append(RAISES)
            if tags:
                cell.metadata["tags"] = tags
        cells.append(cell)
    nb.cells = cells
    return nb, tainted


def exercise_path(solution_path: Path, exercises_dir: Path) -> Path:
    """Where the exercise generated from ``solution_path`` lives."""
    return exercises_dir / solution_path.name


def render(nb: nbformat.NotebookNode) -> str:
    """The exact text ``nbformat.write`` produces for ``nb`` (for byte-wise comparison)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def generate(solutions_dir: Path, exercises_dir: Path) -> dict[Path, str]:
    """Render the exercise notebook text for every solution notebook.

    Returns:
        Exercise path -> notebook text.
    """
    result = {}
    for path in sorted(solutions_dir.glob("*.ipynb")):
        solution = nbformat.read(path, as_version=4)
        result[exercise_path(path, exercises_dir)] = render(make_exercise(solution, path.name))
    return result


def _run(paths: list[Path], solutions_dir: Path) -> int:
    """Execute exercise notebooks in the cnnbook kernel; print each cell's error type.

    Only ``NotImplementedError`` and ``NameError`` for a name that depends on a missing answer
    are expected; anything else is flagged with ``!!`` and counted.
    """
    from nbclient import NotebookClient

    bad = 0
    for path in paths:
        _, missing = _make_exercise(nbformat.read(solutions_dir / path.name, as_version=4), path.name)
        nb = nbformat.read(path, as_version=4)
        NotebookClient(
            nb,
            kernel_name="cnnbook",
            allow_errors=True,
            timeout=600,
            resources={"metadata": {"path": str(path.parent)}},
        ).execute()
        for i, cell in enumerate(nb.cells):
            errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
            tagged = RAISES in cell.metadata.get("tags", [])
            for err in errors:
                name = re.search(r"name '(\w+)' is not defined", err.evalue or "")
                ok = tagged and (
                    err.ename == "NotImplementedError"
                    or (err.ename == "NameError" and bool(name) and name.group(1) in missing)
                )
                bad += not ok
                print(
                    f"{'  ' if ok else '!!'} {path.name} cell {i}: {err.ename}: "
                    f"{err.evalue.splitlines()[0][:100] if err.evalue else ''}"
                )
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--solutions", type=Path, default=ROOT / "solutions")
    parser.add_argument("--exercises", type=Path, default=ROOT / "exercises")
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if any exercise notebook is missing or stale",
    )
    parser.add_argument(
        "--run", action="store_true", help="after writing, execute the exercises and list every error raised"
    )
    args = parser.parse_args(argv)
    try:
        rendered = generate(args.solutions, args.exercises)
    except SolutionMarkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = [p for p, text in rendered.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    orphans = [p for p in sorted(args.exercises.glob("*.ipynb")) if p not in rendered]
    if args.check:
        for p in stale:
            print(f"stale: {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}")
        for p in orphans:
            print(f"no solution notebook for: {p.name}")
        if stale or orphans:
            print("run `python scripts/make_exercises.py` and commit the result", file=sys.stderr)
            return 1
        print(f"{len(rendered)} exercise notebooks are up to date")
        return 0
    args.exercises.mkdir(parents=True, exist_ok=True)
    for p in stale:
        p.write_text(rendered[p], encoding="utf-8", newline="\n")
        print(f"wrote {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}")
    for p in orphans:
        print(f"warning: {p.name} has no solution notebook (left alone)", file=sys.stderr)
    print(f"{len(rendered)} exercise notebooks, {len(stale)} rewritten")
    if args.run:
        return 1 if _run(sorted(rendered), args.solutions) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
