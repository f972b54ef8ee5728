"""The README's promises: its test command is what CI runs, and it lists every notebook."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_ci_runs_the_readme_test_command() -> None:
    block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert block, "README must open with a bash block holding the two set-up commands"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert "make lab" in commands
    assert "make test" in commands
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert "make test" in ci_lines, ".ci/run must call exactly the README's test command"


def test_readme_links_every_notebook_that_exists() -> None:
    for folder in ("notebooks", "exercises", "solutions"):
        for nb in (ROOT / folder).glob("14_*.ipynb"):
            assert f"({folder}/{nb.name})" in README, f"README does not link {folder}/{nb.name}"


def test_readme_has_no_placeholders() -> None:
    assert "PLACEHOLDER" not in README, "fill in the README's placeholder sections"


def test_maintaining_lists_every_module() -> None:
    """MAINTAINING.md's layout names each module of the package (checkers under `cnnbook/checks/`)."""
    text = (ROOT / "MAINTAINING.md").read_text(encoding="utf-8")
    package = ROOT / "cnnbook"
    modules = [p for p in package.glob("*.py") if p.name != "__init__.py"] + list(package.glob("models/*.py"))
    missing = sorted(
        p.relative_to(ROOT).as_posix() for p in modules if f"`{p.relative_to(ROOT).as_posix()}`" not in text
    )
    assert not missing, f"MAINTAINING.md does not list {missing}: run python scripts/make_start_page.py"
    checkers = [p.stem for p in package.glob("checks/*.py") if p.stem not in ("__init__", "core")]
    row = next(line for line in text.splitlines() if line.startswith("| `cnnbook/checks/`"))
    assert all(name in row for name in checkers), (
        f"the checks/ row misses {[n for n in checkers if n not in row]}"
    )
