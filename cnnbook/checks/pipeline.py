"""Checks for the section 14.15 exercises (training loop, evaluation, transforms).

The checks train tiny models on a few random tensors: a handful of SGD steps, enough to tell
a correct loop from one that forgets ``zero_grad()`` or averages the loss the wrong way.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cnnbook.checks.core import Context, call, checker, expect_equal, expect_tensor, fail

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class _Probe(nn.Module):
    """A small classifier with dropout and batch norm (so train/eval mode matters) that records
    whether gradients were enabled during its forward passes."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.5),
                                 nn.Linear(16, classes))
        self.grad_modes: list[bool] = []
        self.train_modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grad_modes.append(torch.is_grad_enabled())
        self.train_modes.append(self.training)
        return self.net(x)


def _data(ctx: Context, n: int, batch: int) -> DataLoader:
    x = ctx.randn(n, 1, 6, 6, dtype=torch.float32)
    y = torch.randint(0, 3, (n,), generator=ctx.gen)
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)


def _reference_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                     variant: str = "") -> float:
    criterion = nn.CrossEntropyLoss()
    model.train()
    total, batch_means = 0.0, []
    for x, y in loader:
        if variant != "no_zero_grad":
            optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss.item() * x.size(0)
        batch_means.append(loss.item())
    return sum(batch_means) / len(batch_means) if variant == "batch_mean" else total / len(loader.dataset)


def _params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@checker("train_one_epoch")
def check_train_one_epoch(ctx: Context, fn: Callable[..., float]) -> str:
    """Check ``fn(model, loader, criterion, optimizer)`` trains one epoch, returns the mean loss."""
    for n, batch in [(10, 4), (9, 3)]:
        seed = ctx.randint(0, 10_000)
        torch.manual_seed(seed)
        model = _Probe().eval()  # left in eval mode on purpose: the loop must switch to train
        start = copy.deepcopy(model.state_dict())
        loader = _data(ctx, n, batch)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        what = f"train_one_epoch on {n} samples in batches of {batch}"
        torch.manual_seed(seed + 1)
        got = call(fn, model, loader, nn.CrossEntropyLoss(), optimizer, describe=what)
        if isinstance(got, torch.Tensor):
            if got.requires_grad:
                fail(f"{what} returned a tensor that still requires grad; accumulate loss.item() "
                     f"(a float), otherwise every batch's graph is kept in memory.")
            got = got.item()
        results = {}
        for variant in ("", "no_zero_grad", "batch_mean"):
            ref = _Probe()
            ref.load_state_dict(start)
            ref.eval()
            opt = torch.optim.SGD(ref.parameters(), lr=0.5)
            torch.manual_seed(seed + 1)
            loss = _reference_epoch(ref, loader, opt, variant)
            results[variant] = (loss, _params(ref))
        if not model.train_modes or not all(model.train_modes):
            fail(f"{what}: the model ran in eval mode; call model.train() at the start so dropout "
                 f"and batch norm behave as in training.")
        mine = _params(model)
        if torch.allclose(mine, _params(_restore(start)), atol=0):
            fail(f"{what}: the parameters did not change; call loss.backward() and "
                 f"optimizer.step() for every batch.")
        if not torch.allclose(mine, results[""][1], atol=1e-5):
            if torch.allclose(mine, results["no_zero_grad"][1], atol=1e-5):
                fail(f"{what}: the weights end up as if gradients ACCUMULATED across batches: call "
                     f"optimizer.zero_grad() before each backward pass.")
            fail(f"{what}: after one epoch the weights differ from the reference; each batch "
                 f"should do zero_grad -> forward -> loss -> backward -> step, in that order.")
        expect_equal(float(got), results[""][0], f"{what} (returned loss)", rel=1e-5, wrong={
            "You averaged the per-batch means; with a smaller last batch that over-weights it. "
            "Sum loss.item() * batch_size and divide by the number of samples.":
                results["batch_mean"][0],
        }, hint="Return the mean loss per SAMPLE over the epoch.")
    return "one epoch: train mode, zero_grad before each step, loss averaged over samples."


def _restore(state: dict[str, Any]) -> nn.Module:
    model = _Probe()
    model.load_state_dict(state)
    return model


