"""Checks for the section 14.2 exercises (stride, padding, dilation)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from cnnbook import geometry
from cnnbook.checks.core import (
    Context,
    call,
    checker,
    expect_equal,
    expect_tensor,
    fail,
    forbid,
    guard,
)

_FORMULA = "compute the size from the formula instead of asking a library."
SIZE_LIBRARY = {
    "cnnbook.geometry.conv_output_size": _FORMULA, "cnnbook.geometry.pool_output_size": _FORMULA,
    "cnnbook.geometry.same_padding": _FORMULA, "cnnbook.geometry.effective_kernel_size": _FORMULA,
    "torch.nn.functional.conv2d": _FORMULA, "torch.conv2d": _FORMULA, "torch.nn.Conv2d": _FORMULA,
    "torch.nn.functional.conv1d": _FORMULA, "torch.conv1d": _FORMULA, "torch.nn.Conv1d": _FORMULA,
}


def _int_answer(got: Any, what: str) -> int:
    if isinstance(got, bool) or not isinstance(got, int):
        if isinstance(got, float):
            fail(f"{what} returned the float {got!r}; sizes are integers. Use floor division "
                 f"`//` (which rounds down, as PyTorch does), not `/`.")
        if isinstance(got, torch.Tensor):
            fail(f"{what} returned a tensor; return a plain Python int (use .item() or int()).")
        fail(f"{what} should return an int, got {type(got).__name__}.")
    return got


@checker("conv output size")
def check_conv_out_size(ctx: Context, fn: Callable[..., int]) -> str:
    """Check ``fn(n, k, s, p, d)`` = floor((n + 2p - d(k-1) - 1) / s) + 1 on random layers."""
    cases = [(32, 3, 1, 1, 1), (32, 3, 2, 1, 1), (8, 3, 1, 2, 2), (224, 11, 4, 2, 1)]
    while len(cases) < 40:
        n, k, s, p, d = (ctx.randint(5, 40), ctx.randint(1, 7), ctx.randint(1, 4),
                         ctx.randint(0, 3), ctx.randint(1, 3))
        if d * (k - 1) + 1 <= n + 2 * p:
            cases.append((n, k, s, p, d))
    for n, k, s, p, d in cases:
        what = f"conv_out_size(n={n}, k={k}, s={s}, p={p}, d={d})"
        with forbid(fn, SIZE_LIBRARY):
            got = _int_answer(call(fn, n, k, s, p, d, describe=what), what)
        k_eff = d * (k - 1) + 1
        expect_equal(got, geometry.conv_output_size(n, k, s, p, d), what, wrong={
            "You forgot the + 1: a kernel that fits exactly once still gives one output.":
                (n + 2 * p - k_eff) // s,
            "You ignored the dilation: use the effective kernel size k_eff = k + (k-1)(d-1).":
                (n + 2 * p - k) // s + 1,
            "Padding p is added on BOTH sides, so the padded length is n + 2p.":
                (n + p - k_eff) // s + 1,
            "You rounded up; PyTorch rounds DOWN (floor), dropping a last partial window.":
                math.ceil((n + 2 * p - k_eff) / s) + 1,
            "You divided the + 1 by the stride too: it is floor((n + 2p - k_eff) / s) + 1.":
                (n + 2 * p - k_eff + 1) // s,
        }, hint="The formula is floor((n + 2p - k_eff) / s) + 1 with k_eff = d(k - 1) + 1.")
    return f"conv_out_size agrees with PyTorch's nn.Conv2d on {len(cases)} layer configurations."


@checker("same padding")
def check_same_padding(ctx: Context, fn: Callable[..., int]) -> str:
    """Check ``fn(k, d)``: the padding that keeps the size for stride 1 and an odd kernel."""
    for k in (1, 3, 5, 7):
        for d in (1, 2, 3, 4):
            what = f"same_padding(k={k}, d={d})"
            with forbid(fn, SIZE_LIBRARY):
                got = _int_answer(call(fn, k, d, describe=what), what)
            expect_equal(got, d * (k - 1) // 2, what, wrong={
                "That is k // 2, right only without dilation: a dilated kernel spans "
                "k_eff = d(k - 1) + 1 pixels, so pad k_eff // 2.": k // 2,
                "That is the TOTAL padding; nn.Conv2d's padding is added on each side, so "
                "halve it.": d * (k - 1),
            }, hint="Solve n = n + 2p - k_eff + 1 for p.")
            n = ctx.randint(k * d + 1, 30)
            conv = torch.nn.Conv2d(1, 1, k, padding=got, dilation=d)
            assert conv(torch.zeros(1, 1, n, n)).shape[-1] == n
    return "your padding keeps the size for every odd kernel and dilation (checked with nn.Conv2d)."


def _ref_dilate(w: torch.Tensor, d: int) -> torch.Tensor:
    kh, kw = w.shape[-2:]
    out = w.new_zeros(*w.shape[:-2], d * (kh - 1) + 1, d * (kw - 1) + 1)
    out[..., ::d, ::d] = w
    return out


@checker("dilate kernel")
def check_dilate_kernel(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(w (C_out, C_in, kH, kW), d)``: the kernel with d-1 zeros between taps."""
    no_dilation = {"torch.nn.functional.conv2d":
                   "build the spread-out kernel yourself; no convolution is needed."}
    for _ in range(5):
        c_out, c_in, kh, kw, d = (ctx.randint(1, 3), ctx.randint(1, 3), ctx.randint(2, 4),
                                  ctx.randint(1, 4), ctx.randint(1, 4))
        w = ctx.randn(c_out, c_in, kh, kw)
        what = f"dilate_kernel(w of shape {tuple(w.shape)}, d={d})"
        with forbid(fn, no_dilation):
            got = call(fn, w.clone(), d, describe=what)
        wide = w.new_zeros(*w.shape[:-2], (d + 1) * (kh - 1) + 1, (d + 1) * (kw - 1) + 1)
        wide[..., :: d + 1, :: d + 1] = w
        end = w.new_zeros(*w.shape[:-2], d * (kh - 1) + 1, d * (kw - 1) + 1)
        end[..., :kh, :kw] = w
        expect_tensor(got, _ref_dilate(w, d), what, wrong={
            "You put d zeros between taps; dilation d means d - 1 zeros (d = 1 is the plain "
            "kernel).": wide,
            "The zeros must go BETWEEN the taps (spacing d), not after the kernel.": end,
        }, shape_hint=f"The dilated kernel spans k_eff = d(k - 1) + 1 per side: "
                      f"{d * (kh - 1) + 1} x {d * (kw - 1) + 1}.")
        x = ctx.randn(1, c_in, 16, 16)
        expect_tensor(F.conv2d(x, got), F.conv2d(x, w, dilation=d),
                      "conv with your dilated kernel vs conv with dilation=d")
    return "convolving with your zero-stuffed kernel equals nn.Conv2d(..., dilation=d)."


