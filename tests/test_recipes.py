"""cnnbook.recipes: device- and mode-dependent plans, model preparation, time estimates."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from cnnbook import recipes
from cnnbook.arrays import ImageArrays
from cnnbook.loaders import GPUBatchLoader
from cnnbook.models import FastCIFARNet, ResNet, SimpleCNN


def test_plans_follow_device_and_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recipes, "cpu_has_native_bf16", lambda: False)
    cpu = recipes.cifar10_plan("cpu", fast=False)
    assert cpu.model == "fastnet"
    assert cpu.widths == (24, 48, 96)  # a narrow first block for float32 CPUs
    assert cpu.train_per_class is None
    assert cpu.epochs == 5
    assert cpu.flip_tta
    model = cpu.build_model()
    assert isinstance(model, FastCIFARNet)
    assert model.flip_tta
    monkeypatch.setattr(recipes, "cpu_has_native_bf16", lambda: True)
    bf16 = recipes.cifar10_plan("cpu", fast=False)
    assert bf16.epochs > cpu.epochs
    assert bf16.widths[0] > cpu.widths[0]
    assert bf16.amp is True
    gpu = recipes.cifar10_plan(torch.device("cuda"), fast=False)
    assert gpu.model == "fastnet"
    assert gpu.widths == (64, 256, 256)  # airbench94's widths
    assert gpu.epochs > bf16.epochs
    assert gpu.batch_size > cpu.batch_size
    assert gpu.flip_tta
    assert "flip test-time augmentation" in cpu.describe()
    assert isinstance(recipes.cifar10_plan("cuda", fast=False, model="resnet18").build_model(), ResNet)
    ci = recipes.cifar10_plan("cpu", fast=True)
    assert ci.train_per_class == 200
    assert ci.test_per_class == 100
    assert ci.epochs <= 2
    assert ci.flip_tta  # fast mode runs the same logic
    custom = recipes.cifar10_plan("cpu", fast=False, model="simplecnn", epochs=3, lr=None)
    assert isinstance(custom.build_model(), SimpleCNN)
    assert custom.epochs == 3
    assert custom.lr == cpu.lr  # None leaves the default
    assert "SimpleCNN, 3 epoch(s) on all 50,000 training images" in custom.describe()
    assert "flip" not in custom.describe()  # only FastCIFARNet has the test-time flip


def test_a_typo_in_model_fails_at_the_plan_naming_the_choices() -> None:
    """14.15's MODEL parameter: one clear error from the plan cell, never a KeyError later."""
    choices = "choose one of 'fastnet', 'resnet18', 'simplecnn'"
    with pytest.raises(
        ValueError, match=re.escape(f"Unknown MODEL 'resnet-18'; {choices}. Did you mean 'resnet18'?")
    ):
        recipes.cifar10_plan("cpu", fast=True, model="resnet-18")
    with pytest.raises(ValueError, match=re.escape(f"Unknown MODEL 'vit'; {choices}.")):
        recipes.cifar10_plan("cpu", fast=True, model="vit")
    # a Plan built by hand with a bad name fails the same way in describe and build_model
    bad = dataclasses.replace(recipes.cifar10_plan("cpu", fast=True), model="resnet-18")
    for call in (bad.describe, bad.build_model):
        with pytest.raises(ValueError, match="Did you mean 'resnet18'"):
            call()
    # names are case-insensitive and stored in their canonical spelling
    plan = recipes.cifar10_plan("cpu", fast=True, model="ResNet18")
    assert plan.model == "resnet18"
    assert isinstance(plan.build_model(), ResNet)
    assert plan.describe().startswith("ResNet-18 (CIFAR stem), ")
    fast = recipes.cifar10_plan("cpu", fast=True)
    net = fast.build_model()
    assert isinstance(net, FastCIFARNet)
    assert fast.describe().startswith(f"FastCIFARNet{fast.widths}, ")


def _toy(n: int = 60) -> ImageArrays:
    g = torch.Generator().manual_seed(0)
    return ImageArrays(
        torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
        torch.arange(n) % 10,
        [str(i) for i in range(10)],
        (0.5, 0.5, 0.5),
        (0.25, 0.25, 0.25),
    )