@checker("evaluate")
def check_evaluate(ctx: Context, fn: Callable[..., tuple[float, float]]) -> str:
    """Check ``fn(model, loader, criterion)`` -> (mean loss, accuracy) in eval mode, no grad."""
    for n, batch in [(11, 4), (8, 8)]:
        torch.manual_seed(ctx.randint(0, 10_000))
        model = _Probe().train()  # left in train mode on purpose
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
        before = copy.deepcopy(model.state_dict())
        loader = _data(ctx, n, batch)
        what = f"evaluate on {n} samples in batches of {batch}"
        got = call(fn, model, loader, nn.CrossEntropyLoss(), describe=what)
        if not isinstance(got, tuple) or len(got) != 2:
            fail(f"{what} should return (mean_loss, accuracy), got {got!r}.")
        for key, value in model.state_dict().items():
            if not torch.equal(value, before[key]):
                fail(f"{what} changed the model's {key}: in train mode batch norm updates its "
                     f"running statistics. Call model.eval() before evaluating.")
        if any(model.train_modes):
            fail(f"{what}: the model ran in train mode (dropout active); call model.eval().")
        if any(model.grad_modes):
            fail(f"{what}: gradients were being recorded; wrap the loop in torch.no_grad() (or "
                 f"decorate the function with @torch.no_grad()) to save memory and time.")
        ref = _restore(before).eval()
        x_all = torch.cat([x for x, _ in loader])
        y_all = torch.cat([y for _, y in loader])
        with torch.no_grad():
            logits = ref(x_all)
        loss = nn.functional.cross_entropy(logits, y_all).item()
        acc = (logits.argmax(1) == y_all).double().mean().item()
        per_batch = []
        with torch.no_grad():
            for x, y in loader:
                per_batch.append((ref(x).argmax(1) == y).double().mean().item())
        expect_equal(float(got[0]), loss, f"{what}[0] (mean loss)", rel=1e-5,
                     hint="Weight each batch's loss by its size and divide by the dataset size.")
        expect_equal(float(got[1]), acc, f"{what}[1] (accuracy)", rel=1e-6, wrong={
            "Return a fraction in [0, 1], not a percentage.": 100 * acc,
            "You averaged per-batch accuracies; count correct predictions over all samples "
            "instead (the last batch is smaller).": sum(per_batch) / len(per_batch),
        }, hint="accuracy = correct predictions / number of samples, predictions = argmax of the logits.")
    return "evaluation runs in eval mode without gradients and leaves the model untouched."


@checker("train and validation transforms")
def check_transforms(ctx: Context, fn: Callable[..., Callable]) -> str:
    """Check ``fn(train)`` builds CIFAR-10 transforms: random crop+flip for training only."""
    from PIL import Image

    rng = np.random.default_rng(ctx.seed)
    array = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    mean = torch.tensor(CIFAR_MEAN).view(3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(3, 1, 1)
    expected = (torch.from_numpy(array).permute(2, 0, 1).float() / 255 - mean) / std
    val = call(fn, False, describe="train=False")
    train = call(fn, True, describe="train=True")
    outs = [call(val, image, describe="a 32x32 PIL image") for _ in range(3)]
    augmented = "The validation images must not be augmented: a random crop or flip at " \
                "evaluation time makes the score noisy. Use only ToTensor and Normalize."
    if any(isinstance(o, torch.Tensor) and o.shape == outs[0].shape and not torch.equal(o, outs[0])
           for o in outs[1:]):
        fail(augmented)
    expect_tensor(outs[0], expected, "the validation transform's output", wrong={
        augmented: expected.flip(-1),
        "You did not normalise: add Normalize(mean, std) with the CIFAR-10 statistics.":
            expected * std + mean,
    }, shape_hint="ToTensor gives (3, 32, 32).", atol=1e-4)
    samples = [call(train, image, describe="a 32x32 PIL image") for _ in range(24)]
    for s in samples:
        expect_tensor(s, expected, "a training sample's shape", atol=float("inf"),
                      shape_hint="RandomCrop(32, padding=4) keeps 32x32 images 32x32.")
    if all(torch.allclose(s, expected, atol=1e-5) for s in samples):
        fail("the training transform never changed the image: add RandomCrop(32, padding=4) and "
             "RandomHorizontalFlip().")
    flipped = expected.flip(-1)
    if not any(_is_shift(s, flipped) for s in samples):
        fail("no training sample was a horizontal flip of the image; add RandomHorizontalFlip().")
    if not any(_is_shift(s, expected) and not torch.allclose(s, expected, atol=1e-5)
               for s in samples + [s.flip(-1) for s in samples]):
        fail("no training sample was shifted; add RandomCrop(32, padding=4) (pad, then crop back "
             "to 32x32 at a random position).")
    if any(float(s.abs().max()) <= 1.0 + 1e-6 and float(s.min()) >= 0 for s in samples):
        fail("training samples are not normalised; Normalize must be in both pipelines so the "
             "model sees the same input statistics in training and evaluation.")
    return "training gets random crops and flips; validation is deterministic; both are normalised."


def _is_shift(sample: torch.Tensor, image: torch.Tensor) -> bool:
    """Whether ``sample`` equals ``image`` shifted by at most 4 px (padding elsewhere)."""
    for dy in range(-4, 5):
        for dx in range(-4, 5):
            a = sample[:, max(dy, 0): 32 + min(dy, 0), max(dx, 0): 32 + min(dx, 0)]
            b = image[:, max(-dy, 0): 32 + min(-dy, 0), max(-dx, 0): 32 + min(-dx, 0)]
            if torch.allclose(a, b, atol=1e-4):
                return True
    return False
