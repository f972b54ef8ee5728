"""cnnbook.data: loaders, cache, bad input, and the two pipelines' shared augmentation."""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from cnnbook import data, data_paths

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


def _synthetic(n: int = 16, size: int = 8, seed: int = 0) -> data.ImageArrays:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    # labels = index, so each output of a loader can be traced back to its source image
    return data.ImageArrays(
        images, torch.arange(n), [str(i) for i in range(n)], (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    )


# ---------------------------------------------------------------- folders, cache, bad input
def test_image_folder_reads_pixels_and_labels(cache: Path, tmp_path: Path) -> None:
    src = _write_folder(tmp_path / "ds")
    arrays = data.load_image_folder(tmp_path / "ds")
    assert arrays.classes == ["a", "b"]
    assert len(arrays) == 6
    assert arrays.images.shape == (6, 3, 8, 8)
    assert arrays.images.dtype == torch.uint8
    assert arrays.labels.tolist() == [0, 0, 0, 1, 1, 1]
    expected = np.stack(src["a"] + src["b"]).transpose(0, 3, 1, 2)
    assert np.array_equal(arrays.images.numpy(), expected)  # PNG is lossless


def test_cache_is_used_and_invalidated(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_folder(tmp_path / "ds")
    first = data.load_image_folder(tmp_path / "ds")
    assert len(list(cache.glob("decoded/*.pt"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(data, "_decode_files", boom)
    again = data.load_image_folder(tmp_path / "ds")
    assert torch.equal(first.images, again.images)
    # a new file changes the folder listing, so the cache no longer applies
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ds" / "a" / "999.png")
    with pytest.raises(AssertionError, match="decoded again"):
        data.load_image_folder(tmp_path / "ds")
    monkeypatch.undo()
    monkeypatch.setenv(data_paths.CACHE_ENV, str(cache))
    assert len(data.load_image_folder(tmp_path / "ds")) == 7


def test_corrupt_cache_file_is_decoded_again(cache: Path, tmp_path: Path) -> None:
    _write_folder(tmp_path / "ds")
    first = data.load_image_folder(tmp_path / "ds")
    (cached,) = cache.glob("decoded/*.pt")
    cached.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable cache"):
        again = data.load_image_folder(tmp_path / "ds")
    assert torch.equal(first.images, again.images)


def test_corrupt_image_is_named(cache: Path, tmp_path: Path) -> None:
    _write_folder(tmp_path / "ds")
    (tmp_path / "ds" / "b" / "001.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(ValueError, match=r"001\.png.*damaged"):
        data.load_image_folder(tmp_path / "ds")


def test_missing_and_truncated_folders(cache: Path, tmp_path: Path) -> None:
    _write_folder(tmp_path / "ds")
    with pytest.raises(FileNotFoundError, match=r"lacks the class folders \['c'\]"):
        data.load_image_folder(tmp_path / "ds", classes=["a", "b", "c"])
    with pytest.raises(ValueError, match="truncated"):
        data.load_image_folder(tmp_path / "ds", expected_per_class=5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_image_folder(tmp_path / "nowhere")
    # a CIFAR-10 class-folder copy with one class missing
    _write_folder(tmp_path / "root" / "cifar10" / "train", per_class=1, classes=data.CIFAR10_CLASSES[:9])
    with pytest.raises(FileNotFoundError, match="truck"):
        data.load_cifar10("train", root=tmp_path / "root")
    with pytest.raises(FileNotFoundError, match="no 'test' folder"):
        data.load_cifar10("test", root=tmp_path / "root")


def test_nothing_local_and_offline_says_what_to_do(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(data_paths.DATA_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="CNNBOOK_DATA.*cifar-10-batches-py"):
        data.load_cifar10("train", download=False)
    calls = []

    class FailingDownload:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((Path(root), download))
            raise urllib.error.URLError("no route to host")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", FailingDownload)
    monkeypatch.setattr("torchvision.datasets.MNIST", FailingDownload)
    with pytest.raises(FileNotFoundError, match="download failed.*no route"):
        data.load_cifar10("train")
    assert calls == [(cache, True)]  # downloads go to the cache folder
    with pytest.raises(FileNotFoundError, match="CNNBOOK_DATA.*MNIST/raw"):
        data.load_mnist("test")


def test_bad_env_and_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(data_paths.DATA_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="CNNBOOK_DATA=.*not a folder"):
        data.load_cifar10("train")
    with pytest.raises(ValueError, match="Unknown split 'val'"):
        data.load_mnist("val")


def test_array_container_validates() -> None:
    with pytest.raises(TypeError, match="uint8"):
        data.ImageArrays(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64), ["x"])
    with pytest.raises(ValueError, match="labels"):
        data.ImageArrays(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3).long(), ["x"])
    arrays = _synthetic()
    with pytest.raises(ValueError, match="normalisation statistics"):
        data.GPUBatchLoader(data.ImageArrays(arrays.images, arrays.labels, arrays.classes), device="cpu")


# ---------------------------------------------------------------- real data
@needs_data
def test_cifar10_from_class_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data_paths.DATA_ENV, str(SHARED))
    train, test = data.load_cifar10("train"), data.load_cifar10("test")
    assert train.images.shape == (50_000, 3, 32, 32)
    assert test.images.shape == (10_000, 3, 32, 32)
    assert train.classes == list(data.CIFAR10_CLASSES)
    assert train.class_counts().tolist() == [5000] * 10
    assert test.class_counts().tolist() == [1000] * 10
    # decoded pixels equal PIL's decoding of the same file
    first = sorted((SHARED / "cifar10" / "test" / "cat").iterdir())[0]
    pil = np.asarray(Image.open(first).convert("RGB")).transpose(2, 0, 1)
    cat = data.CIFAR10_CLASSES.index("cat")
    assert np.array_equal(test.images[test.labels == cat][0].numpy(), pil)
    mean, std = data.channel_stats(train)
    # the shared copy is JPEG re-encoded (see its README): means within half a grey level...
    assert np.allclose(mean, data.CIFAR10_MEAN, atol=0.005)
    # ... and standard deviations about 1% below the published ones
    assert np.allclose(std, data.CIFAR10_STD, rtol=0.03)


@needs_data
def test_mnist_matches_published_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data_paths.DATA_ENV, str(SHARED))
    train = data.load_mnist("train")
    assert train.images.shape == (60_000, 1, 28, 28)
    assert train.class_counts().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    mean, std = data.channel_stats(train)
    assert mean[0] == pytest.approx(data.MNIST_MEAN[0], abs=1e-3)
    assert std[0] == pytest.approx(data.MNIST_STD[0], abs=1e-3)
    assert len(data.load_mnist("test")) == 10_000


# ---------------------------------------------------------------- subsets
def test_stratified_subset() -> None:
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (250,), generator=g)
    images = torch.arange(250).view(250, 1, 1, 1).to(torch.uint8).expand(250, 1, 2, 2).clone()
    arrays = data.ImageArrays(images, labels, ["x", "y", "z"])
    sub = data.stratified_subset(arrays, 20, seed=0)
    assert sub.class_counts().tolist() == [20, 20, 20]
    assert torch.equal(sub.images, data.stratified_subset(arrays, 20, seed=0).images)
    assert not torch.equal(sub.images, data.stratified_subset(arrays, 20, seed=1).images)
    # every picked image keeps its own label
    idx = torch.tensor([int((arrays.images[:, 0, 0, 0] == v).nonzero()[0]) for v in sub.images[:, 0, 0, 0]])
    assert torch.equal(arrays.labels[idx], sub.labels)
    with pytest.raises(ValueError, match="at most"):
        data.stratified_subset(arrays, 1000)


def test_class_subset_builds_imbalanced_sets() -> None:
    arrays = _synthetic(30)
    arrays = data.ImageArrays(arrays.images, arrays.labels % 3, ["a", "b", "c"])
    sub = data.class_subset(arrays, {"c": 10, "a": 2}, seed=0)
    assert sub.classes == ["c", "a"]
    assert sub.class_counts().tolist() == [10, 2]
    # every kept image comes from the class its new label names
    for img, lab in zip(sub.images, sub.labels, strict=True):
        src = [i for i in range(30) if torch.equal(arrays.images[i], img)]
        assert arrays.classes[int(arrays.labels[src[0]])] == sub.classes[int(lab)]
    with pytest.raises(ValueError, match="Unknown class 'z'"):
        data.class_subset(arrays, {"z": 1})
    with pytest.raises(ValueError, match="has 10 images; ask for 1 to 10, not 11"):
        data.class_subset(arrays, {"a": 11})


# ---------------------------------------------------------------- augmentation semantics
def _candidates(img: torch.Tensor, pad: int) -> dict[tuple[int, int, bool], torch.Tensor]:
    """Every output RandomCrop(padding=pad) + RandomHorizontalFlip can give for ``img``."""
    h, w = img.shape[-2:]
    padded = TF.pad(img, [pad])
    out = {}
    for top in range(2 * pad + 1):
        for left in range(2 * pad + 1):
            crop = TF.crop(padded, top, left, h, w)
            out[(top, left, False)] = crop
            out[(top, left, True)] = TF.hflip(crop)
    return out


def _which(candidates: dict, image: torch.Tensor) -> tuple[int, int, bool]:
    hits = [k for k, v in candidates.items() if torch.equal(v, image)]
    assert hits, "output is not a padded crop (or its mirror image) of its source"
    return hits[0]


def test_crop_flip_matches_torchvision_functional() -> None:
    arrays = _synthetic(6)
    top, left = torch.tensor([0, 8, 3, 4, 8, 1]), torch.tensor([8, 0, 3, 4, 2, 7])
    flip = torch.tensor([True, False, True, False, False, True])
    out = data.crop_flip(arrays.images, top, left, flip, 4)
    for i in range(6):
        ref = TF.crop(TF.pad(arrays.images[i], [4]), int(top[i]), int(left[i]), 8, 8)
        ref = TF.hflip(ref) if flip[i] else ref
        assert torch.equal(out[i], ref)


def _unnormalize(x: torch.Tensor, arrays: data.ImageArrays) -> torch.Tensor:
    m = torch.tensor(arrays.mean).view(-1, 1, 1)
    s = torch.tensor(arrays.std).view(-1, 1, 1)
    return (x * s + m).mul(255).round().to(torch.uint8)


def test_both_pipelines_draw_from_the_same_augmentations() -> None:
    arrays = _synthetic(32)
    cands = [_candidates(img, 4) for img in arrays.images]
    fast = data.GPUBatchLoader(arrays, 8, device="cpu", seed=3)
    classic = data.ImageArrayDataset(
        arrays, data.classic_transforms(True, arrays.mean, arrays.std, size=8, padding=4)
    )
    torch.manual_seed(0)
    for name, draws in (
        ("fast", [(int(i), x) for _ in range(12) for xb, yb in fast for x, i in zip(xb, yb, strict=True)]),
        ("classic", [(i, classic[i][0]) for _ in range(12) for i in range(len(arrays))]),
    ):
        keys = [_which(cands[i], _unnormalize(x, arrays)) for i, x in draws]
        tops, lefts, flips = zip(*keys, strict=True)
        assert set(tops) == set(range(9)), name
        assert set(lefts) == set(range(9)), name
        assert 0.4 < np.mean(flips) < 0.6, name


def test_eval_batches_equal_totensor_normalize() -> None:
    arrays = _synthetic(10)
    loader = data.GPUBatchLoader(arrays, 4, train=False, device="cpu")
    assert len(loader) == 3
    xs, ys = zip(*loader, strict=True)
    x, y = torch.cat(xs), torch.cat(ys)
    assert torch.equal(y, torch.arange(10))  # no shuffling, nothing dropped
    ref = data.ImageArrayDataset(arrays, data.classic_transforms(False, arrays.mean, arrays.std))
    expected = torch.stack([ref[i][0] for i in range(10)])
    assert torch.allclose(x, expected, atol=1e-5)
    assert torch.allclose(arrays.normalized(), expected, atol=1e-5)


def test_loader_shuffles_reproducibly_and_shards() -> None:
    arrays = _synthetic(20)
    a = data.GPUBatchLoader(arrays, 4, device="cpu", seed=7)
    b = data.GPUBatchLoader(arrays, 4, device="cpu", seed=7, channels_last=True)
    epoch_a = [torch.cat([y for _, y in a]) for _ in range(2)]
    assert sorted(epoch_a[0].tolist()) == list(range(20))  # a permutation
    assert not torch.equal(epoch_a[0], epoch_a[1])  # reshuffled per epoch
    xb, yb = next(iter(b))
    assert xb.is_contiguous(memory_format=torch.channels_last)
    b.set_epoch(0)
    xs_b = [x for x, _ in b]
    a.set_epoch(0)
    assert all(torch.equal(x, y) for (x, _), y in zip(a, xs_b, strict=True))
    shards = [
        data.GPUBatchLoader(arrays, 3, device="cpu", seed=1, rank=r, world_size=3, drop_last=False)
        for r in range(3)
    ]
    seen = [torch.cat([y for _, y in s]).tolist() for s in shards]
    assert [len(s) for s in seen] == [7, 7, 7]  # padded to a multiple of 3, as DDP does
    assert set(seen[0]) | set(seen[1]) | set(seen[2]) == set(range(20))
    with pytest.raises(ValueError, match="rank 3"):
        data.GPUBatchLoader(arrays, 3, device="cpu", rank=3, world_size=3)


def test_classic_dataset_items() -> None:
    arrays = _synthetic(4, size=32)
    ds = data.ImageArrayDataset(arrays, data.classic_transforms(True, arrays.mean, arrays.std))
    x, y = ds[2]
    assert x.shape == (3, 32, 32)
    assert x.dtype == torch.float32
    assert y == 2
    raw, _ = data.ImageArrayDataset(arrays)[1]
    assert isinstance(raw, Image.Image)
    assert np.array_equal(np.asarray(raw), arrays.images[1].permute(1, 2, 0).numpy())
    loader = data.classic_loader(ds, batch_size=2, num_workers=0, seed=0)
    xb, yb = next(iter(loader))
    assert xb.shape == (2, 3, 32, 32)
    assert yb.dtype == torch.int64


def test_mixed_image_sizes_are_named(cache: Path, tmp_path: Path) -> None:
    _write_folder(tmp_path / "ds")
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(tmp_path / "ds" / "b" / "002.png")
    with pytest.raises(ValueError, match=r"002\.png has shape \(3, 9, 8\).*same size"):
        data.load_image_folder(tmp_path / "ds")


# ---------------------------------------------------------------- cache folder, CIFAR-10 Dataset
def test_decoded_cache_dir_follows_cache_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(data_paths.CACHE_ENV, str(tmp_path / "c"))
    assert data.decoded_cache_dir() == tmp_path / "c" / "decoded"
    monkeypatch.delenv(data_paths.CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.decoded_cache_dir() == tmp_path / ".cache" / "cnnbook" / "decoded"


def test_decoded_arrays_are_written_to_decoded_cache_dir(cache: Path, tmp_path: Path) -> None:
    _write_folder(tmp_path / "ds")
    assert not data.decoded_cache_dir().exists()  # nothing is created before it is needed
    data.load_image_folder(tmp_path / "ds")
    assert [p.parent for p in cache.rglob("*.pt")] == [data.decoded_cache_dir()]


@pytest.fixture
def fake_cifar(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """``data.load_cifar10`` replaced by 4 random 32x32 images; returns the calls it gets."""
    calls: list[tuple] = []
    small = _synthetic(4, size=32)

    def load(split: str = "train", root=None, download: bool = True) -> data.ImageArrays:
        calls.append((split, root, download))
        return data.ImageArrays(
            small.images, small.labels, list(data.CIFAR10_CLASSES[:4]), data.CIFAR10_MEAN, data.CIFAR10_STD
        )

    monkeypatch.setattr(data, "load_cifar10", load)
    return calls


def test_cifar10_dataset_test_split_is_totensor_normalize(fake_cifar: list[tuple], tmp_path: Path) -> None:
    ds = data.cifar10_dataset("test", root=tmp_path, download=False)
    assert fake_cifar == [("test", tmp_path, False)]
    assert len(ds) == 4
    assert ds.classes == list(data.CIFAR10_CLASSES[:4])
    images = _synthetic(4, size=32).images
    for i in range(4):
        x, y = ds[i]
        expected = TF.normalize(images[i].float() / 255, data.CIFAR10_MEAN, data.CIFAR10_STD)
        assert y == i
        assert x.dtype == torch.float32
        torch.testing.assert_close(x, expected, atol=1e-6, rtol=1e-5)
        assert torch.equal(ds[i][0], x)  # no augmentation: the same tensor every time


def test_cifar10_dataset_train_split_augments(fake_cifar: list[tuple]) -> None:
    from torchvision import transforms

    ds = data.cifar10_dataset("train")
    assert fake_cifar == [("train", None, True)]
    kinds = [type(t) for t in ds.transform.transforms]
    assert kinds == [
        transforms.RandomCrop,
        transforms.RandomHorizontalFlip,
        transforms.ToTensor,
        transforms.Normalize,
    ]
    torch.manual_seed(0)
    draws = {tuple(ds[0][0].flatten()[:64].tolist()) for _ in range(10)}
    assert len(draws) > 1  # random crops and flips


def test_cifar10_dataset_raw_and_custom_transforms(fake_cifar: list[tuple]) -> None:
    images = _synthetic(4, size=32).images
    raw, label = data.cifar10_dataset("test", transform=False)[2]
    assert isinstance(raw, Image.Image)
    assert raw.size == (32, 32)
    assert label == 2
    assert np.array_equal(np.asarray(raw), images[2].permute(1, 2, 0).numpy())
    sizes = data.cifar10_dataset("train", transform=lambda img: img.size)
    assert sizes[1] == ((32, 32), 1)


@needs_data
def test_cifar10_dataset_reads_the_local_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data_paths.DATA_ENV, str(SHARED))
    ds = data.cifar10_dataset("test", download=False)
    assert len(ds) == 10_000
    assert ds.classes == list(data.CIFAR10_CLASSES)
    x, y = ds[0]
    assert x.shape == (3, 32, 32)
    assert 0 <= y < 10
    first = sorted((SHARED / "cifar10" / "test" / data.CIFAR10_CLASSES[y]).iterdir())[0]
    pil = TF.to_tensor(Image.open(first).convert("RGB"))  # image 0 is its class's first file
    torch.testing.assert_close(x, TF.normalize(pil, data.CIFAR10_MEAN, data.CIFAR10_STD))


def test_train_val_split_is_stratified_disjoint_and_complete() -> None:
    from cnnbook.data import ImageArrays, train_val_split

    counts = [100, 60, 40]
    labels = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])[torch.randperm(200)]
    images = torch.arange(200, dtype=torch.int64).reshape(200, 1, 1, 1).to(torch.uint8)
    arrays = ImageArrays(images, labels, ["a", "b", "c"])  # pixel value = image id
    train, val = train_val_split(arrays, val_size=50, seed=3)
    assert len(train) + len(val) == 200
    assert len(val) == 50
    assert val.class_counts().tolist() == [25, 15, 10]  # a quarter of each class
    seen = sorted(train.images.flatten().tolist() + val.images.flatten().tolist())
    assert seen == sorted(images.flatten().tolist())  # disjoint and complete
    again = train_val_split(arrays, val_size=0.25, seed=3)[1]
    assert torch.equal(again.images, val.images)  # same seed, same split
    assert not torch.equal(train_val_split(arrays, 50, seed=4)[1].images, val.images)


@pytest.mark.parametrize("bad", [0, 200, 1.0, 0.0, -3])
def test_train_val_split_rejects_sizes_that_empty_a_side(bad) -> None:
    from cnnbook.data import ImageArrays, train_val_split

    arrays = ImageArrays(torch.zeros(200, 1, 2, 2, dtype=torch.uint8), torch.arange(200) % 4, list("abcd"))
    with pytest.raises(ValueError, match="val_size"):
        train_val_split(arrays, bad)


def test_normalisation_has_one_formula() -> None:
    """normalize, denormalize, GPUBatchLoader and Pretrained.normalize share normalization_affine."""
    from cnnbook.pretrained import Pretrained

    arrays = _synthetic(6)
    mean, std = arrays.mean, arrays.std
    x = data.normalize(arrays.images, mean, std)
    expected = TF.normalize(arrays.images.float() / 255, mean, std)
    torch.testing.assert_close(x, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(data.denormalize(x, mean, std), arrays.images.float() / 255, atol=1e-6, rtol=0)
    single = data.normalize(arrays.images[0], mean, std)  # (C, H, W) works too
    torch.testing.assert_close(single, x[0])
    loader = data.GPUBatchLoader(arrays, 6, train=False, device="cpu")
    assert torch.equal(next(iter(loader))[0], x)  # the loader computes exactly the same
    bundle = Pretrained("toy", torch.nn.Identity(), mean, std, 8, [], {}, "", "")
    floats = arrays.images.double() / 255
    torch.testing.assert_close(bundle.normalize(floats), expected.double(), atol=1e-6, rtol=1e-6)
    assert bundle.normalize(floats).dtype == torch.float64
    with pytest.raises(ValueError, match="std must be positive"):
        data.normalize(arrays.images, mean, (0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="mean/std have 2/2 values but the images have 3"):
        data.normalize(arrays.images, mean[:2], std[:2])
