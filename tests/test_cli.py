"""``python -m cnnbook doctor`` reports what it finds and says how to fix what is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cnnbook import data_paths
from cnnbook.__main__ import doctor_report


def test_doctor_runs_and_names_device() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cnnbook", "doctor"], capture_output=True, text=True, check=True
    ).stdout
    assert "device" in out
    assert "torch" in out


def test_doctor_finds_local_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "cifar10" / "train").mkdir(parents=True)
    (tmp_path / "cifar10" / "test").mkdir()
    monkeypatch.setenv(data_paths.DATA_ENV, str(tmp_path))
    monkeypatch.setenv(data_paths.CACHE_ENV, str(tmp_path / "cache"))
    rows = {name: (ok, detail) for name, ok, detail in doctor_report()}
    assert rows["data: CIFAR-10"][0] is True
    ok, detail = rows["data: MNIST"]
    assert ok is False
    assert "CNNBOOK_DATA" in detail
