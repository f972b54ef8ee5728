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


def test_describe_cpu() -> None:
    assert describe_device(torch.device("cpu")).startswith("cpu:")
