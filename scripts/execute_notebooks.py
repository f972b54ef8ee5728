"""Write executed copies of the notebooks with papermill (``make execute``).

Full mode by default (what a reader gets); ``CNNBOOK_FAST=1`` or ``--fast`` selects CI sizes.
Extra ``-p NAME VALUE`` pairs are injected into every notebook's ``parameters`` cell.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import papermill as pm

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="build/executed", help="output folder (ignored by git)")
    parser.add_argument("--fast", action="store_true", help="fast (CI) sizes")
    parser.add_argument("--only", default="", help="substring filter on notebook names")
    parser.add_argument("--dirs", nargs="+", default=["notebooks", "solutions"])
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = parser.parse_args(argv)
    if args.fast:
        os.environ["CNNBOOK_FAST"] = "1"
    params = {k: _parse(v) for k, v in args.p}
    out = ROOT / args.out
    failures = []
    times = []
    for folder in args.dirs:
        for nb in sorted((ROOT / folder).glob("*.ipynb")):
            if args.only not in nb.name:
                continue
            dest = out / folder / nb.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
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
            secs = time.perf_counter() - start
            times.append((secs, nb))
            print(f"{secs:7.1f} s  {folder}/{nb.name}", flush=True)
    print(f"{sum(t for t, _ in times):7.1f} s  total; executed copies in {out}")
    for nb, exc in failures:
        print(f"FAILED {nb.name}: {type(exc).__name__}: {str(exc)[:500]}", file=sys.stderr)
    return 1 if failures else 0


def _parse(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(value, value)


if __name__ == "__main__":
    raise SystemExit(main())
