"""Every relative link in every notebook and markdown file opens its target (issue 10).

JupyterLab serves the repository root (``make lab``), so a link is resolved against the folder of
the file that holds it, exactly as JupyterLab resolves it. Section notebooks end with a "Next"
cell that links to their exercises and the next section; the start page lists every section.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

from cnnbook.sections import SECTIONS

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".venv", "build", ".git", "node_modules", ".ipynb_checkpoints", ".pytest_cache"}
# [text](target "title") and <a href="target">; images too (![alt](target))
_MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HREF = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""")


def _documents() -> list[Path]:
    found = []
    for pattern in ("*.md", "*.ipynb"):
        for path in ROOT.rglob(pattern):
            if not SKIP_DIRS.intersection(path.relative_to(ROOT).parts):
                found.append(path)
    return sorted(found)


def _markdown_of(path: Path) -> str:
    if path.suffix == ".md":
        return path.read_text(encoding="utf-8")
    nb = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def links_in(text: str) -> list[str]:
    """Link targets in markdown text, code spans and fenced blocks left out."""
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    return _MD_LINK.findall(text) + _HREF.findall(text)


def _is_local(target: str) -> bool:
    parsed = urlparse(target)
    return not parsed.scheme and not parsed.netloc and not target.startswith("#")


def test_link_parser_finds_links_and_skips_code() -> None:
    text = (
        'See [a](x/y.ipynb) and ![b](img.png "t") and <a href="z.md">z</a>, '
        "`[no](code.md)` and\n```\n[no](fence.md)\n```\n[web](https://example.org)"
    )
    assert links_in(text) == ["x/y.ipynb", "img.png", "https://example.org", "z.md"]


DOCUMENTS = _documents()


@pytest.mark.parametrize("path", DOCUMENTS, ids=[p.relative_to(ROOT).as_posix() for p in DOCUMENTS])
def test_every_relative_link_resolves(path: Path) -> None:
    broken = []
    for target in links_in(_markdown_of(path)):
        if not _is_local(target):
            continue
        file_part = unquote(target.split("#", 1)[0].split("?", 1)[0])
        resolved = (path.parent / file_part).resolve()
        if not resolved.exists():
            shown = resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved
            broken.append(f"{target} -> {shown} (missing)")
        elif not resolved.is_relative_to(ROOT):
            broken.append(f"{target} points outside the repository (JupyterLab cannot open it)")
    assert not broken, f"{path.relative_to(ROOT)} has broken links:\n  " + "\n  ".join(broken)


def test_start_page_lists_every_section_and_is_up_to_date() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_start_page.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = _markdown_of(ROOT / "START_HERE.ipynb")
    for s in SECTIONS:
        for target in (s.notebook, s.exercises, s.solutions):
            assert f"]({target})" in text, f"the start page does not link {target}"
            assert (ROOT / target).is_file(), f"{target} is listed but missing"


@pytest.mark.parametrize("index", range(len(SECTIONS)), ids=[s.number for s in SECTIONS])
def test_section_notebook_ends_with_next_links(index: int) -> None:
    s = SECTIONS[index]
    nb = nbformat.read(ROOT / s.notebook, as_version=4)
    last = [c for c in nb.cells if c.cell_type == "markdown"][-1].source
    targets = links_in(last)
    assert last.lstrip().startswith("## Next"), f"{s.notebook} should end with a '## Next' cell"
    assert f"../{s.exercises}" in targets, f"{s.notebook}'s last cell does not link its exercises"
    assert "../START_HERE.ipynb" in targets, f"{s.notebook}'s last cell does not link the start page"
    if index + 1 < len(SECTIONS):
        nxt = f"{SECTIONS[index + 1].stem}.ipynb"
        assert nxt in targets, f"{s.notebook}'s last cell does not link the next section ({nxt})"
