"""Execute the notebooks with papermill and write a run-time table (``make execute``).

Full mode by default (what a reader gets); ``CNNBOOK_FAST=1`` or ``--fast`` selects CI sizes.
``--profile laptop`` runs every kernel as on a float32-only laptop (AVX2 kernels, 2 threads;
see :mod:`cnnbook.profiles`), ``--profile native`` with this CPU's best kernels. The table
(``--table``, Markdown) lists each notebook's wall time and the headline figure it asserts
(the printed line matched by :attr:`cnnbook.sections.Section.headline`), with the machine,
profile and load average. Extra ``-p NAME VALUE`` pairs go into every ``parameters`` cell.

Usage::

    python scripts/execute_notebooks.py --profile laptop --dirs notebooks --table build/laptop.md
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
try:  # no torch import: the kernels read the profile
    from cnnbook import profiles
    from cnnbook.sections import SECTIONS
except ImportError:  # run with a Python where cnnbook is not installed: use this checkout's
    sys.path.insert(0, str(ROOT))
    from cnnbook import profiles
    from cnnbook.sections import SECTIONS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/executed", help="output folder (ignored by git)")
    parser.add_argument("--fast", action="store_true", help="fast (CI) sizes")
    parser.add_argument("--only", default="", help="substring filter on notebook names")
    parser.add_argument("--dirs", nargs="+", default=["notebooks", "solutions"])
    parser.add_argument("--profile", choices=sorted(profiles.PROFILES), default=None)
    parser.add_argument("--table", default=None, help="write a Markdown table of times and figures here")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = parser.parse_args(argv)
    import papermill as pm

    if args.fast:
        os.environ["CNNBOOK_FAST"] = "1"
    if args.profile:
        profiles.apply(args.profile)  # inherited by every kernel papermill starts
    params = {k: _parse(v) for k, v in args.p}
    out = ROOT / args.out
    failures, rows = [], []
    header = _header(args.profile)
    print(header, flush=True)
    for folder in args.dirs:
        for nb in sorted((ROOT / folder).glob("*.ipynb")):
            if args.only not in nb.name:
                continue
            dest = out / folder / nb.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            load = _load()
            start = time.perf_counter()
            error = None
            try:
                pm.execute_notebook(
                    str(nb),
                    str(dest),
                    parameters=params,
                    cwd=str(nb.parent),
                    kernel_name="cnnbook",
                    progress_bar=False,
                )
            except Exception as exc:  # keep going, report at the end
                failures.append((nb, exc))
                error = f"FAILED: {type(exc).__name__}"
            secs = time.perf_counter() - start
            figure = error or headline(nb.stem, dest)
            rows.append((f"{folder}/{nb.name}", secs, figure, load))
            print(f"{secs:7.1f} s  {folder}/{nb.name}  | {figure} | load before {load}", flush=True)
    total = sum(r[1] for r in rows)
    print(f"{total:7.1f} s  total; executed copies in {out}")
    if args.table:
        table = Path(args.table)
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text(markdown_table(header, rows, total), encoding="utf-8")
        print(f"table written to {table}")
    for nb, exc in failures:
        print(f"FAILED {nb.name}: {type(exc).__name__}: {str(exc)[:500]}", file=sys.stderr)
    return 1 if failures else 0


def headline(stem: str, executed: Path) -> str:
    """The first printed line of ``executed`` matching the section's headline pattern."""
    import nbformat

    section = next((s for s in SECTIONS if s.stem == stem), None)
    if section is None or not section.headline:
        return ""
    pattern = re.compile(section.headline)
    for cell in nbformat.read(executed, as_version=4).cells:
        for output in cell.get("outputs", []):
            for line in str(output.get("text", "")).splitlines():
                if pattern.search(line):
                    return line.strip()
    return f"(no line matched {section.headline!r})"


def markdown_table(header: str, rows: list[tuple[str, float, str, str]], total: float) -> str:
    """The run as a Markdown table: notebook, wall time, headline figure."""
    lines = [
        header,
        "",
        "| notebook | wall time | headline figure (as printed) |",
        "|---|---:|---|",
    ]
    for name, secs, figure, _load in rows:
        cell = figure.replace("|", "\\|")  # an escaped bar stays inside its table cell
        lines.append(f"| {name} | {_minutes(secs)} | {cell} |")
    lines.append(f"| **total** | **{_minutes(total)}** | |")
    loads = [r[3] for r in rows]
    if loads:
        lines += ["", f"Load average before each notebook: {', '.join(loads)}."]
    return "\n".join(lines) + "\n"


def _minutes(secs: float) -> str:
    return f"{secs:.0f} s" if secs < 90 else f"{secs / 60:.1f} min ({secs:.0f} s)"


def _header(profile: str | None) -> str:
    probe = "from cnnbook import profiles; print(profiles.current())"
    env = dict(os.environ)
    try:
        kernels = subprocess.run(
            [sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        kernels = "unknown"
    name = profiles.get(profile).description if profile else "environment as found"
    mode = "fast" if os.environ.get("CNNBOOK_FAST") else "full"
    return (
        f"{mode} mode, {name}; kernels: {kernels}; CPU: {_cpu_name()}, {os.cpu_count()} cores; "
        f"{time.strftime('%Y-%m-%d')}"
    )


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (OSError, AttributeError):  # Windows has no load average
        return "n/a"


def _parse(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(value, value)


if __name__ == "__main__":
    raise SystemExit(main())
