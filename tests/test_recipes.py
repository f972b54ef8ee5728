"""cnnbook.recipes: device- and mode-dependent plans, model preparation, time estimates."""

from __future__ import annotations

import pytest
import torch

from cnnbook import recipes
from cnnbook.data import GPUBatchLoader, ImageArrays
from cnnbook.models import FastCIFARNet, ResNet, SimpleCNN


def test_plans_follow_device_and_mode() -> None:
    cpu = recipes.cifar10_plan("cpu", fast=False)
    assert cpu.model == "fastnet" and cpu.train_per_class is None and cpu.epochs >= 2
    assert isinstance(cpu.build_model(), FastCIFARNet)
    gpu = recipes.cifar10_plan(torch.device("cuda"), fast=False)
    assert gpu.model == "resnet18" and gpu.epochs > cpu.epochs and gpu.batch_size > cpu.batch_size
    assert isinstance(gpu.build_model(), ResNet)
    ci = recipes.cifar10_plan("cpu", fast=True)
    assert ci.train_per_class == 200 and ci.test_per_class == 100 and ci.epochs <= 2
    custom = recipes.cifar10_plan("cpu", fast=False, model="simplecnn", epochs=3, lr=None)
    assert isinstance(custom.build_model(), SimpleCNN)
    assert custom.epochs == 3 and custom.lr == cpu.lr  # None leaves the default
    assert "SimpleCNN, 3 epoch(s) on all 50,000 training images" in custom.describe()
    with pytest.raises(ValueError, match="Unknown model 'vit'"):
        recipes.cifar10_plan("cpu", fast=True, model="vit").build_model()


def _toy(n: int = 60) -> ImageArrays:
    g = torch.Generator().manual_seed(0)
    return ImageArrays(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                       torch.arange(n) % 10, [str(i) for i in range(10)],
                       (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_prepare_model_whitens_and_is_seeded() -> None:
    plan = recipes.cifar10_plan("cpu", fast=True, widths=(8, 8, 8))
    a, b = recipes.prepare_model(plan, _toy(), seed=3), recipes.prepare_model(plan, _toy(), 3)
    assert not a.stem.weight.requires_grad
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values(), strict=True))


def test_estimate_leaves_model_alone() -> None:
    plan = recipes.cifar10_plan("cpu", fast=True, widths=(8, 8, 8), batch_size=20)
    model = recipes.prepare_model(plan, _toy())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = GPUBatchLoader(_toy(), 20, device="cpu")
    secs = recipes.estimate_seconds(model, loader, epochs=2, eval_images=60, steps=2)
    assert 0 < secs < float("inf")  # a duration (its size depends on the machine)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
