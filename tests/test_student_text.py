"""Student text is for students: no developer talk in what a student reads (issue 19).

Scans the committed text of every student-facing file (notebooks/, exercises/, solutions/,
START_HERE.ipynb, exercises/README.md): markdown cells, the comments and string literals of code
cells (what ``print`` shows and what a student reads in the code), and any saved text outputs.
Words about tests, benchmarks, CI, dependencies, memory allocators, "our runs", maintainers,
development machines, profiles and dates of measurement do not belong there: a notebook says what
the student's own run will show.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDENT_FILES = sorted(
    [
        *(p for d in ("notebooks", "exercises", "solutions") for p in (ROOT / d).glob("*.ipynb")),
        ROOT / "START_HERE.ipynb",
        ROOT / "exercises" / "README.md",
    ]
)
IDS = [str(p.relative_to(ROOT)) for p in STUDENT_FILES]

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
# (pattern, what to say); word boundaries so "CIFAR" or "tested" never match.
DEVELOPER_WORDS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bunit[- ]?tests?\b", re.I), "unit tests"),
    (re.compile(r"(?<![\w./])tests/", re.I), "a tests/ path"),
    (re.compile(r"(?<![\w./])benchmarks/", re.I), "a benchmarks/ path"),
    (re.compile(r"\bCI\b"), "CI"),
    (re.compile(r"\bcontinuous integration\b", re.I), "continuous integration"),
    (re.compile(r"\bdev(elopment)?[- ]dependenc(y|ies)\b", re.I), "a dev dependency"),
    (re.compile(r"\bmalloc\b", re.I), "malloc"),
    (re.compile(r"\bour runs?\b", re.I), '"our runs"'),
    (re.compile(r"\bwe have not\b", re.I), '"we have not"'),
    (re.compile(r"\bPROFILE="), "PROFILE="),
    (re.compile(r"\bmaintainers?\b", re.I), "maintainer"),
    (re.compile(r"\bdevelopment machines?\b", re.I), "development machine"),
    (re.compile(rf"\b({_MONTHS})\b(\s+\d{{1,2}},?)?\s+\d{{4}}\b"), "a date"),
    (re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b"), "a date"),
    # years of measurement (the course's own time), not the years of cited papers
    (re.compile(r"\b20(2[6-9]|[3-9]\d)\b"), "a year of measurement"),
]


def developer_words(text: str) -> list[str]:
    """Each developer word in ``text`` with a little context, e.g. ``"CI" in '...'``."""
    found = []
    for pattern, what in DEVELOPER_WORDS:
        for m in pattern.finditer(text):
            start, end = max(m.start() - 30, 0), min(m.end() + 30, len(text))
            context = " ".join(text[start:end].split())
            found.append(f"{what} ({m.group(0)!r}) in '...{context}...'")
    return found


def code_text(source: str) -> str:
    """The comments and string literals of a code cell (what a student reads there)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    pieces = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
            if tok.type in (tokenize.COMMENT, tokenize.STRING) or tok.type == getattr(
                tokenize, "FSTRING_MIDDLE", -1
            ):
                pieces.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source  # not plain Python: read all of it
    return "\n".join(pieces)


def output_text(outputs: list) -> str:
    """The text of saved outputs (stream text and text/plain or text/markdown results)."""
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        data = out.get("data", {})
        for mime in ("text/plain", "text/markdown"):
            if mime in data:
                parts.append("".join(data[mime]) if isinstance(data[mime], list) else data[mime])
    return "\n".join(parts)


def student_text(path: Path) -> list[tuple[str, str]]:
    """``(where, text)`` pieces a student reads in ``path``."""
    if path.suffix == ".md":
        return [("text", path.read_text(encoding="utf-8"))]
    nb = nbformat.read(path, as_version=4)
    pieces = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            pieces.append((f"cell {i} (markdown)", cell.source))
        elif cell.cell_type == "code":
            pieces.append((f"cell {i} (code comments/strings)", code_text(cell.source)))
            if cell.get("outputs"):
                pieces.append((f"cell {i} (saved output)", output_text(cell.outputs)))
    return pieces


def test_scanner_catches_developer_words_and_spares_ordinary_ones() -> None:
    for bad in (
        "This is covered by unit tests.",
        "see tests/test_ops.py",
        "figures from benchmarks/speed.py",
        "CI runs this in fast mode",
        "a dev dependency of this project",
        "malloc tuned",
        "in our runs it took 3 minutes",
        "we have not yet run it on a GPU",
        "make execute PROFILE=laptop",
        "ask the maintainer",
        "on the development machine",
        "measured in November 2026",
        "timed on 2026-11-30",
        "last checked 2027",
    ):
        assert developer_words(bad), bad
    for fine in (
        "CIFAR-10 has ten classes",
        "test the model once on the test split",
        "the check tests your function",
        "ResNet (He et al., 2016) and ViT (2020)",
        "a circuit; a CIRCLE; Ci",
        "benchmark numbers for your machine",
    ):
        assert developer_words(fine) == [], fine


def test_code_text_reads_comments_and_strings_only() -> None:
    source = 'x = run_tests_ci()  # fine\nprint("measured in our runs")\n%time f()\n'
    text = code_text(source)
    assert "our runs" in text
    assert "run_tests_ci" not in text
    assert developer_words(code_text("y = 1  # checked by CI\n"))


@pytest.mark.parametrize("path", STUDENT_FILES, ids=IDS)
def test_no_developer_words_in_student_text(path: Path) -> None:
    problems = [f"{where}: {w}" for where, text in student_text(path) for w in developer_words(text)]
    assert not problems, f"{path.relative_to(ROOT)}:\n  " + "\n  ".join(problems)
