"""Checks for the section 14.3 exercises (feature maps and receptive fields)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cnnbook import geometry
from cnnbook.checks.core import Context, call, checker, expect_equal, fail, forbid

_OURS = "that is cnnbook's own answer; write yours."
RF_LIBRARY = {
    "cnnbook.geometry.receptive_field": _OURS,
    "cnnbook.geometry.module_receptive_field": _OURS,
    "cnnbook.geometry.receptive_field_by_gradient": _OURS,
    "cnnbook.widgets.rf_levels": _OURS,
    "cnnbook.widgets.rf_report": _OURS,
}


def _ints(got: Any, n: int, what: str) -> list[int]:
    if isinstance(got, int):
        fail(f"{what} returned one int ({got}); return a list with the receptive field after "
             f"EACH of the {n} layers.")
    try:
        values = [int(v) for v in got]
    except TypeError:
        fail(f"{what} should return a list of ints, got {type(got).__name__}.")
    if len(values) != n:
        fail(f"{what} returned {len(values)} values for {n} layers; return one per layer.")
    return values


@checker("receptive field recurrence")
def check_receptive_field(ctx: Context, fn: Callable[..., list[int]]) -> str:
    """Check ``fn([(k, s), ...])`` -> receptive field after each layer."""
    stacks = [[(3, 1)] * 3, [(11, 4), (3, 2), (5, 1), (3, 2)], [(7, 2), (3, 2), (3, 1), (3, 1)]]
    for _ in range(8):
        stacks.append([(ctx.randint(1, 7), ctx.randint(1, 3)) for _ in range(ctx.randint(2, 6))])
    for layers in stacks:
        what = f"receptive_field({layers})"
        with forbid(fn, RF_LIBRARY):
            got = _ints(call(fn, list(layers), describe=what), len(layers), what)
        ref = [r.rf for r in geometry.receptive_field([geometry.LayerSpec(k, s) for k, s in layers])]
        # the usual mistakes, layer by layer
        own_stride, no_stride, sum_k = [], [], []
        rf_a = rf_b = 1
        jump = 1
        for k, s in layers:
            rf_a += (k - 1) * jump * s
            jump *= s
            rf_b += k - 1
            own_stride.append(rf_a)
            no_stride.append(rf_b)
            sum_k.append(sum(kk for kk, _ in layers[: len(sum_k) + 1]))
        expect_equal(got, ref, what, wrong={
            "You multiplied by the strides up to and INCLUDING the current layer; the growth "
            "(k_l - 1) is scaled by the product of the strides of the layers BEFORE it.": own_stride,
            "You ignored the strides: after a stride-s layer, one step on the feature map is s "
            "input pixels, so later kernels grow the field s times faster.": no_stride,
            "You added up the kernel sizes; the field grows by (k - 1) per layer (times the "
            "jump), starting from r_0 = 1.": sum_k,
        }, hint="Use r_l = r_{l-1} + (k_l - 1) * (product of the earlier strides), r_0 = 1.")
    return f"receptive fields correct layer by layer on {len(stacks)} stacks (AlexNet-like included)."


@checker("stack of 3x3 convs vs one big kernel")
def check_stack_vs_single(ctx: Context, fn: Callable[..., tuple[int, int, int]]) -> str:
    """Check ``fn(c, n)`` -> (params of n stacked 3x3 convs, params of one kernel, its size)."""
    for c, n in [(64, 2), (64, 3), *[(ctx.randint(1, 64), ctx.randint(1, 5)) for _ in range(6)]]:
        what = f"stack_vs_single(c={c}, n={n})"
        with forbid(fn, {"torch.nn.Conv2d": "count from the kernel shape, without building layers."}):
            got = call(fn, c, n, describe=what)
        if not isinstance(got, tuple) or len(got) != 3:
            fail(f"{what} should return a tuple (stack_params, single_params, single_kernel_size), "
                 f"got {got!r}.")
        stack = sum(p.numel() for p in nn.Sequential(
            *[nn.Conv2d(c, c, 3, padding=1, bias=False) for _ in range(n)]).parameters())
        k = 2 * n + 1
        expect_equal(got[2], k, f"{what}[2] (the single kernel size)", wrong={
            "n 3x3 layers see 2n + 1 pixels, not 3n: each layer adds 2.": 3 * n,
        }, hint="Each stride-1 3x3 layer grows the receptive field by 2, starting from 1.")
        expect_equal(got[0], stack, f"{what}[0] (params of the 3x3 stack)", wrong={
            "A conv with c input and c output channels has c * c * 3 * 3 weights, not c * 3 * 3.":
                n * 9 * c,
            "That counts biases; the exercise says bias=False.": stack + n * c,
        }, hint="One 3x3 layer from c to c channels has 9 c^2 weights.")
        expect_equal(got[1], k * k * c * c, f"{what}[1] (params of the single kernel)",
                     wrong={"That counts a bias; the exercise says bias=False.": k * k * c * c + c},
                     hint="A k x k conv from c to c channels has k^2 c^2 weights.")
    return "parameter counts and kernel size right: three 3x3 layers cost 27c² vs 49c² for 7x7."


def _probe_model(ctx: Context) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    specs = []
    for _ in range(ctx.randint(2, 4)):
        if ctx.randint(0, 3) == 0:
            k = ctx.randint(2, 3)
            layers.append(nn.AvgPool2d(k, stride=k))
            specs.append(geometry.LayerSpec(k, k))
        else:
            k, s, d = ctx.choice([1, 3, 3, 5]), ctx.choice([1, 1, 2]), ctx.choice([1, 1, 2])
            conv = nn.Conv2d(1, 1, k, stride=s, padding=d * (k // 2), dilation=d)
            with torch.no_grad():
                conv.weight.fill_(1.0 / k**2)
                conv.bias.zero_()
            layers += [conv, nn.ReLU()]
            specs.append(geometry.LayerSpec(k, s, d * (k // 2), d))
    return nn.Sequential(*layers), geometry.receptive_field(specs)[-1].rf


@checker("receptive field by gradient")
def check_rf_by_gradient(ctx: Context, fn: Callable[..., int]) -> str:
    """Check ``fn(model, size)`` measures the centre unit's receptive field by back-propagation."""
    for _ in range(5):
        model, rf = _probe_model(ctx)
        size = 2 * rf + 8 * ctx.randint(1, 3) + ctx.randint(0, 1)
        what = f"rf_by_gradient(model, size={size}) for\n{model}\n"
        with forbid(fn, RF_LIBRARY):
            got = call(fn, model, size, describe=what)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = int(got)
        if isinstance(got, int) and got > rf and got > size // 2:
            fail(f"{what}: expected {rf}, got {got}, nearly the whole {size}-pixel input: you "
                 f"back-propagated from ALL outputs (e.g. out.sum()); take the gradient of a "
                 f"single unit near the centre.")
        expect_equal(got, rf, what, hint=(
            "Back-propagate from ONE output unit, then measure the extent (last - first + 1) of "
            "the input rows whose gradient is non-zero. Use an input of ones: with random inputs "
            "some ReLUs are off and hide part of the field."))
    return "your gradient probe finds the same receptive fields as the formula."
