"""Checks for the section 14.7 exercises (1x1 convolutions)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.checks.core import (
    FAMILY_CONV,
    Context,
    call,
    checker,
    expect_equal,
    expect_int,
    expect_module,
    expect_no_shared_storage,
    expect_tensor,
    fail,
    forbidden,
    preserved_state,
)


def _pointwise(c_in: int, c_out: int, bias: bool, gen: torch.Generator) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 1, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(c_out, c_in, 1, 1, generator=gen))
        if conv.bias is not None:  # bias=True
            conv.bias.copy_(torch.randn(c_out, generator=gen))
    return conv


def _as_conv_output(weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, weight.reshape(*weight.shape[:2], 1, 1), bias)


B2_ONLY = (
    "The merged bias ignores first's bias: it is W2 @ b1 + b2, because first's bias "
    "passes through second's weights."
)
B_SUM = "The biases were added as b1 + b2, but first's bias is mixed by second's weights: use W2 @ b1 + b2."
NO_BIAS = "The merged conv has no bias (or a zero one); it needs b = W2 @ b1 + b2."
ORDER = (
    "The merged weight multiplies the matrices in the wrong order: second(first(x)) is "
    "W2 @ W1 (second's matrix on the left)."
)


@checker(
    "merged 1x1 convolutions",
    requirement="one new 1x1 nn.Conv2d owning W = W2 @ W1 and b = W2 @ b1 + b2, computed as "
    "matrices without running a convolution, first and second unchanged",
)
def check_merge_pointwise(ctx: Context, fn: Callable[..., nn.Module]) -> str:
    """Check ``fn(first, second)`` returns ONE 1x1 ``nn.Conv2d`` equal to ``second(first(x))``.

    Fixed cases: channel counts all different, a square case (so a matrix product in the wrong
    order runs), and every combination of missing biases. ``first`` and ``second`` must come
    back unchanged.
    """
    cases = [
        (4, 4, 4, True, True),
        (3, 5, 2, True, True),
        (3, 6, 4, False, True),
        (5, 2, 3, True, False),
        (2, 3, 4, False, False),
    ]
    cases += [
        (
            ctx.randint(1, 6),
            ctx.randint(1, 6),
            ctx.randint(1, 6),
            ctx.choice([True, False]),
            ctx.choice([True, False]),
        )
        for _ in range(2)
    ]
    for c_in, c_mid, c_out, bias1, bias2 in cases:
        first, second = _pointwise(c_in, c_mid, bias1, ctx.gen), _pointwise(c_mid, c_out, bias2, ctx.gen)
        before = [t.detach().clone() for t in (*first.parameters(), *second.parameters())]
        what = (
            f"merge_pointwise(Conv2d({c_in}, {c_mid}, 1, bias={bias1}), "
            f"Conv2d({c_mid}, {c_out}, 1, bias={bias2}))"
        )
        with (
            preserved_state(first, second, what="merge_pointwise"),
            forbidden(
                FAMILY_CONV,
                why="work the merged weight and bias out as matrices (W2 @ W1, W2 @ b1 + b2); "
                "running the two layers on probe inputs would let a convolution find them for you",
            ),
        ):
            merged = expect_module(call(fn, first, second, describe=what), what)
        after = [t.detach() for t in (*first.parameters(), *second.parameters())]
        if any(not torch.equal(a, b) for a, b in zip(before, after, strict=True)):
            fail(
                f"{what} changed the weights of `first` or `second`; build a new layer and leave "
                f"the two inputs as they were."
            )
        if not isinstance(merged, nn.Conv2d) or merged.kernel_size != (1, 1):
            fail(
                f"{what} should return ONE nn.Conv2d with kernel_size=1 (the point is to replace "
                f"two layers by one), got {type(merged).__name__}"
                f"{'' if not isinstance(merged, nn.Conv2d) else f' with kernel {merged.kernel_size}'}."
            )
        expect_no_shared_storage(merged, first, f"{what}, the merged conv")
        expect_no_shared_storage(merged, second, f"{what}, the merged conv")
        if (merged.in_channels, merged.out_channels) != (c_in, c_out):
            fail(
                f"{what} returned a conv from {merged.in_channels} to {merged.out_channels} "
                f"channels; expected {c_in} -> {c_out}."
            )
        x = ctx.randn(2, c_in, 3, 5, dtype=torch.float32)
        w1, w2 = first.weight[:, :, 0, 0], second.weight[:, :, 0, 0]
        b1 = first.bias if first.bias is not None else torch.zeros(c_mid)  # bias=bias1
        b2 = second.bias if second.bias is not None else torch.zeros(c_out)  # bias=bias2
        with torch.no_grad():
            got = call(merged, x, describe=f"x of shape {tuple(x.shape)}")
            expected = second(first(x))
            wrong: dict[str, torch.Tensor] = {}
            if bias1:
                wrong[B2_ONLY] = _as_conv_output(w2 @ w1, b2, x)
                if c_mid == c_out:
                    wrong[B_SUM] = _as_conv_output(w2 @ w1, b1 + b2, x)
            if bias1 or bias2:
                wrong[NO_BIAS] = _as_conv_output(w2 @ w1, None, x)
            if c_in == c_mid == c_out:
                wrong[ORDER] = _as_conv_output(w1 @ w2, w2 @ b1 + b2, x)
        expect_tensor(got, expected, f"{what}(x)", wrong=wrong, atol=1e-4, rtol=1e-4)
    return "one 1x1 conv with W = W2 @ W1 and b = W2 @ b1 + b2 replaces the pair, with or without biases."


@checker(
    "bottleneck savings",
    requirement="(c * c * k * k, c * c_mid + c_mid * c_mid * k * k) as two ints, weights only",
)
def check_bottleneck_params(ctx: Context, fn: Callable[..., tuple[int, int]]) -> str:
    """Check ``fn(c, c_mid, k)`` -> (direct kxk params, 1x1-reduce + kxk params), no biases."""
    cases = [(256, 64, 3)] + [
        (ctx.randint(4, 512), ctx.randint(1, 128), ctx.choice([1, 3, 5])) for _ in range(6)
    ]
    for c, c_mid, k in cases:
        what = f"bottleneck_params(c={c}, c_mid={c_mid}, k={k})"
        got = call(fn, c, c_mid, k, describe=what)
        if not isinstance(got, tuple) or len(got) != 2:
            fail(f"{what} should return a tuple (direct_params, bottleneck_params), got {got!r}.")
        got = (expect_int(got[0], f"{what}[0] (direct)"), expect_int(got[1], f"{what}[1] (bottleneck)"))
        direct = c * c * k * k
        expect_equal(
            got[0],
            direct,
            f"{what}[0] (direct)",
            wrong={
                "That counts biases; the exercise counts weights only.": direct + c,
            },
            hint="A k x k conv from c to c channels has c * c * k * k weights.",
        )
        reduce, spatial = c * c_mid, c_mid * c_mid * k * k
        expect_equal(
            got[1],
            reduce + spatial,
            f"{what}[1] (bottleneck)",
            wrong={
                "You left out the 1x1 reduction (c * c_mid weights).": spatial,
                "The k x k conv runs on the REDUCED channels: c_mid * c_mid * k * k, "
                "not c * c_mid * k * k.": reduce + c * c_mid * k * k,
                "You added a 1x1 expansion back to c channels; this exercise counts only the "
                "1x1 reduction and the k x k conv.": reduce + spatial + c_mid * c,
            },
            hint="1x1 from c to c_mid: c * c_mid; then k x k from c_mid to c_mid: c_mid^2 k^2.",
        )
    return "right: for 256 channels a 1x1 reduction to 64 cuts a 3x3 conv from 589,824 to 53,248 weights."


@checker(
    "Linear as a 1x1 convolution",
    requirement="a 1x1 nn.Conv2d with its own copy of the Linear's weight (C_out, C_in, 1, 1) and "
    "bias, the Linear unchanged",
)
def check_linear_to_conv1x1(ctx: Context, fn: Callable[..., nn.Module]) -> str:
    """Check ``fn(linear)`` returns a 1x1 ``nn.Conv2d`` applying ``linear`` at every pixel."""
    cases = [(4, 4, (5, 3)), (3, 5, (2, 7)), (6, 2, (1, 1))]
    cases += [(ctx.randint(1, 8), ctx.randint(1, 8), (ctx.randint(1, 6), ctx.randint(1, 6)))]
    for c_in, c_out, (h, w) in cases:
        linear = nn.Linear(c_in, c_out)
        before = [t.detach().clone() for t in linear.parameters()]
        what = f"linear_to_conv1x1(nn.Linear({c_in}, {c_out}))"
        with preserved_state(linear, what="linear_to_conv1x1"):
            conv = expect_module(call(fn, linear, describe=what), what)
        if any(not torch.equal(a, b.detach()) for a, b in zip(before, linear.parameters(), strict=True)):
            fail(f"{what} changed the Linear layer's weights; copy them into the conv instead.")
        if not isinstance(conv, nn.Conv2d) or conv.kernel_size != (1, 1):
            fail(f"{what} should return an nn.Conv2d with kernel_size=1, got {type(conv).__name__}.")
        expect_no_shared_storage(conv, linear, f"{what}, the conv")
        x = ctx.randn(2, c_in, h, w, dtype=torch.float32)
        with torch.no_grad():
            ref = linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            got = call(conv, x, describe=f"x {tuple(x.shape)}")
            no_bias = ref - linear.bias.view(1, -1, 1, 1)
            own_bias = conv.bias.detach().view(1, -1, 1, 1) if conv.bias is not None else 0
            wrong = {
                "The weights match but the bias was not copied: set conv.bias to linear.bias.": no_bias
                + own_bias
            }
            if c_in == c_out:
                wrong[
                    "The weight matrix is transposed: linear.weight is already (C_out, C_in), "
                    "the layout a conv weight (C_out, C_in, 1, 1) needs."
                ] = F.conv2d(x, linear.weight.T[:, :, None, None], linear.bias)
        expect_tensor(
            got,
            ref,
            f"{what}(x)",
            wrong=wrong,
            shape_hint="Apply the Linear layer to each pixel's channel vector: (N, C_out, H, W).",
            atol=1e-5,
        )
    return "your conv applies the Linear layer to every pixel: a fully connected layer is a 1x1 conv."
