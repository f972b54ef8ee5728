"""Checks for the section 14.12 exercises (squeeze-and-excitation, compound scaling, mixup)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cnnbook.checks.core import (
    Context,
    call,
    checker,
    expect_equal,
    expect_tensor,
    fail,
    forbid,
)

_OURS = "that is cnnbook's own answer; write yours."


def _se(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
        pool: str = "mean", act: str = "relu", gate: str = "sigmoid", apply: bool = True
        ) -> torch.Tensor:
    s = x.mean(dim=(2, 3)) if pool == "mean" else x.amax(dim=(2, 3))
    h = s @ w1.T + b1
    h = torch.relu(h) if act == "relu" else h
    z = h @ w2.T + b2
    g = torch.sigmoid(z) if gate == "sigmoid" else torch.softmax(z, dim=1)
    return x * g[:, :, None, None] if apply else g


@checker("squeeze-and-excitation")
def check_squeeze_excite(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(x, w1 (C/r, C), b1, w2 (C, C/r), b2)`` = x * sigmoid(fc2(relu(fc1(GAP(x)))))."""
    for _ in range(4):
        n, c, r = ctx.randint(1, 3), ctx.choice([4, 8, 12]), ctx.choice([2, 4])
        x = ctx.randn(n, c, ctx.randint(2, 6), ctx.randint(2, 6))
        w1, b1 = ctx.randn(c // r, c), ctx.randn(c // r)
        w2, b2 = ctx.randn(c, c // r), ctx.randn(c)
        args = (x, w1, b1, w2, b2)
        what = f"squeeze_excite(x {tuple(x.shape)}, w1 {tuple(w1.shape)}, b1, w2 {tuple(w2.shape)}, b2)"
        got = call(fn, *(a.clone() for a in args), describe=what)
        expect_tensor(got, _se(*args), what, wrong={
            "You squeezed with the maximum; SE squeezes each channel with its MEAN (global "
            "average pooling).": _se(*args, pool="max"),
            "The ReLU between the two linear layers is missing.": _se(*args, act="none"),
            "The gate uses softmax across channels; SE uses an independent sigmoid per "
            "channel (channels do not compete).": _se(*args, gate="softmax"),
        }, shape_hint="Return the rescaled feature map x * gate, shape (N, C, H, W) (the gate "
                      "alone is (N, C)).")
    return "your SE block recalibrates channels exactly as the reference."


@checker("compound scaling")
def check_compound_scale(ctx: Context, fn: Callable[..., tuple[float, float, float, float]]) -> str:
    """Check ``fn(phi, alpha, beta, gamma)`` -> (depth, width, resolution, flops) multipliers."""
    cases = [(2, 1.2, 1.1, 1.15), (1, 1.2, 1.1, 1.15), (0, 1.2, 1.1, 1.15)]
    cases += [(ctx.randint(0, 7), 1 + ctx.randint(0, 30) / 100, 1 + ctx.randint(0, 30) / 100,
               1 + ctx.randint(0, 30) / 100) for _ in range(6)]
    for phi, a, b, g in cases:
        what = f"compound_scale(phi={phi}, alpha={a}, beta={b}, gamma={g})"
        with forbid(fn, {"cnnbook.scaling.compound_multipliers": _OURS,
                         "cnnbook.scaling.flops_factor": _OURS,
                         "cnnbook.scaling.compound_scaling_table": _OURS}):
            got = call(fn, phi, a, b, g, describe=what)
        if not isinstance(got, tuple) or len(got) != 4:
            fail(f"{what} should return a tuple (depth, width, resolution, flops), got {got!r}.")
        d, w, r = a**phi, b**phi, g**phi
        expect_equal(tuple(float(v) for v in got[:3]), (d, w, r), f"{what}[:3]", rel=1e-6,
                     wrong={"You multiplied by phi; the multipliers are POWERS: alpha ** phi.":
                            (a * phi, b * phi, g * phi)},
                     hint="depth = alpha**phi, width = beta**phi, resolution = gamma**phi.")
        expect_equal(float(got[3]), d * w**2 * r**2, f"{what}[3] (FLOPs factor)", rel=1e-6, wrong={
            "Width and resolution count TWICE: FLOPs grow with width^2 (both input and output "
            "channels) and resolution^2 (height and width).": d * w * r,
            "Depth counts once (linear): FLOPs = d * w^2 * r^2.": d**2 * w**2 * r**2,
        }, hint="A conv's cost is proportional to depth x channels^2 x pixels: d * w^2 * r^2.")
    return "right: with alpha=1.2, beta=1.1, gamma=1.15 each step of phi costs about 1.92x."


@checker("mixup")
def check_mixup(ctx: Context, fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> str:
    """Check ``fn(x, y, lam, partner, num_classes)`` -> (mixed images, soft labels)."""
    for _ in range(4):
        n, k = ctx.randint(2, 6), ctx.randint(2, 7)
        x = ctx.rand(n, 3, 4, 4)
        y = torch.randint(0, k, (n,), generator=ctx.gen)
        partner = torch.randperm(n, generator=ctx.gen)
        lam = float(ctx.choice([0.2, 0.3, 0.7, 0.9]))
        what = f"mixup(x {tuple(x.shape)}, y, lam={lam}, partner, num_classes={k})"
        with forbid(fn, {"cnnbook.augment.mixup": _OURS,
                         "torchvision.transforms.v2.MixUp": "write the blend yourself."}):
            got = call(fn, x.clone(), y.clone(), lam, partner.clone(), k, describe=what)
        if not isinstance(got, tuple) or len(got) != 2:
            fail(f"{what} should return (mixed_images, soft_labels), got {type(got).__name__}.")
        one_hot = F.one_hot(y, k).double()
        expect_tensor(got[0], lam * x + (1 - lam) * x[partner], f"{what}[0] (images)", wrong={
            "lam and 1 - lam are swapped: the sample itself gets weight lam.":
                (1 - lam) * x + lam * x[partner],
        }, shape_hint="The mixed batch has the same shape as x.")
        expect_tensor(got[1], lam * one_hot + (1 - lam) * one_hot[partner], f"{what}[1] (labels)",
                      wrong={
            "The labels must be mixed with the same weights as the images; you kept the "
            "original one-hot labels.": one_hot,
            "lam and 1 - lam are swapped in the labels.": (1 - lam) * one_hot + lam * one_hot[partner],
        }, shape_hint=f"Soft labels have shape (N, num_classes) = ({n}, {k}): mix the one-hot "
                      f"vectors (F.one_hot(y, num_classes)).")
    return "images and one-hot labels are blended with the same weights."


@checker("single-dimension scaling")
def check_single_dimension(ctx: Context, fn: Callable[..., dict]) -> str:
    """Check ``fn(budget)`` -> multipliers spending the FLOPs budget on one dimension each."""
    for budget in (4.0, float(ctx.randint(2, 9))):
        what = f"single_dimension({budget})"
        got = call(fn, budget, describe=what)
        expected = {"depth only": (budget, 1.0, 1.0), "width only": (1.0, budget**0.5, 1.0),
                    "resolution only": (1.0, 1.0, budget**0.5)}
        if not isinstance(got, dict) or set(got) != set(expected):
            fail(f"{what} should return a dict with keys {sorted(expected)}, got {got!r}.")
        for key, value in expected.items():
            expect_equal(tuple(float(v) for v in got[key]), value, f"{what}[{key!r}]", rel=1e-6,
                         wrong={"Width and resolution enter the FLOPs squared, so they grow by "
                                "sqrt(budget), not budget.": (1.0, budget, 1.0) if key ==
                                "width only" else (1.0, 1.0, budget)},
                         hint="Solve d * w^2 * r^2 = budget with the other two multipliers at 1.")
    return "each option costs exactly the budget: d * w^2 * r^2 = budget."
