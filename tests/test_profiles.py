"""CPU speed profiles (cnnbook.profiles) and native-bfloat16 detection under them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnbook import device, profiles

ROOT = Path(__file__).resolve().parents[1]


def test_laptop_profile_sets_the_capability_limits_and_threads() -> None:
    env = profiles.apply("laptop", {"PATH": "/bin"})
    assert env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert env["DNNL_MAX_CPU_ISA"] == "AVX2"
    assert env["OMP_NUM_THREADS"] == "2"
    assert env["PATH"] == "/bin"
    assert profiles.is_active("laptop", env)
    assert not profiles.is_active("laptop", {"OMP_NUM_THREADS": "2"})


def test_native_profile_lifts_the_laptop_limits() -> None:
    env = profiles.apply("native", profiles.apply("laptop", {}))
    assert "ATEN_CPU_CAPABILITY" not in env
    assert "DNNL_MAX_CPU_ISA" not in env
    assert env["OMP_NUM_THREADS"] == "2"


def test_unknown_profile_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"'phone'.*laptop.*native"):
        profiles.get("phone")


@pytest.mark.parametrize(
    ("flags", "capability", "isa", "native"),
    [
        ("fpu avx2 avx512f avx512_bf16", "AVX512", None, True),
        ("fpu avx2 amx_bf16", "AVX512", "ALL", True),
        ("fpu avx2 avx512f avx512_bf16", "AVX2", None, False),  # ATEN_CPU_CAPABILITY=avx2
        ("fpu avx2 avx512f avx512_bf16", "AVX512", "AVX2", False),  # DNNL_MAX_CPU_ISA=AVX2
        ("fpu avx2 avx512f avx512_bf16", "AVX512", "AVX512_CORE_BF16", True),
        ("fpu avx2 avx512f", "AVX512", None, False),  # AVX-512 without BF16
        ("", "DEFAULT", None, False),  # no /proc/cpuinfo
    ],
)
def test_native_bf16_needs_the_flag_and_uncapped_kernels(
    monkeypatch: pytest.MonkeyPatch, flags: str, capability: str, isa: str | None, native: bool
) -> None:
    monkeypatch.setattr(device, "_cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    if isa is None:
        monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("DNNL_MAX_CPU_ISA", isa)
    assert device.cpu_has_native_bf16() is native


@pytest.mark.skipif(sys.platform != "linux", reason="ATEN_CPU_CAPABILITY is read on x86 Linux")
def test_laptop_profile_reaches_a_child_process() -> None:
    env = profiles.apply("laptop", dict(os.environ))
    probe = "import torch; from cnnbook import profiles; print(profiles.current())"
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    if torch.backends.cpu.get_cpu_capability() in {"AVX2", "AVX512"}:  # an x86 machine
        assert out.startswith("AVX2 kernels (oneDNN up to AVX2), float32")
    assert "2 threads" in out
