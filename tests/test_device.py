"""cnnbook.device.run_settings: precision, memory layout and transfer options per device."""

from __future__ import annotations

import pytest
import torch

from cnnbook import device


def test_cpu_settings() -> None:
    s = device.run_settings("cpu")
    assert s.amp_dtype is None
    assert not s.grad_scaler
    assert s.channels_last
    assert not s.pin_memory
    assert not s.non_blocking
    line = s.describe()
    assert line.startswith("cpu:")
    assert "float32" in line
    assert "channels_last" in line
    assert not device.run_settings("cpu", amp=True, channels_last=False).channels_last


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_only_when_asked_and_native(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    assert device.run_settings("cpu").amp_dtype is None  # default: float32 on a CPU
    chosen = device.run_settings("cpu", amp=True)
    assert chosen.amp_dtype == (torch.bfloat16 if native else None)
    assert not chosen.grad_scaler
    assert ("bf16 autocast" in chosen.describe()) is native


@pytest.mark.parametrize(
    ("bf16", "dtype", "scaler"), [(True, torch.bfloat16, False), (False, torch.float16, True)]
)
def test_cuda_precision_choice(
    monkeypatch: pytest.MonkeyPatch, bf16: bool, dtype: torch.dtype, scaler: bool
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(device, "describe_device", lambda d: "cuda: test GPU")
    s = device.run_settings(torch.device("cuda"))
    assert s.amp_dtype == dtype
    assert s.grad_scaler is scaler
    assert s.pin_memory
    assert s.non_blocking
    assert s.channels_last
    assert ("grad scaler" in s.describe()) is scaler
    assert device.run_settings(torch.device("cuda"), amp=False).amp_dtype is None


def test_scaler_only_for_fp16() -> None:
    assert device.needs_grad_scaler(torch.float16)
    assert not device.needs_grad_scaler(torch.bfloat16)
    assert not device.needs_grad_scaler(None)


@pytest.mark.parametrize("native", [True, False])
def test_autocast_dtype_on_cpu(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert device.autocast_dtype(cpu) is None  # float32 unless asked
    assert device.autocast_dtype(cpu, cpu_bf16=True) == (torch.bfloat16 if native else None)


@pytest.mark.parametrize(("bf16", "dtype"), [(True, torch.bfloat16), (False, torch.float16)])
def test_autocast_dtype_on_cuda(monkeypatch: pytest.MonkeyPatch, bf16: bool, dtype: torch.dtype) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert device.autocast_dtype(torch.device("cuda")) == dtype
    assert device.autocast_dtype(torch.device("cuda:0"), cpu_bf16=True) == dtype


def test_autocast_dtype_elsewhere_is_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    assert device.autocast_dtype(torch.device("mps"), cpu_bf16=True) is None
    assert device.autocast_dtype(torch.device("meta"), cpu_bf16=True) is None


def test_tune_cpu_allocator_returns_bool_and_repeats() -> None:
    """Calls the real mallopt (process-wide, harmless); only the contract is checked."""
    import sys

    first, second = device.tune_cpu_allocator(), device.tune_cpu_allocator()
    assert isinstance(first, bool)
    assert second is first
    if not sys.platform.startswith("linux"):
        assert first is False


def test_tune_cpu_allocator_off_linux_or_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes
    import sys

    def no_libc(name: str, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert device.tune_cpu_allocator() is False
    monkeypatch.setattr(sys, "platform", "darwin")
    assert device.tune_cpu_allocator() is False


def test_load_average(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import re

    if hasattr(os, "getloadavg"):
        assert re.fullmatch(r"load average \d+\.\d\d \d+\.\d\d \d+\.\d\d", device.load_average())
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 1.25, 12.0), raising=False)
    assert device.load_average() == "load average 0.50 1.25 12.00"

    def unavailable() -> tuple[float, float, float]:
        raise OSError("no load average here")

    monkeypatch.setattr(os, "getloadavg", unavailable, raising=False)
    assert device.load_average() == "load average unknown"


def test_machine_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    monkeypatch.setattr(device, "load_average", lambda: "load average 1.00 2.00 3.00")
    cpu = torch.device("cpu")
    line = device.machine_line(cpu)
    assert line == (
        f"machine: {platform.node()} | {device.describe_device(cpu)} | "
        f"torch {torch.__version__} | load average 1.00 2.00 3.00"
    )
    monkeypatch.setattr(device, "pick_device", lambda prefer=None: cpu)
    assert device.machine_line() == line  # no device: the one pick_device chooses
