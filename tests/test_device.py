"""cnnbook.device: precision by compute capability, layout, placement, autocast and sizing per device."""

from __future__ import annotations

import pytest
import torch

from cnnbook import device


def test_cpu_settings() -> None:
    s = device.run_settings("cpu")
    assert s.amp_dtype is None
    assert not s.grad_scaler
    assert s.channels_last
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


CAPABILITIES = [
    ((7, 0), torch.float16),  # V100
    ((7, 5), torch.float16),  # T4 (Colab), RTX 20xx
    ((8, 0), torch.bfloat16),  # A100
    ((9, 0), torch.bfloat16),  # H100
]


@pytest.mark.parametrize(("capability", "dtype"), CAPABILITIES)
def test_cuda_precision_follows_compute_capability(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], dtype: torch.dtype
) -> None:
    """bf16 only from 8.0; the emulation-counting bf16 query says yes everywhere and is ignored."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulated counts
    monkeypatch.setattr(device, "describe_device", lambda d: "cuda: test GPU")
    s = device.run_settings(torch.device("cuda"))
    assert s.amp_dtype == dtype
    scaler = dtype == torch.float16
    assert s.grad_scaler is scaler
    assert s.non_blocking
    assert s.channels_last
    assert f"{capability[0]}.{capability[1]}" in s.reason
    assert ("grad scaler" in s.describe()) is scaler
    assert "pinned" not in s.describe()  # nothing here pins memory
    assert device.run_settings(torch.device("cuda"), amp=False).amp_dtype is None
    assert device.autocast_dtype(torch.device("cuda:0"), cpu_bf16=True) == dtype


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


def test_tier_sizes_mps_like_a_gpu() -> None:
    assert device.tier("cpu") == "cpu"
    assert device.tier(torch.device("cuda:1")) == "gpu"
    assert device.tier("mps") == "gpu"


def test_autocast_builds_nothing_in_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.autocast("mps", enabled=False) raises on older torch: float32 must not build one."""
    import contextlib

    def no_autocast(*args, **kwargs):
        raise AssertionError("torch.autocast built for a float32 run")

    monkeypatch.setattr(torch, "autocast", no_autocast)
    mps = device.RunSettings(torch.device("mps"), None, False, False, False)
    assert isinstance(mps.autocast(), contextlib.nullcontext)
    with device.run_settings("cpu").autocast():
        pass


def test_autocast_opens_the_chosen_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    with device.run_settings("cpu", amp=True).autocast():
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")


def test_place_moves_and_lays_out_and_model_device_reads_it() -> None:
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).double()
    assert device.model_device(model) == torch.device("cpu")
    assert not device.is_channels_last(model)
    placed = device.run_settings("cpu").place(model)
    assert placed is model
    assert device.is_channels_last(model)
    assert device.settings_for(model).channels_last
    plain = device.run_settings("cpu", channels_last=False).place(nn.Conv2d(3, 4, 3))
    assert not device.is_channels_last(plain)
    assert device.model_device(nn.ReLU()) == torch.device("cpu")  # nothing to move: the CPU
    bn_only = nn.BatchNorm2d(3, affine=False)  # buffers only
    assert device.model_device(bn_only) == torch.device("cpu")


def test_batches_move_and_lay_out() -> None:
    s = device.run_settings("cpu")
    x, y = next(s.batches([(torch.randn(2, 3, 4, 4), torch.tensor([0, 1]))]))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert y.tolist() == [0, 1]
