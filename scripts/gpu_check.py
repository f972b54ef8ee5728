"""Check the device paths on a machine with an NVIDIA GPU or an Apple GPU (issue 18).

    python scripts/gpu_check.py            # or: make gpu-check
    python scripts/gpu_check.py --allow-cpu --notebooks 14_05   # a dry run on a CPU

1. names the device, the precision training cells get and why (as ``python -m cnnbook doctor``);
2. on CUDA, runs ``tests/test_gpu.py`` (the precision rule on the real card, mixed-precision
   training, float32 evaluation, checkpoints across devices);
3. executes, in fast mode, every notebook that trains on the device (14.5, 14.6, 14.9, 14.13,
   14.14, 14.15, 14.16) and prints each one's time and result.

Exits non-zero if anything fails. Works the same on Windows, macOS and Linux (no ``make`` needed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEVICE_NOTEBOOKS = ("14_05", "14_06", "14_09", "14_13", "14_14", "14_15", "14_16")


def _run(cmd: list[str], env: dict[str, str]) -> tuple[bool, float]:
    start = time.perf_counter()
    ok = subprocess.call(cmd, cwd=ROOT, env=env) == 0
    return ok, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--allow-cpu", action="store_true", help="run even without a GPU (a dry run)")
    parser.add_argument(
        "--notebooks", nargs="*", default=list(DEVICE_NOTEBOOKS), help="section prefixes, e.g. 14_15"
    )
    args = parser.parse_args(argv)

    from cnnbook.__main__ import device_rows
    from cnnbook.device import pick_device, tier

    for name, ok, detail in device_rows():
        print(f"{'ok ' if ok else '!! '} {name:<10} {detail}")
    dev = pick_device()
    if tier(dev) != "gpu" and not args.allow_cpu:
        print("No GPU here (CUDA or Apple MPS): nothing to check. Pass --allow-cpu for a dry run.")
        return 1
    env = {**os.environ, "CNNBOOK_FAST": "1", "MPLBACKEND": "Agg", "PYTHONIOENCODING": "utf-8"}
    results: list[tuple[str, bool, float]] = []
    if dev.type == "cuda":
        ok, secs = _run(
            [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests/test_gpu.py"], env
        )
        results.append(("tests/test_gpu.py", ok, secs))
    for prefix in args.notebooks:
        for nb in sorted((ROOT / "notebooks").glob(f"{prefix}_*.ipynb")):
            cmd = [sys.executable, "-m", "pytest", "-q", "--nbval-lax", "--nbval-current-env"]
            ok, secs = _run([*cmd, "-p", "no:cacheprovider", str(nb.relative_to(ROOT))], env)
            results.append((nb.name, ok, secs))
    print()
    for name, ok, secs in results:
        print(f"{'passed' if ok else 'FAILED'}  {secs:7.1f} s  {name}")
    failed = [name for name, ok, _ in results if not ok]
    print(f"{len(results) - len(failed)} of {len(results)} passed on {dev}.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
