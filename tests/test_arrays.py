"""cnnbook.arrays and cnnbook.normalization: container, statistics, subsets, splits, one formula."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF
from test_datasets import _synthetic

from cnnbook import loaders, normalization
from cnnbook.arrays import ImageArrays, class_subset, stratified_subset


def test_array_container_validates() -> None:
    with pytest.raises(TypeError, match="uint8"):
        ImageArrays(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64), ["x"])
    with pytest.raises(ValueError, match="labels"):
        ImageArrays(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3).long(), ["x"])
    arrays = _synthetic()
    with pytest.raises(ValueError, match="normalisation statistics"):
        loaders.GPUBatchLoader(ImageArrays(arrays.images, arrays.labels, arrays.classes), device="cpu")


# ---------------------------------------------------------------- real data


def test_stratified_subset() -> None:
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (250,), generator=g)
    images = torch.arange(250).view(250, 1, 1, 1).to(torch.uint8).expand(250, 1, 2, 2).clone()
    arrays = ImageArrays(images, labels, ["x", "y", "z"])
    sub = stratified_subset(arrays, 20, seed=0)
    assert sub.class_counts().tolist() == [20, 20, 20]
    assert torch.equal(sub.images, stratified_subset(arrays, 20, seed=0).images)
    assert not torch.equal(sub.images, stratified_subset(arrays, 20, seed=1).images)
    # every picked image keeps its own label
    idx = torch.tensor([int((arrays.images[:, 0, 0, 0] == v).nonzero()[0]) for v in sub.images[:, 0, 0, 0]])
    assert torch.equal(arrays.labels[idx], sub.labels)
    with pytest.raises(ValueError, match="at most"):
        stratified_subset(arrays, 1000)


def test_class_subset_builds_imbalanced_sets() -> None:
    arrays = _synthetic(30)
    arrays = ImageArrays(arrays.images, arrays.labels % 3, ["a", "b", "c"])
    sub = class_subset(arrays, {"c": 10, "a": 2}, seed=0)
    assert sub.classes == ["c", "a"]
    assert sub.class_counts().tolist() == [10, 2]
    # every kept image comes from the class its new label names
    for img, lab in zip(sub.images, sub.labels, strict=True):
        src = [i for i in range(30) if torch.equal(arrays.images[i], img)]
        assert arrays.classes[int(arrays.labels[src[0]])] == sub.classes[int(lab)]
    with pytest.raises(ValueError, match="Unknown class 'z'"):
        class_subset(arrays, {"z": 1})
    with pytest.raises(ValueError, match="has 10 images; ask for 1 to 10, not 11"):
        class_subset(arrays, {"a": 11})


# ---------------------------------------------------------------- augmentation semantics
def test_train_val_split_is_stratified_disjoint_and_complete() -> None:
    from cnnbook.arrays import ImageArrays, train_val_split

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
    from cnnbook.arrays import ImageArrays, train_val_split

    arrays = ImageArrays(torch.zeros(200, 1, 2, 2, dtype=torch.uint8), torch.arange(200) % 4, list("abcd"))
    with pytest.raises(ValueError, match="val_size"):
        train_val_split(arrays, bad)


def test_normalisation_has_one_formula() -> None:
    """normalize, denormalize, GPUBatchLoader and Pretrained.normalize share normalization_affine."""
    from cnnbook.pretrained import Pretrained

    arrays = _synthetic(6)
    mean, std = arrays.mean, arrays.std
    x = normalization.normalize(arrays.images, mean, std)
    expected = TF.normalize(arrays.images.float() / 255, mean, std)
    torch.testing.assert_close(x, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(
        normalization.denormalize(x, mean, std), arrays.images.float() / 255, atol=1e-6, rtol=0
    )
    single = normalization.normalize(arrays.images[0], mean, std)  # (C, H, W) works too
    torch.testing.assert_close(single, x[0])
    loader = loaders.GPUBatchLoader(arrays, 6, train=False, device="cpu")
    assert torch.equal(next(iter(loader))[0], x)  # the loader computes exactly the same
    bundle = Pretrained("toy", torch.nn.Identity(), mean, std, 8, [], {}, "", "")
    floats = arrays.images.double() / 255
    torch.testing.assert_close(bundle.normalize(floats), expected.double(), atol=1e-6, rtol=1e-6)
    assert bundle.normalize(floats).dtype == torch.float64
    with pytest.raises(ValueError, match="std must be positive"):
        normalization.normalize(arrays.images, mean, (0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="mean/std have 2/2 values but the images have 3"):
        normalization.normalize(arrays.images, mean[:2], std[:2])
