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
