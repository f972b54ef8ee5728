"""Checks for the section 14.16 exercises (shape bugs, frozen batch norm, class imbalance)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from cnnbook.checks.core import (
    Context,
    call,
    checker,
    expect_equal,
    expect_module,
    expect_tensor,
    fail,
)


def _random_features(ctx: Context) -> tuple[nn.Sequential, tuple[int, int, int]]:
    """A random conv/pool stack and an input shape it accepts (drawn again until it does)."""
    while True:
        features, shape = _draw_features(ctx)
        try:
            with torch.no_grad():
                features(torch.zeros(1, *shape))
        except RuntimeError:  # the input became too small somewhere: draw again
            continue
        return features, shape


def _draw_features(ctx: Context) -> tuple[nn.Sequential, tuple[int, int, int]]:
    c = ctx.randint(1, 3)
    layers: list[nn.Module] = []
    prev = c
    for _ in range(ctx.randint(1, 3)):
        out, k = ctx.choice([4, 8, 16]), ctx.choice([3, 5])
        layers += [nn.Conv2d(prev, out, k, padding=ctx.choice([0, k // 2]),
                             stride=ctx.choice([1, 2])), nn.ReLU()]
        if ctx.randint(0, 1):
            layers.append(nn.MaxPool2d(2))
        prev = out
    return nn.Sequential(*layers), (c, ctx.randint(28, 40), ctx.randint(28, 40))


@checker("flatten size")
def check_flatten_size(ctx: Context, fn: Callable[..., int]) -> str:
    """Check ``fn(features, input_shape (C, H, W))`` = number of features after flattening."""
    for _ in range(5):
        features, shape = _random_features(ctx)
        what = f"flatten_size(features, input_shape={shape}) for\n{features}\n"
        was_training = features.training
        got = call(fn, features, shape, describe=what)
        with torch.no_grad():
            out = features(torch.zeros(1, *shape))
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = int(got)
        expect_equal(got, out[0].numel(), what, wrong={
            "That includes the batch dimension: count the features of ONE sample "
            "(out.shape[1:]), which is what nn.Linear sees per row.": 2 * out[0].numel(),
            "That is the channel count only; flattening multiplies channels by height and width.":
                out.shape[1],
        }, hint="Run a dummy batch through the features and multiply the output's C * H * W.")
        if features.training != was_training:
            fail("flatten_size changed the model's train/eval mode; restore it (or leave it alone).")
    return "a dummy forward pass gives the flatten size for any input size."


def _bn_model() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                         nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.Flatten())


@checker("frozen batch norm")
def check_freeze_batchnorm(ctx: Context, fn: Callable[..., nn.Module]) -> str:
    """Check ``fn(model)`` freezes every BatchNorm (eval mode, no grads) and nothing else."""
    model = _bn_model().train()
    before = copy.deepcopy(model.state_dict())
    got = expect_module(call(fn, model, describe="a train-mode model with two BatchNorm2d"),
                        "freeze_batchnorm(model)")
    if got is not model:
        fail("freeze_batchnorm should change the model in place and return it.")
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if any(m.training for m in bns):
        fail("a BatchNorm2d is still in training mode: call .eval() on every batch-norm layer so "
             "it uses (and stops updating) its running statistics.")
    if not model[3].training or not model.training:
        fail("you put the whole model in eval mode; only the batch-norm layers should be frozen "
             "(dropout and the rest keep training).")
    if any(p.requires_grad for m in bns for p in m.parameters()):
        fail("batch-norm weight and bias still require gradients; set requires_grad = False on "
             "them too, so the optimiser does not move gamma and beta.")
    if not all(p.requires_grad for m in model.modules() if isinstance(m, nn.Conv2d)
               for p in m.parameters()):
        fail("a convolution was frozen too; freeze only the batch-norm layers.")
    x = ctx.randn(4, 3, 8, 8, dtype=torch.float32) * 3 + 2
    model(x)
    for key, value in model.state_dict().items():
        if "running" in key and not torch.equal(value, before[key]):
            fail(f"a training-mode forward pass changed {key}; the batch-norm layers must stay "
                 f"in eval mode.")
    return "batch norm is frozen (running statistics and affine parameters) while the rest trains."


@checker("balanced class weights")
def check_class_weights(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(labels (N,), num_classes)`` = N / (K * count_c), as sklearn's 'balanced'."""
    for _ in range(4):
        k = ctx.randint(2, 6)
        probs = ctx.rand(k) ** 3 + 0.02
        labels = torch.multinomial(probs / probs.sum(), ctx.randint(50, 300), replacement=True,
                                   generator=ctx.gen)
        labels[:k] = torch.arange(k)  # every class occurs at least once
        what = f"class_weights(labels of {len(labels)} samples, num_classes={k})"
        got = call(fn, labels.clone(), k, describe=what)
        counts = torch.bincount(labels, minlength=k).double()
        ref = len(labels) / (k * counts)
        expect_tensor(got, ref, what, wrong={
            "Those are the class frequencies; weights must be LARGER for rare classes: use "
            "N / (K * count).": counts / len(labels),
            "The inverse counts 1 / count have the right shape but the wrong scale; multiply by "
            "N / K so a balanced dataset gets weight 1 for every class.": 1 / counts,
            "You normalised the weights to sum to 1; the convention is N / (K * count), which "
            "averages to about 1 per sample.": (1 / counts) / (1 / counts).sum(),
        }, shape_hint="One weight per class: shape (num_classes,).", atol=1e-6)
    return "your weights match sklearn's compute_class_weight('balanced')."
