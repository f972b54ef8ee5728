"""Checks for the section 14.4 exercises (pooling layers)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.checks.core import (
    Context,
    call,
    checker,
    count_params,
    expect_equal,
    expect_module,
    expect_tensor,
    fail,
    forbid,
)

_WHOLE = "it pools for you; take the maximum of each window yourself."
_OURS = "that is cnnbook's own answer; write yours."
POOL_LIBRARY = {
    "torch.nn.functional.max_pool2d": _WHOLE, "torch.max_pool2d": _WHOLE,
    "torch.nn.functional.max_pool2d_with_indices": _WHOLE, "torch.nn.MaxPool2d": _WHOLE,
    "torch.nn.functional.adaptive_max_pool2d": _WHOLE, "torch.nn.functional.fractional_max_pool2d": _WHOLE,
    "torch.nn.functional.lp_pool2d": _WHOLE, "torch.nn.functional.avg_pool2d": _WHOLE,
    "cnnbook.ops.max_pool2d": _OURS, "cnnbook.ops.avg_pool2d": _OURS,
}


@checker("max pooling")
def check_max_pool2d(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(x (N, C, H, W), kernel_size, stride=None, padding=0)`` against F.max_pool2d."""
    cases = [(2, None, 0), (3, 2, 1), (2, 1, 0), (3, None, 1)]
    cases += [(ctx.randint(2, 3), ctx.choice([None, 1, 2]), ctx.randint(0, 1)) for _ in range(4)]
    for i, (k, s, p) in enumerate(cases):
        x = ctx.randn(ctx.randint(1, 2), ctx.randint(1, 3), ctx.randint(k + 2, 11), ctx.randint(k + 2, 11))
        if i % 2:  # all-negative maps reveal zero padding
            x = -x.abs() - 0.1
        args = (x.clone(), k) if s is None else (x.clone(), k, s)
        kwargs = {"padding": p} if p else {}
        what = (f"max_pool2d(x {tuple(x.shape)}, kernel_size={k}"
                f"{'' if s is None else f', stride={s}'}{f', padding={p}' if p else ''})")
        with forbid(fn, POOL_LIBRARY):
            got = call(fn, *args, **kwargs, describe=what)
        stride = k if s is None else s
        ref = F.max_pool2d(x, k, stride, p)
        wrong = {
            "You padded with zeros; a zero on the border can beat negative values. Pad with "
            "-inf so the padding never wins the max.": F.max_pool2d(F.pad(x, (p,) * 4), k, stride),
            "You averaged; max pooling keeps the LARGEST value of each window.":
                F.avg_pool2d(x, k, stride, p),
        }
        if s is None:
            wrong["With stride=None the stride defaults to the kernel size (non-overlapping "
                  "windows), not 1."] = F.max_pool2d(x, k, 1, p)
        expect_tensor(got, ref, what, wrong=wrong,
                      shape_hint="The output size follows the conv formula: "
                                 "floor((n + 2p - k) / s) + 1, with s = k when stride is None.")
    return "your max pooling matches F.max_pool2d, including default stride and -inf padding."


@checker("classifier head parameters")
def check_head_params(ctx: Context, fn: Callable[..., int]) -> str:
    """Check ``fn(c, h, w, num_classes, gap)`` = params of the Linear head (with bias)."""
    cases = [(512, 7, 7, 1000, False), (512, 7, 7, 1000, True)]
    cases += [(ctx.randint(1, 64), ctx.randint(1, 9), ctx.randint(1, 9), ctx.randint(2, 20),
               ctx.choice([True, False])) for _ in range(8)]
    for c, h, w, classes, gap in cases:
        what = f"head_params(c={c}, h={h}, w={w}, num_classes={classes}, gap={gap})"
        with forbid(fn, {"torch.nn.Linear": "count from the shapes, without building the layer."}):
            got = call(fn, c, h, w, classes, gap, describe=what)
        features = c if gap else c * h * w
        expect_equal(got, count_params(nn.Linear(features, classes)), what, wrong={
            "You forgot the bias: nn.Linear has one bias per output class.": features * classes,
            "With global average pooling each channel becomes ONE number, so the head sees c "
            "features, not c*h*w.": c * h * w * classes + classes,
            "Without pooling the head sees every position of every channel: c*h*w features.":
                c * classes + classes,
        }, hint="A Linear layer from f features to n classes has f*n weights and n biases.")
    return "right counts: GAP shrinks VGG's 512x7x7 -> 1000 head from 25.1M to 0.5M parameters."


@checker("average pooling as a strided convolution")
def check_avgpool_as_conv(ctx: Context, fn: Callable[..., nn.Module]) -> str:
    """Check ``fn(channels, k)`` returns an ``nn.Conv2d`` equal to ``nn.AvgPool2d(k)``."""
    for _ in range(4):
        c, k = ctx.randint(1, 5), ctx.randint(2, 4)
        what = f"avgpool_as_conv(channels={c}, k={k})"
        conv = expect_module(call(fn, c, k, describe=what), what)
        if not isinstance(conv, nn.Conv2d):
            fail(f"{what} should return an nn.Conv2d, got {type(conv).__name__}.")
        x = ctx.randn(2, c, ctx.randint(k, 12), ctx.randint(k, 12))
        with torch.no_grad():
            got = call(conv, x.to(conv.weight.dtype), describe=f"x {tuple(x.shape)}")
        ref = F.avg_pool2d(x, k)
        expect_tensor(got.double(), ref, f"{what}(x {tuple(x.shape)})", wrong={
            "Your filter sums the window; divide each weight by k*k to average it.":
                F.avg_pool2d(x, k) * k * k,
            "Your conv has stride 1 (overlapping windows); pooling steps by k.":
                F.avg_pool2d(x, k, 1),
            "Each output mixes all input channels (groups=1 with every weight 1/k^2). Pooling "
            "works on each channel separately: use groups=channels, one 1-channel filter per "
            "channel.": F.avg_pool2d(x, k).sum(1, keepdim=True).expand(-1, c, -1, -1),
        }, shape_hint=f"Use stride={k} so the windows do not overlap.", atol=1e-5)
        if conv.bias is not None and conv.bias.abs().max() > 0:
            fail(f"{what}: the bias should be zero (or bias=False).")
    return "your fixed-weight depthwise conv is exactly average pooling: pooling is a conv with " \
           "frozen weights."
