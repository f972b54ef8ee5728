"""cnnbook.loaders: the classic per-image pipeline and GPUBatchLoader draw the same augmentations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from test_datasets import SHARED, _synthetic, needs_data

from cnnbook import data_paths, datasets, loaders
from cnnbook.arrays import ImageArrays


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
    out = loaders.crop_flip(arrays.images, top, left, flip, 4)
    for i in range(6):
        ref = TF.crop(TF.pad(arrays.images[i], [4]), int(top[i]), int(left[i]), 8, 8)
        ref = TF.hflip(ref) if flip[i] else ref
        assert torch.equal(out[i], ref)


def _unnormalize(x: torch.Tensor, arrays: ImageArrays) -> torch.Tensor:
    m = torch.tensor(arrays.mean).view(-1, 1, 1)
    s = torch.tensor(arrays.std).view(-1, 1, 1)
    return (x * s + m).mul(255).round().to(torch.uint8)


def test_both_pipelines_draw_from_the_same_augmentations() -> None:
    arrays = _synthetic(32)
    cands = [_candidates(img, 4) for img in arrays.images]
    fast = loaders.GPUBatchLoader(arrays, 8, device="cpu", seed=3)
    classic = loaders.ImageArrayDataset(
        arrays, loaders.classic_transforms(True, arrays.mean, arrays.std, size=8, padding=4)
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
    loader = loaders.GPUBatchLoader(arrays, 4, train=False, device="cpu")
    assert len(loader) == 3
    xs, ys = zip(*loader, strict=True)
    x, y = torch.cat(xs), torch.cat(ys)
    assert torch.equal(y, torch.arange(10))  # no shuffling, nothing dropped
    ref = loaders.ImageArrayDataset(arrays, loaders.classic_transforms(False, arrays.mean, arrays.std))
    expected = torch.stack([ref[i][0] for i in range(10)])
    assert torch.allclose(x, expected, atol=1e-5)
    assert torch.allclose(arrays.normalized(), expected, atol=1e-5)


def test_loader_shuffles_reproducibly_and_shards() -> None:
    arrays = _synthetic(20)
    a = loaders.GPUBatchLoader(arrays, 4, device="cpu", seed=7)
    b = loaders.GPUBatchLoader(arrays, 4, device="cpu", seed=7, channels_last=True)
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
        loaders.GPUBatchLoader(arrays, 3, device="cpu", seed=1, rank=r, world_size=3, drop_last=False)
        for r in range(3)
    ]
    seen = [torch.cat([y for _, y in s]).tolist() for s in shards]
    assert [len(s) for s in seen] == [7, 7, 7]  # padded to a multiple of 3, as DDP does
    assert set(seen[0]) | set(seen[1]) | set(seen[2]) == set(range(20))
    with pytest.raises(ValueError, match="rank 3"):
        loaders.GPUBatchLoader(arrays, 3, device="cpu", rank=3, world_size=3)


def test_classic_dataset_items() -> None:
    arrays = _synthetic(4, size=32)
    ds = loaders.ImageArrayDataset(arrays, loaders.classic_transforms(True, arrays.mean, arrays.std))
    x, y = ds[2]
    assert x.shape == (3, 32, 32)
    assert x.dtype == torch.float32
    assert y == 2
    raw, _ = loaders.ImageArrayDataset(arrays)[1]
    assert isinstance(raw, Image.Image)
    assert np.array_equal(np.asarray(raw), arrays.images[1].permute(1, 2, 0).numpy())
    loader = loaders.classic_loader(ds, batch_size=2, num_workers=0, seed=0)
    xb, yb = next(iter(loader))
    assert xb.shape == (2, 3, 32, 32)
    assert yb.dtype == torch.int64


@pytest.fixture
def fake_cifar(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """``loaders.load_cifar10`` replaced by 4 random 32x32 images; returns the calls it gets."""
    calls: list[tuple] = []
    small = _synthetic(4, size=32)

    def load(split: str = "train", root=None, download: bool = True) -> ImageArrays:
        calls.append((split, root, download))
        return ImageArrays(
            small.images,
            small.labels,
            list(datasets.CIFAR10_CLASSES[:4]),
            datasets.CIFAR10_MEAN,
            datasets.CIFAR10_STD,
        )

    monkeypatch.setattr(loaders, "load_cifar10", load)
    return calls


def test_cifar10_dataset_test_split_is_totensor_normalize(fake_cifar: list[tuple], tmp_path: Path) -> None:
    ds = loaders.cifar10_dataset("test", root=tmp_path, download=False)
    assert fake_cifar == [("test", tmp_path, False)]
    assert len(ds) == 4
    assert ds.classes == list(datasets.CIFAR10_CLASSES[:4])
    images = _synthetic(4, size=32).images
    for i in range(4):
        x, y = ds[i]
        expected = TF.normalize(images[i].float() / 255, datasets.CIFAR10_MEAN, datasets.CIFAR10_STD)
        assert y == i
        assert x.dtype == torch.float32
        torch.testing.assert_close(x, expected, atol=1e-6, rtol=1e-5)
        assert torch.equal(ds[i][0], x)  # no augmentation: the same tensor every time


def test_cifar10_dataset_train_split_augments(fake_cifar: list[tuple]) -> None:
    from torchvision import transforms

    ds = loaders.cifar10_dataset("train")
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
    raw, label = loaders.cifar10_dataset("test", transform=False)[2]
    assert isinstance(raw, Image.Image)
    assert raw.size == (32, 32)
    assert label == 2
    assert np.array_equal(np.asarray(raw), images[2].permute(1, 2, 0).numpy())
    sizes = loaders.cifar10_dataset("train", transform=lambda img: img.size)
    assert sizes[1] == ((32, 32), 1)


@needs_data
def test_cifar10_dataset_reads_the_local_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data_paths.DATA_ENV, str(SHARED))
    ds = loaders.cifar10_dataset("test", download=False)
    assert len(ds) == 10_000
    assert ds.classes == list(datasets.CIFAR10_CLASSES)
    x, y = ds[0]
    assert x.shape == (3, 32, 32)
    assert 0 <= y < 10
    first = sorted((SHARED / "cifar10" / "test" / datasets.CIFAR10_CLASSES[y]).iterdir())[0]
    pil = TF.to_tensor(Image.open(first).convert("RGB"))  # image 0 is its class's first file
    torch.testing.assert_close(x, TF.normalize(pil, datasets.CIFAR10_MEAN, datasets.CIFAR10_STD))
