"""cnnbook.config (fast/full mode, seeding) and cnnbook.device (CUDA -> MPS -> CPU)."""

from __future__ import annotations

import pytest
import torch

from cnnbook import config
from cnnbook.device import describe_device, pick_device


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_fast_mode_reads_env(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv(config.FAST_ENV, raw)
    assert config.fast_mode() is expected


def test_fast_mode_rejects_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.FAST_ENV, "maybe")
    with pytest.raises(ValueError, match="CNNBOOK_FAST"):
        config.fast_mode()


def test_override_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.FAST_ENV, "1")
    assert config.fast_mode(False) is False
    assert config.pick(None, fast=2, full=20, fast_mode_on=False) == 20


def test_pick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.FAST_ENV, "1")
    assert config.pick(None, fast=2, full=20) == 2
    monkeypatch.setenv(config.FAST_ENV, "0")
    assert config.pick(None, fast=2, full=20) == 20
    assert config.pick(7, fast=2, full=20) == 7


def test_seed_everything_repeats() -> None:
    config.seed_everything(3)
    a = torch.randn(5)
    g = config.seed_everything(3)
    b = torch.randn(5)
    assert torch.equal(a, b)
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=config.seed_everything(3)))


def test_pick_device_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("cnnbook.device._mps_available", lambda: False)
    assert pick_device().type == "cpu"
    monkeypatch.setattr("cnnbook.device._mps_available", lambda: True)
    assert pick_device().type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device().type == "cuda"


def test_pick_device_unavailable_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="not available"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="Unknown device"):
        pick_device("tpu")


def test_cnnbook_device_forces_a_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("cnnbook.device._mps_available", lambda: True)
    monkeypatch.setenv("CNNBOOK_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")  # a misbehaving GPU can be left alone
    monkeypatch.setenv("CNNBOOK_DEVICE", "MPS")
    assert pick_device() == torch.device("mps")
    assert pick_device("cuda:1") == torch.device("cuda:1")  # an argument beats the setting
    monkeypatch.delenv("CNNBOOK_DEVICE")
    assert pick_device() == torch.device("cuda")


def test_cnnbook_device_missing_or_unknown_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("cnnbook.device._mps_available", lambda: False)
    monkeypatch.setenv("CNNBOOK_DEVICE", "cuda")
    with pytest.raises(ValueError, match=r"CNNBOOK_DEVICE='cuda'.*not available.*found: cpu"):
        pick_device()
    monkeypatch.setenv("CNNBOOK_DEVICE", "gpu")
    with pytest.raises(ValueError, match="Unknown device 'gpu'"):
        pick_device()
    with pytest.raises(ValueError, match=r"pick_device\(prefer=...\).*not available"):
        pick_device("mps")


def test_doctor_says_device_precision_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnbook.__main__ import device_rows

    monkeypatch.setenv("CNNBOOK_DEVICE", "cpu")
    rows = {name: (ok, detail) for name, ok, detail in device_rows()}
    assert rows["device"][0]
    assert "forced by CNNBOOK_DEVICE=cpu" in rows["device"][1]
    assert "training cells: float32" in rows["precision"][1]
    assert "evaluation: float32" in rows["precision"][1]
    assert "CPU" in rows["sizing"][1]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (7, 5))
    monkeypatch.setattr("cnnbook.device.describe_device", lambda d: "cuda: Tesla T4")
    monkeypatch.setenv("CNNBOOK_DEVICE", "cuda")
    rows = {name: (ok, detail) for name, ok, detail in device_rows()}
    assert "fp16 autocast + grad scaler" in rows["precision"][1]
    assert "7.5 is below 8.0" in rows["precision"][1]
    assert "GPU" in rows["sizing"][1]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (row,) = device_rows()
    assert row[:2] == ("device", False)
    assert "not available" in row[2]


def test_start_method_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """CNNBOOK_START_METHOD=spawn makes DataLoader workers start as on macOS and Windows."""
    import multiprocessing

    before = multiprocessing.get_start_method(allow_none=True)
    try:
        monkeypatch.setenv(config.START_METHOD_ENV, "spawn")
        config.seed_everything(0)
        assert multiprocessing.get_start_method() == "spawn"
        monkeypatch.setenv(config.START_METHOD_ENV, "teleport")
        with pytest.raises(ValueError, match="CNNBOOK_START_METHOD='teleport'.*spawn"):
            config.apply_start_method()
        monkeypatch.delenv(config.START_METHOD_ENV)
        assert config.apply_start_method() is None
    finally:
        multiprocessing.set_start_method(before, force=True)


def test_start_method_applies_at_import_in_a_fresh_process() -> None:
    """As a notebook kernel starts: importing cnnbook.config applies the setting."""
    import os
    import subprocess
    import sys

    code = "import multiprocessing, cnnbook.config; print(multiprocessing.get_start_method())"
    env = {**os.environ, "CNNBOOK_START_METHOD": "spawn"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "spawn"


def test_describe_cpu() -> None:
    assert describe_device(torch.device("cpu")).startswith("cpu:")
