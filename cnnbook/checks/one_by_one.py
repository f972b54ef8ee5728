"""Checks for the section 14.7 exercises (1x1 convolutions)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.checks.convolution import CONV_LIBRARY
from cnnbook.checks.core import (
    Context,
    call,
    checker,
    expect_equal,
    expect_module,
    expect_tensor,
    fail,
    forbid,
)


@checker("1x1 convolution as a matrix product")
def check_pointwise_conv(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(x (N, C_in, H, W), weight (C_out, C_in), bias (C_out,))``."""
    for _ in range(5):
        n, c_in, c_out = ctx.randint(1, 3), ctx.randint(2, 6), ctx.randint(2, 6)
        h, w = ctx.randint(2, 7), ctx.randint(2, 7)
        x, weight, bias = ctx.randn(n, c_in, h, w), ctx.randn(c_out, c_in), ctx.randn(c_out)
        what = f"pointwise_conv(x {tuple(x.shape)}, weight {tuple(weight.shape)}, bias {tuple(bias.shape)})"
        with forbid(fn, CONV_LIBRARY):
            got = call(fn, x.clone(), weight.clone(), bias.clone(), describe=what)
        ref = F.conv2d(x, weight[:, :, None, None], bias)
        scrambled = (x.reshape(n, h * w, c_in) @ weight.T + bias).reshape(n, c_out, h, w)
        expect_tensor(got, ref, what, wrong={
            "You forgot the bias (one per output channel).": ref - bias.view(1, -1, 1, 1),
            "The pixels got scrambled: x.reshape(N, H*W, C) is not a transpose. Move the channel "
            "axis last with x.permute(0, 2, 3, 1) (or use torch.einsum) before multiplying.":
                scrambled,
        }, shape_hint="The output is (N, C_out, H, W): the spatial size does not change, only "
                      "the channel vector of each pixel is mapped by the C_out x C_in matrix.")
    return "your 1x1 convolution is a per-pixel matrix product, equal to F.conv2d with a 1x1 kernel."


@checker("bottleneck savings")
def check_bottleneck_params(ctx: Context, fn: Callable[..., tuple[int, int]]) -> str:
    """Check ``fn(c, c_mid, k)`` -> (direct kxk params, 1x1-reduce + kxk params), no biases."""
    cases = [(256, 64, 3)] + [(ctx.randint(4, 512), ctx.randint(1, 128), ctx.choice([1, 3, 5]))
                              for _ in range(6)]
    for c, c_mid, k in cases:
        what = f"bottleneck_params(c={c}, c_mid={c_mid}, k={k})"
        got = call(fn, c, c_mid, k, describe=what)
        if not isinstance(got, tuple) or len(got) != 2:
            fail(f"{what} should return a tuple (direct_params, bottleneck_params), got {got!r}.")
        direct = c * c * k * k
        expect_equal(got[0], direct, f"{what}[0] (direct)", wrong={
            "That counts biases; the exercise counts weights only.": direct + c,
        }, hint="A k x k conv from c to c channels has c * c * k * k weights.")
        reduce, spatial = c * c_mid, c_mid * c_mid * k * k
        expect_equal(got[1], reduce + spatial, f"{what}[1] (bottleneck)", wrong={
            "You left out the 1x1 reduction (c * c_mid weights).": spatial,
            "The k x k conv runs on the REDUCED channels: c_mid * c_mid * k * k, not c * c_mid * k * k.":
                reduce + c * c_mid * k * k,
        }, hint="1x1 from c to c_mid: c * c_mid; then k x k from c_mid to c_mid: c_mid^2 k^2.")
    return "right: for 256 channels a 1x1 reduction to 64 cuts a 3x3 conv from 589,824 to 53,248 weights."


@checker("Linear as a 1x1 convolution")
def check_linear_to_conv1x1(ctx: Context, fn: Callable[..., nn.Module]) -> str:
    """Check ``fn(linear)`` returns a 1x1 ``nn.Conv2d`` applying ``linear`` at every pixel."""
    for _ in range(4):
        c_in, c_out = ctx.randint(2, 8), ctx.randint(2, 8)
        linear = nn.Linear(c_in, c_out)
        what = f"linear_to_conv1x1(nn.Linear({c_in}, {c_out}))"
        conv = expect_module(call(fn, linear, describe=what), what)
        if not isinstance(conv, nn.Conv2d) or conv.kernel_size != (1, 1):
            fail(f"{what} should return an nn.Conv2d with kernel_size=1, got {conv}.")
        x = ctx.randn(2, c_in, ctx.randint(1, 6), ctx.randint(1, 6), dtype=torch.float32)
        with torch.no_grad():
            ref = linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            got = call(conv, x, describe=f"x {tuple(x.shape)}")
            no_bias = ref - linear.bias.view(1, -1, 1, 1)
        own_bias = conv.bias.detach().view(1, -1, 1, 1) if conv.bias is not None else 0
        expect_tensor(got, ref, f"{what}(x)", wrong={
            "The weights match but the bias was not copied: set conv.bias to linear.bias.":
                no_bias + own_bias,
        }, shape_hint="Apply the Linear layer to each pixel's channel vector: (N, C_out, H, W).",
            atol=1e-5)
    return "your conv applies the Linear layer to every pixel: a fully connected layer is a 1x1 conv."
