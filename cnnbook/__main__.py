"""Command line: ``python -m cnnbook doctor`` and ``python -m cnnbook kernel`` (all sections).

``doctor`` prints versions, the device and precision the training cells will use and why
(``CNNBOOK_DEVICE`` forces a device), whether the datasets and pretrained weights are
reachable, and what to do about anything missing. ``kernel`` registers this environment as the
Jupyter kernel ``cnnbook`` that every notebook asks for.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys

KERNEL_NAME = "cnnbook"
KERNEL_DISPLAY = "Python (cnnbook)"
_PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "matplotlib",
    "ipywidgets",
    "jupyterlab",
    "skimage",
    "sklearn",
    "tqdm",
    "torchinfo",
)


def _version(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # report any import failure as text
        return f"MISSING ({type(exc).__name__}: {exc})"
    return str(getattr(mod, "__version__", "installed"))


def doctor_report() -> list[tuple[str, bool, str]]:
    """Check the installation.

    Returns:
        A list of ``(check, ok, detail)`` rows; ``detail`` says what to do when ``ok`` is False.
    """
    from cnnbook import data_paths

    rows: list[tuple[str, bool, str]] = []
    rows.append(("python", sys.version_info >= (3, 11), sys.version.split()[0]))
    for name in _PACKAGES:
        ver = _version(name)
        rows.append(
            (
                name,
                not ver.startswith("MISSING"),
                ver
                if not ver.startswith("MISSING")
                else ver + "; run `python scripts/setup_env.py` (or `make env`)",
            )
        )
    rows.extend(device_rows())
    for name, status in data_paths.dataset_status().items():
        rows.append((f"data: {name}", status.ok, status.detail))
    for name, status in data_paths.weights_status().items():
        rows.append((f"weights: {name}", status.ok, status.detail))
    return rows


def device_rows() -> list[tuple[str, bool, str]]:
    """The ``device``, ``precision`` and ``sizing`` rows of :func:`doctor_report`, with reasons."""
    from cnnbook.device import DEVICE_ENV, pick_device, run_settings, tier

    forced = os.environ.get(DEVICE_ENV, "").strip()
    try:
        dev = pick_device()
    except ValueError as exc:
        return [("device", False, str(exc))]
    settings = run_settings(dev)
    why = (
        f"forced by {DEVICE_ENV}={forced}"
        if forced
        else f"chosen automatically: CUDA, then Apple MPS, then CPU ({DEVICE_ENV}=cpu|cuda|mps forces one)"
    )
    precision = f"training cells: {settings.describe().split(' | ')[1]} ({settings.reason})"
    asked = run_settings(dev, amp=True)
    if asked.amp_dtype != settings.amp_dtype:  # a CPU with native bfloat16
        precision += f"; with amp=True (14.15's plan): {asked.describe().split(' | ')[1]} ({asked.reason})"
    size = tier(dev)
    return [
        ("device", True, f"{settings.describe().split(' | ')[0]}; {why}"),
        ("precision", True, f"{precision}; evaluation: float32"),
        (
            "sizing",
            True,
            f"notebooks size runs for a {size.upper()}"
            + (" (Apple GPUs are sized like NVIDIA ones)" if dev.type == "mps" else ""),
        ),
    ]


def _doctor() -> int:
    rows = doctor_report()
    width = max(len(r[0]) for r in rows)
    for check, ok, detail in rows:
        print(f"{'ok ' if ok else '!! '} {check:<{width}}  {detail}")
    missing = [r for r in rows if not r[1]]
    print()
    if missing:
        print(f"{len(missing)} item(s) need attention (lines marked !!); the rest is ready.")
    else:
        print("Everything is ready.")
    return 0


def _kernel(user: bool) -> int:
    where = ["--user"] if user else ["--sys-prefix"]
    cmd = [
        sys.executable,
        "-m",
        "ipykernel",
        "install",
        *where,
        "--name",
        KERNEL_NAME,
        "--display-name",
        KERNEL_DISPLAY,
    ]
    print("registering Jupyter kernel:", " ".join(cmd))
    return subprocess.call(cmd)


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m cnnbook``."""
    parser = argparse.ArgumentParser(prog="cnnbook", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("doctor", help="check versions, device, data and weights")
    k = sub.add_parser("kernel", help="register this environment as the 'cnnbook' Jupyter kernel")
    k.add_argument(
        "--user",
        action="store_true",
        help="register for your user (e.g. for a conda env) instead of inside the env",
    )
    from cnnbook import progress

    progress.add_arguments(
        sub.add_parser("progress", help="run exercise notebooks and report passed / failed / not attempted")
    )
    lab = sub.add_parser("lab", help="open JupyterLab at the repository root, on the start page")
    lab.add_argument("extra", nargs=argparse.REMAINDER, help="more arguments for `jupyter lab`")
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["lab"] and not {"-h", "--help"} & set(args_in[1:2]):
        # Everything after `lab` goes to JupyterLab as typed (argparse's REMAINDER refuses an
        # option such as `--port 9000` in first position).
        from cnnbook import lab as lab_module

        return lab_module.main(args_in[1:])
    args = parser.parse_args(argv)
    if args.cmd == "lab":
        from cnnbook import lab as lab_module

        return lab_module.main(args.extra)
    if args.cmd == "doctor":
        return _doctor()
    if args.cmd == "progress":
        return progress.run(args)
    return _kernel(args.user)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    raise SystemExit(main())
