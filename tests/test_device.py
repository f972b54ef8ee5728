"""cnnbook.device.run_settings: precision, memory layout and transfer options per device."""

from __future__ import annotations

import pytest
import torch

from cnnbook import device


def test_cpu_settings() -> None:
    s = device.run_settings("cpu")
    assert s.amp_dtype is None and not s.grad_scaler
    assert s.channels_last and not s.pin_memory and not s.non_blocking
    line = s.describe()
    assert line.startswith("cpu:") and "float32" in line and "channels_last" in line
    assert not device.run_settings("cpu", amp=True, channels_last=False).channels_last


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_only_when_asked_and_native(monkeypatch: pytest.MonkeyPatch,
                                             native: bool) -> None:
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    assert device.run_settings("cpu").amp_dtype is None  # default: float32 on a CPU
    chosen = device.run_settings("cpu", amp=True)
    assert chosen.amp_dtype == (torch.bfloat16 if native else None)
    assert not chosen.grad_scaler
    assert ("bf16 autocast" in chosen.describe()) is native


@pytest.mark.parametrize("bf16,dtype,scaler", [(True, torch.bfloat16, False),
                                               (False, torch.float16, True)])
def test_cuda_precision_choice(monkeypatch: pytest.MonkeyPatch, bf16: bool,
                               dtype: torch.dtype, scaler: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(device, "describe_device", lambda d: "cuda: test GPU")
    s = device.run_settings(torch.device("cuda"))
    assert s.amp_dtype == dtype and s.grad_scaler is scaler
    assert s.pin_memory and s.non_blocking and s.channels_last
    assert ("grad scaler" in s.describe()) is scaler
    assert device.run_settings(torch.device("cuda"), amp=False).amp_dtype is None


def test_scaler_only_for_fp16() -> None:
    assert device.needs_grad_scaler(torch.float16)
    assert not device.needs_grad_scaler(torch.bfloat16)
    assert not device.needs_grad_scaler(None)
