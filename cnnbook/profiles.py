"""CPU speed profiles for the run-time tables in the README (sections 14.15 and all notebooks).

Timings depend on the CPU. Most students' laptops train in float32 on AVX2; some servers (and
recent desktops) compute bfloat16 natively. A *profile* is a set of environment variables
that makes any x86 machine behave like one of these:

* ``laptop``: float32 on AVX2 kernels with 2 threads (``ATEN_CPU_CAPABILITY=avx2`` for
  PyTorch's own kernels, ``DNNL_MAX_CPU_ISA=AVX2`` for oneDNN's convolutions, and
  ``OMP_NUM_THREADS=2``). :func:`cpu_has_native_bf16` reports ``False`` under it, so recipes
  that use bfloat16 where it is native fall back to float32, as on a laptop.
* ``native``: whatever this CPU does best (bfloat16 where it is native), with 2 threads.

The variables are read when PyTorch starts, so they must be in the environment of the
process that imports torch: :func:`apply` sets them in an environment mapping (for a child
process, e.g. a notebook kernel), and :func:`reexec_under` restarts a script under them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Profile:
    """A named CPU speed profile.

    Attributes:
        name: ``"laptop"`` or ``"native"``.
        description: One line for tables and logs.
        env: Environment variables that select it.
    """

    name: str
    description: str
    env: dict[str, str] = field(default_factory=dict)


_THREADS = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}

PROFILES: dict[str, Profile] = {
    "laptop": Profile(
        "laptop",
        "laptop profile: float32, AVX2 kernels, 2 threads",
        {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", **_THREADS},
    ),
    "native": Profile(
        "native", "native profile: this CPU's best kernels (bfloat16 where native), 2 threads", dict(_THREADS)
    ),
}


def get(name: str) -> Profile:
    """The profile called ``name``; a ``ValueError`` naming the choices otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"Unknown CPU profile {name!r}; choose one of {sorted(PROFILES)}.") from None


def apply(profile: Profile | str, env: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Set ``profile``'s variables in ``env`` (``None``: ``os.environ``) and return it.

    The ``native`` profile also removes the ``laptop`` profile's capability limits, so a child
    process started from a shell that had them gets the CPU's best kernels.
    """
    profile = get(profile) if isinstance(profile, str) else profile
    env = os.environ if env is None else env
    if profile.name == "native":
        for key in ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA"):
            env.pop(key, None)
    env.update(profile.env)
    return env


def is_active(profile: Profile | str, env: MutableMapping[str, str] | None = None) -> bool:
    """Whether ``env`` (``None``: ``os.environ``) already holds ``profile``'s variables."""
    profile = get(profile) if isinstance(profile, str) else profile
    env = os.environ if env is None else env
    return all(env.get(k) == v for k, v in profile.env.items())


def reexec_under(profile: Profile | str) -> None:
    """Restart this Python script under ``profile`` unless it already runs under it.

    Must be called before ``torch`` is imported (the variables are read at start-up).
    """
    profile = get(profile) if isinstance(profile, str) else profile
    if is_active(profile):
        return
    if "torch" in sys.modules:
        raise RuntimeError(
            "reexec_under must run before torch is imported (it reads the variables at start-up)."
        )
    _restart([sys.executable, *sys.argv], apply(profile, dict(os.environ)))


def _windows() -> bool:
    return os.name == "nt"


def _restart(argv: list[str], env: MutableMapping[str, str]) -> None:
    """Run ``argv`` with ``env`` in place of this process.

    POSIX replaces the process (``os.execve``). Windows has no such call (its ``execve`` starts a
    new process, returns at once and passes arguments unquoted, so a path with a space splits):
    there the script runs as a child and this process exits with its status.
    """
    if _windows():
        import subprocess

        raise SystemExit(subprocess.call(argv, env=env))
    os.execve(argv[0], argv, env)


def current() -> str:
    """This process's kernels, precision and threads, e.g. ``AVX2 kernels, float32, 2 threads``."""
    import torch

    from cnnbook.device import cpu_has_native_bf16

    precision = "bfloat16 native" if cpu_has_native_bf16() else "float32 (no native bfloat16)"
    isa = os.environ.get("DNNL_MAX_CPU_ISA")
    return (
        f"{torch.backends.cpu.get_cpu_capability()} kernels"
        + (f" (oneDNN up to {isa})" if isa else "")
        + f", {precision}, {torch.get_num_threads()} threads"
    )
