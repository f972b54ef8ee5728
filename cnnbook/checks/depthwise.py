"""Checks for the section 14.8 exercises (depthwise separable convolutions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.checks.core import (
    CheckFailed,
    Context,
    call,
    checker,
    count_params,
    expect_equal,
    expect_module,
    expect_tensor,
    fail,
    forbid,
    guard,
    modules_of,
)


@checker("separable parameter count")
def check_separable_params(ctx: Context, fn: Callable[..., tuple[int, int]]) -> str:
    """Check ``fn(c_in, c_out, k)`` -> (standard weights, depthwise + pointwise weights)."""
    cases = [(64, 128, 3), (256, 256, 3)] + [(ctx.randint(1, 300), ctx.randint(1, 300),
                                               ctx.choice([1, 3, 5, 7])) for _ in range(6)]
    by_hand = "count from the shapes; building the layers would do it for you."
    for c_in, c_out, k in cases:
        what = f"separable_params(c_in={c_in}, c_out={c_out}, k={k})"
        with forbid(fn, {"torch.nn.Conv2d": by_hand,
                         "cnnbook.models.mobile.separable_conv_params": by_hand,
                         "cnnbook.models.mobile.standard_conv_params": by_hand}):
            got = call(fn, c_in, c_out, k, describe=what)
        if not isinstance(got, tuple) or len(got) != 2:
            fail(f"{what} should return a tuple (standard, separable), got {got!r}.")
        standard = c_in * c_out * k * k
        expect_equal(got[0], standard, f"{what}[0] (standard)",
                     hint="A standard conv has C_in * C_out * k^2 weights.")
        expect_equal(got[1], c_in * k * k + c_in * c_out, f"{what}[1] (separable)", wrong={
            "The depthwise conv has ONE k x k filter per input channel (C_in * k^2), not "
            "C_in * C_out * k^2.": standard + c_in * c_out,
            "You left out the pointwise 1x1 conv (C_in * C_out).": c_in * k * k,
            "You left out the depthwise conv (C_in * k^2).": c_in * c_out,
            "The depthwise filters work on the INPUT channels: C_in * k^2, not C_out * k^2.":
                c_out * k * k + c_in * c_out,
        }, hint="Depthwise: C_in * k^2. Pointwise: C_in * C_out.")
    return "right: the separable/standard ratio is 1/C_out + 1/k^2 (about 0.115 for 256 and 3x3)."


def _groups_of(args: tuple, kwargs: dict) -> Any:
    return args[6] if len(args) > 6 else kwargs.get("groups", 1)


def _veto_groups(*args: Any, **kwargs: Any) -> str | None:
    groups = _groups_of(args, kwargs)
    if groups != 1:
        return (f"it was called with groups={groups}; the point is to filter each channel "
                f"yourself, one ordinary convolution per channel.")
    return None


@checker("depthwise convolution")
def check_depthwise_conv(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(x (N, C, H, W), weight (C, 1, k, k))`` = depthwise conv with 'same' padding."""
    for _ in range(5):
        n, c, k = ctx.randint(1, 2), ctx.randint(2, 5), ctx.choice([1, 3, 5])
        h, w = ctx.randint(k, 9), ctx.randint(k, 9)
        x, weight = ctx.randn(n, c, h, w), ctx.randn(c, 1, k, k)
        what = f"depthwise_conv(x {tuple(x.shape)}, weight {tuple(weight.shape)})"
        with guard("torch.nn.functional.conv2d", _veto_groups), guard("torch.conv2d", _veto_groups):
            got = call(fn, x.clone(), weight.clone(), describe=what)
        ref = F.conv2d(x, weight, padding=k // 2, groups=c)
        mixed = F.conv2d(x, weight.expand(c, c, k, k), padding=k // 2)
        expect_tensor(got, ref, what, wrong={
            "Each output channel summed over ALL input channels (a standard conv with the "
            "filter repeated). Depthwise means channel c is filtered by weight[c] alone.": mixed,
            "You flipped the kernels; conv layers compute cross-correlation.":
                F.conv2d(x, weight.flip(2, 3), padding=k // 2, groups=c),
        }, shape_hint=f"Use padding k // 2 = {k // 2} so the output keeps the input's size; "
                      f"there is one output channel per input channel.")
    return "your per-channel loop equals F.conv2d(..., groups=C): depthwise is grouped conv."


class _RefSeparable(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.depthwise(x)))
        return torch.relu(self.bn2(self.pointwise(x)))


@checker("depthwise separable block")
def check_separable_block(ctx: Context, cls: Callable[..., nn.Module]) -> str:
    """Check ``cls(c_in, c_out, stride)`` is depthwise 3x3 -> BN -> ReLU -> 1x1 -> BN -> ReLU."""
    for c_in, c_out, stride in [(4, 8, 1), (6, 12, 2), (8, 8, 1)]:
        what = f"DepthwiseSeparableConv({c_in}, {c_out}, stride={stride})"
        block = expect_module(call(cls, c_in, c_out, stride, describe=what), what)
        ref = _RefSeparable(c_in, c_out, stride)
        dw = getattr(block, "depthwise", None)
        pw = getattr(block, "pointwise", None)
        if not isinstance(dw, nn.Conv2d) or not isinstance(pw, nn.Conv2d):
            fail(f"{what} needs two nn.Conv2d attributes named depthwise and pointwise.")
        if dw.groups != c_in:
            fail(f"{what}: depthwise.groups = {dw.groups}; set groups=in_channels ({c_in}) so each "
                 f"channel gets its own 3x3 filter (otherwise it is a standard conv with "
                 f"{dw.weight.numel():,} weights instead of {c_in * 9}).")
        if pw.kernel_size != (1, 1):
            fail(f"{what}: the pointwise conv must be 1x1, got {pw.kernel_size}.")
        if pw.stride != (1, 1) or dw.stride != (stride, stride):
            fail(f"{what}: the stride belongs on the depthwise conv (got depthwise "
                 f"{dw.stride}, pointwise {pw.stride}); striding the 1x1 conv instead computes "
                 f"the depthwise output at full resolution and throws 3/4 of it away.")
        if count_params(block) != count_params(ref):
            fail(f"{what} has {count_params(block):,} parameters, expected {count_params(ref):,} "
                 f"(convs without bias, since each is followed by BatchNorm2d).")
        try:
            block.load_state_dict(ref.state_dict())
        except RuntimeError as exc:
            fail(f"{what}: use the attribute names depthwise, pointwise, bn1, bn2: "
                 f"{str(exc).splitlines()[0]}")
        x = ctx.randn(4, c_in, 8, 8, dtype=torch.float32)
        with torch.no_grad():
            try:
                got = call(block.train(), x, describe=f"x {tuple(x.shape)}")
            except CheckFailed as exc:
                fail(f"{exc} -- bn1 normalises the depthwise output ({c_in} channels), bn2 the "
                     f"pointwise output ({c_out} channels).")
            expect_tensor(got, ref.train()(x), f"{what}(x)", atol=1e-4, rtol=1e-4,
                          shape_hint="depthwise 3x3 (stride, padding 1) -> BN -> ReLU -> 1x1 -> "
                                     "BN -> ReLU gives (N, C_out, H/stride, W/stride).")
        if not modules_of(block, nn.BatchNorm2d):
            fail(f"{what} has no batch norm.")
    return "your block matches MobileNet's depthwise separable unit."


@checker("multiply-accumulate count")
def check_conv_macs(ctx: Context, fn: Callable[..., int]) -> str:
    """Check ``fn(h_out, w_out, c_in, c_out, k, groups)`` = multiply-adds of a conv layer."""
    cases = [(56, 56, 64, 128, 3, 1), (56, 56, 64, 64, 3, 64), (56, 56, 64, 128, 1, 1)]
    for _ in range(6):
        g = ctx.choice([1, 2, 4])
        cases.append((ctx.randint(1, 32), ctx.randint(1, 32), g * ctx.randint(1, 16),
                      g * ctx.randint(1, 16), ctx.choice([1, 3, 5]), g))
    for h, w, c_in, c_out, k, g in cases:
        what = f"conv_macs(h_out={h}, w_out={w}, c_in={c_in}, c_out={c_out}, k={k}, groups={g})"
        got = call(fn, h, w, c_in, c_out, k, g, describe=what)
        ref = h * w * c_out * (c_in // g) * k * k
        expect_equal(got, ref, what, wrong={
            "You ignored the groups: each output channel only sees C_in / groups input channels.":
                h * w * c_out * c_in * k * k,
            "That is the parameter count; every weight is used once per OUTPUT POSITION, so "
            "multiply by h_out * w_out.": c_out * (c_in // g) * k * k,
        }, hint="Each of the h_out * w_out * C_out outputs needs (C_in / groups) * k^2 "
                "multiply-adds.")
    return "right: MACs = H_out * W_out * C_out * (C_in / groups) * k^2."
