"""Remove the ``jupytext`` metadata that a percent-format round trip leaves in notebooks.

Notebooks are written as jupytext scripts and converted (CONTRIBUTING.md, "Authoring notebooks");
the conversion records jupytext's settings in the notebook's metadata, which the committed
``.ipynb`` does not need. Run this after converting:

    python scripts/strip_jupytext.py            # strip every notebook of the collection
    python scripts/strip_jupytext.py --check    # exit 1 and list the notebooks that carry it
    python scripts/strip_jupytext.py PATH ...   # only these notebooks

Regenerate the exercises afterwards (``python scripts/make_exercises.py``): they copy the
solutions' metadata.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("notebooks", "solutions", "exercises")


def collection(root: Path = ROOT) -> list[Path]:
    """Every notebook of the collection: the start page and the three notebook folders."""
    paths = [root / "START_HERE.ipynb"]
    for folder in FOLDERS:
        paths += sorted((root / folder).glob("*.ipynb"))
    return [p for p in paths if p.is_file()]


def carries_jupytext(nb: nbformat.NotebookNode) -> bool:
    """Whether the notebook or one of its cells has jupytext metadata."""
    return "jupytext" in nb.metadata or any("jupytext" in c.get("metadata", {}) for c in nb.cells)


def strip(nb: nbformat.NotebookNode) -> bool:
    """Remove jupytext metadata from ``nb`` in place; returns whether there was any."""
    found = carries_jupytext(nb)
    nb.metadata.pop("jupytext", None)
    for cell in nb.cells:
        cell.get("metadata", {}).pop("jupytext", None)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: the whole collection)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook carries jupytext metadata")
    args = parser.parse_args(argv)
    found = []
    for path in args.paths or collection():
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if not strip(nb):
            continue
        found.append(path)
        if args.check:
            print(f"{path}: jupytext metadata; run `python scripts/strip_jupytext.py`")
        else:
            text = nbformat.writes(nb)
            path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8", newline="\n")
            print(f"stripped {path}")
    return 1 if args.check and found else 0


if __name__ == "__main__":
    raise SystemExit(main())