def test_prepare_model_whitens_and_is_seeded() -> None:
    plan = recipes.cifar10_plan("cpu", fast=True, widths=(8, 8, 8))
    a, b = recipes.prepare_model(plan, _toy(), seed=3), recipes.prepare_model(plan, _toy(), 3)
    assert not a.stem.weight.requires_grad
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_estimate_leaves_model_alone() -> None:
    plan = recipes.cifar10_plan("cpu", fast=True, widths=(8, 8, 8), batch_size=20)
    model = recipes.prepare_model(plan, _toy())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = GPUBatchLoader(_toy(), 20, device="cpu")
    loader.set_epoch(4)
    rng = torch.get_rng_state()
    secs = recipes.estimate_seconds(model, loader, epochs=2, eval_loader=GPUBatchLoader(_toy(), 30), steps=2)
    assert 0 < secs < float("inf")  # a duration (its size depends on the machine)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert loader.epoch == 4
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.fixture
def fake_cifar10(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """``recipes.load_cifar10`` replaced by :func:`_toy` (train: 60 images, test: 30)."""
    calls: list[tuple] = []

    def load(split: str, root=None) -> ImageArrays:
        calls.append((split, root))
        return _toy(60 if split == "train" else 30)

    monkeypatch.setattr(recipes, "load_cifar10", load)
    return calls


def _rows(arrays: ImageArrays) -> list[bytes]:
    return [img.numpy().tobytes() for img in arrays.images]


def test_load_plan_data_cuts_balanced_subsets(fake_cifar10: list[tuple], tmp_path: Path) -> None:
    plan = recipes.cifar10_plan("cpu", fast=True, train_per_class=4, test_per_class=2)
    train, test = recipes.load_plan_data(plan, tmp_path, seed=1)
    assert fake_cifar10 == [("train", tmp_path), ("test", tmp_path)]
    assert train.class_counts().tolist() == [4] * 10
    assert test.class_counts().tolist() == [2] * 10
    full = _rows(_toy(60))
    picked = [full.index(row) for row in _rows(train)]
    assert picked == sorted(picked)  # a subset of the full set, in its original order
    assert all(int(train.labels[i]) == p % 10 for i, p in enumerate(picked))  # labels follow
    assert (train.mean, train.std) == (_toy().mean, _toy().std)
    again, _ = recipes.load_plan_data(plan, tmp_path, seed=1)
    other, _ = recipes.load_plan_data(plan, tmp_path, seed=2)
    assert _rows(again) == _rows(train)
    assert _rows(other) != _rows(train)


def test_load_plan_data_without_subsets_and_too_large(fake_cifar10: list[tuple]) -> None:
    full = recipes.cifar10_plan("cpu", fast=False)
    assert full.train_per_class is None
    assert full.test_per_class is None
    train, test = recipes.load_plan_data(full)
    assert fake_cifar10 == [("train", None), ("test", None)]
    assert len(train) == 60  # everything
    assert len(test) == 30
    too_many = recipes.cifar10_plan("cpu", fast=True)  # 200 per class, the toy set has 6
    with pytest.raises(ValueError, match="has only 6 images"):
        recipes.load_plan_data(too_many)


def test_make_loaders_train_augments_test_is_plain() -> None:
    plan = recipes.cifar10_plan("cpu", fast=True, batch_size=16)
    train, test = _toy(60), _toy(30)
    tr, te = recipes.make_loaders(plan, train, test, seed=5)
    assert tr.device == te.device == torch.device("cpu")
    assert (tr.batch_size, tr.shuffle, tr.augment, tr.drop_last, tr.seed) == (16, True, True, True, 5)
    assert len(tr) == 3
    assert all(x.shape == (16, 3, 32, 32) for x, _ in tr)
    assert (te.batch_size, te.shuffle, te.augment, te.drop_last) == (1000, False, False, False)
    ((x, y),) = list(te)  # one batch holds the whole test set, in order
    assert torch.equal(y, test.labels)
    torch.testing.assert_close(x, test.normalized())
    first = [next(iter(recipes.make_loaders(plan, train, test, seed=s)[0]))[0] for s in (5, 5, 6)]
    assert torch.equal(first[0], first[1])  # seeded
    assert not torch.equal(first[0], first[2])
