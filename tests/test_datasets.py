"""cnnbook.datasets: class folders, decoded-array cache, finding/downloading CIFAR-10 and MNIST."""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnbook import data_paths, datasets
from cnnbook.arrays import ImageArrays, channel_stats

ROOT = Path(__file__).resolve().parents[1]


def _shared_data() -> Path | None:
    env = os.environ.get(data_paths.DATA_ENV)
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data"]:
        if (cand / "cifar10" / "train").is_dir() and (cand / "MNIST" / "raw").is_dir():
            return cand
    return None


SHARED = _shared_data()
needs_data = pytest.mark.skipif(SHARED is None, reason="no local CIFAR-10/MNIST copy (set CNNBOOK_DATA)")


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv(data_paths.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _write_folder(
    root: Path, per_class: int = 3, classes=("a", "b"), size=8, seed: int = 0
) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {}
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        out[name] = []
        for i in range(per_class):
            px = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(px).save(root / name / f"{i:03d}.png")
            out[name].append(px)
    return out


def _synthetic(n: int = 16, size: int = 8, seed: int = 0) -> ImageArrays:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    # labels = index, so each output of a loader can be traced back to its source image
    return ImageArrays(images, torch.arange(n), [str(i) for i in range(n)], (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))


# ---------------------------------------------------------------- folders, cache, bad input
def test_image_folder_reads_pixels_and_labels(cache: Path, tmp_path: Path) -> None:
    src = _write_folder(tmp_path / "ds")
    arrays = datasets.load_image_folder(tmp_path / "ds")
    assert arrays.classes == ["a", "b"]
    assert len(arrays) == 6
    assert arrays.images.shape == (6, 3, 8, 8)
    assert arrays.images.dtype == torch.uint8
    assert arrays.labels.tolist() == [0, 0, 0, 1, 1, 1]
    expected = np.stack(src["a"] + src["b"]).transpose(0, 3, 1, 2)
    assert np.array_equal(arrays.images.numpy(), expected)  # PNG is lossless


def test_cache_is_used_and_invalidated(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_folder(tmp_path / "ds")
    first = datasets.load_image_folder(tmp_path / "ds")
    assert len(list(cache.glob("decoded/*.pt"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(datasets, "_decode_files", boom)
    again = datasets.load_image_folder(tmp_path / "ds")
    assert torch.equal(first.images, again.images)
    # a new file changes the folder listing, so the cache no longer applies
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ds" / "a" / "999.png")
    with pytest.raises(AssertionError, match="decoded again"):
        datasets.load_image_folder(tmp_path / "ds")
    monkeypatch.undo()
    monkeypatch.setenv(data_paths.CACHE_ENV, str(cache))
    assert len(datasets.load_image_folder(tmp_path / "ds")) == 7


def test_corrupt_cache_file_is_decoded_again(cache: Path, tmp_path: Path) -> None:
    _write_folder(tmp_path / "ds")
    first = datasets.load_image_folder(tmp_path / "ds")
    (cached,) = cache.glob("decoded/*.pt")
    cached.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable cache"):
        again = datasets.load_image_folder(tmp_path / "ds")
    assert torch.equal(first.images, again.images)


def test_corrupt_image_is_named(cache: Path, tmp_path: Path) -> None:
    _write_folder(tmp_path / "ds")
    (tmp_path / "ds" / "b" / "001.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(ValueError, match=r"001\.png.*damaged"):
        datasets.load_image_folder(tmp_path / "ds")


def test_missing_and_truncated_folders(cache: Path, tmp_path: Path) -> None:
    _write_folder(tmp_path / "ds")
    with pytest.raises(FileNotFoundError, match=r"lacks the class folders \['c'\]"):
        datasets.load_image_folder(tmp_path / "ds", classes=["a", "b", "c"])
    with pytest.raises(ValueError, match="truncated"):
        datasets.load_image_folder(tmp_path / "ds", expected_per_class=5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.load_image_folder(tmp_path / "nowhere")
    # a CIFAR-10 class-folder copy with one class missing
    _write_folder(tmp_path / "root" / "cifar10" / "train", per_class=1, classes=datasets.CIFAR10_CLASSES[:9])
    with pytest.raises(FileNotFoundError, match="truck"):
        datasets.load_cifar10("train", root=tmp_path / "root")
    with pytest.raises(FileNotFoundError, match="no 'test' folder"):
        datasets.load_cifar10("test", root=tmp_path / "root")


def test_nothing_local_and_offline_says_what_to_do(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(data_paths.DATA_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="CNNBOOK_DATA.*cifar-10-batches-py"):
        datasets.load_cifar10("train", download=False)
    calls = []

    class FailingDownload:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((Path(root), download))
            raise urllib.error.URLError("no route to host")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", FailingDownload)
    monkeypatch.setattr("torchvision.datasets.MNIST", FailingDownload)
    with pytest.raises(FileNotFoundError, match="download failed.*no route"):
        datasets.load_cifar10("train")
    assert calls == [(cache, True)]  # downloads go to the cache folder
    with pytest.raises(FileNotFoundError, match="CNNBOOK_DATA.*MNIST/raw"):
        datasets.load_mnist("test")


def test_bad_env_and_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(data_paths.DATA_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="CNNBOOK_DATA=.*not a folder"):
        datasets.load_cifar10("train")
    with pytest.raises(ValueError, match="Unknown split 'val'"):
        datasets.load_mnist("val")


@needs_data
def test_cifar10_from_class_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data_paths.DATA_ENV, str(SHARED))
    train, test = datasets.load_cifar10("train"), datasets.load_cifar10("test")
    assert train.images.shape == (50_000, 3, 32, 32)
    assert test.images.shape == (10_000, 3, 32, 32)
    assert train.classes == list(datasets.CIFAR10_CLASSES)
    assert train.class_counts().tolist() == [5000] * 10
    assert test.class_counts().tolist() == [1000] * 10
    # decoded pixels equal PIL's decoding of the same file
    first = sorted((SHARED / "cifar10" / "test" / "cat").iterdir())[0]
    pil = np.asarray(Image.open(first).convert("RGB")).transpose(2, 0, 1)
    cat = datasets.CIFAR10_CLASSES.index("cat")
    assert np.array_equal(test.images[test.labels == cat][0].numpy(), pil)
    mean, std = channel_stats(train)
    # the shared copy is JPEG re-encoded (see its README): means within half a grey level...
    assert np.allclose(mean, datasets.CIFAR10_MEAN, atol=0.005)
    # ... and standard deviations about 1% below the published ones
    assert np.allclose(std, datasets.CIFAR10_STD, rtol=0.03)


@needs_data
def test_mnist_matches_published_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data_paths.DATA_ENV, str(SHARED))
    train = datasets.load_mnist("train")
    assert train.images.shape == (60_000, 1, 28, 28)
    assert train.class_counts().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    mean, std = channel_stats(train)
    assert mean[0] == pytest.approx(datasets.MNIST_MEAN[0], abs=1e-3)
    assert std[0] == pytest.approx(datasets.MNIST_STD[0], abs=1e-3)
    assert len(datasets.load_mnist("test")) == 10_000


# ---------------------------------------------------------------- subsets
def test_mixed_image_sizes_are_named(cache: Path, tmp_path: Path) -> None:
    _write_folder(tmp_path / "ds")
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(tmp_path / "ds" / "b" / "002.png")
    with pytest.raises(ValueError, match=r"002\.png has shape \(3, 9, 8\).*same size"):
        datasets.load_image_folder(tmp_path / "ds")


# ---------------------------------------------------------------- cache folder, CIFAR-10 Dataset
def test_decoded_cache_dir_follows_cache_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(data_paths.CACHE_ENV, str(tmp_path / "c"))
    assert datasets.decoded_cache_dir() == tmp_path / "c" / "decoded"
    monkeypatch.delenv(data_paths.CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert datasets.decoded_cache_dir() == tmp_path / ".cache" / "cnnbook" / "decoded"


def test_decoded_arrays_are_written_to_decoded_cache_dir(cache: Path, tmp_path: Path) -> None:
    _write_folder(tmp_path / "ds")
    assert not datasets.decoded_cache_dir().exists()  # nothing is created before it is needed
    datasets.load_image_folder(tmp_path / "ds")
    assert [p.parent for p in cache.rglob("*.pt")] == [datasets.decoded_cache_dir()]