def _stride_of(args: tuple, kwargs: dict) -> Any:
    return args[3] if len(args) > 3 else kwargs.get("stride", 1)


def _veto_stride(*args: Any, **kwargs: Any) -> str | None:
    stride = _stride_of(args, kwargs)
    if stride not in (1, (1, 1), [1, 1]):
        return (f"it was called with stride={stride}; the point is to compute the stride-1 "
                f"output and keep every s-th value yourself.")
    return None


@checker("stride as subsampling")
def check_strided_from_dense(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(x, w, stride, padding)`` built from a stride-1 convolution."""
    for _ in range(6):
        n, c_in, c_out = ctx.randint(1, 2), ctx.randint(1, 3), ctx.randint(1, 3)
        k, s, p = ctx.randint(1, 4), ctx.randint(2, 3), ctx.randint(0, 2)
        h, w_ = ctx.randint(k + 2, 13), ctx.randint(k + 2, 13)
        x, w = ctx.randn(n, c_in, h, w_), ctx.randn(c_out, c_in, k, k)
        what = f"strided_from_dense(x {tuple(x.shape)}, w {tuple(w.shape)}, stride={s}, padding={p})"
        with guard("torch.nn.functional.conv2d", _veto_stride), guard("torch.conv2d", _veto_stride):
            got = call(fn, x.clone(), w.clone(), s, p, describe=what)
        dense = F.conv2d(x, w, padding=p)
        expect_tensor(got, F.conv2d(x, w, stride=s, padding=p), what, wrong={
            "You started subsampling at index 1; the first strided output is the first dense "
            "output (keep indices 0, s, 2s, ...).": dense[..., 1::s, 1::s],
            "You subsampled only the rows; keep every s-th column as well.": dense[..., ::s, :],
            "You subsampled only the columns; keep every s-th row as well.": dense[..., :, ::s],
            "You padded after subsampling (or not at all); pad the input, convolve, then keep "
            "every s-th output.": F.conv2d(x, w)[..., ::s, ::s],
        }, shape_hint="Keep rows and columns 0, s, 2s, ... of the padded stride-1 output.")
    return "a strided convolution is the stride-1 convolution with every s-th output kept."
